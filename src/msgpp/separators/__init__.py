"""Source separators behind one interface, a registry of them, and the cache of their estimates.

import msgpp.separators as separators
separators.names()                                   # ["demucs_v2", "hdemucs_v3", "openunmix", ...]
separator = separators.get("openunmix")              # the weights shipped in separators/openunmix/
separator = separators.get("demucs_v2", weights="path/to/demucs/repo")
estimates = separator.separate(mixture, sample_rate) # {source: (channels, samples)}
"""

from msgpp.separators.registry import ENTRY_POINT_GROUP, get, names, separator_class


def __getattr__(name):
    # The base class imports torch; load it only when asked for.
    if name in ("Separator", "WeightsInfo"):
        from msgpp.separators import base

        return getattr(base, name)
    raise AttributeError(f"module 'msgpp.separators' has no attribute {name!r}")


__all__ = ["ENTRY_POINT_GROUP", "Separator", "WeightsInfo", "get", "names", "separator_class"]
