"""Separator families, and the paper's claim about the sign of their rolloff errors.

Waveform separators add high-frequency noise (rolloff too high: positive cents); spectrogram
separators lose upper partials (negative). Hybrids make no prediction. A separator's family is
its class's `family` (msgpp.separators.registry); this module only adds the claim.
"""

from __future__ import annotations

from functools import cache

EXPECTED_SIGN = {"waveform": +1, "spectrogram": -1}
# Why the paper expects that sign, for the model cards.
CLAIM = {
    "waveform": "waveform separators add high-frequency noise",
    "spectrogram": "spectrogram separators lose upper partials",
}


@cache
def _builtin_families() -> dict[str, str]:
    from msgpp.separators.registry import BUILTIN, separator_class

    return {name: separator_class(name).family for name in BUILTIN}


def family(separator: str) -> str:
    """The family of a built-in separator; "unknown" for others (a name's prefix is tried too,
    so "openunmix_small" is a spectrogram separator)."""
    families = _builtin_families()
    if separator in families:
        return families[separator]
    for name, kind in families.items():
        if separator.startswith(name):
            return kind
    return "unknown"


def expected_sign(separator: str) -> int:
    """+1, −1, or 0 where the paper predicts nothing."""
    return EXPECTED_SIGN.get(family(separator), 0)


def expected_sign_text(kind: str) -> str:
    """The paper's claim for a family, in words: "+ (waveform separators add ...)"."""
    if kind not in EXPECTED_SIGN:
        return f"no prediction ({kind})"
    return f"{'+' if EXPECTED_SIGN[kind] > 0 else '−'} ({CLAIM[kind]})"
