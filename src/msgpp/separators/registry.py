"""Separator names → separator classes: the built-in ones, and third-party ones by entry point.

A third-party package adds a separator with one entry point in its pyproject.toml:

    [project.entry-points."msgpp.separators"]
    my_separator = "my_package.module:MySeparator"

where MySeparator subclasses msgpp.separators.Separator (class attributes name, family, ...;
classmethod `load(weights=None, device="cpu")`). A built-in separator is one line in BUILTIN.
Classes are imported only when asked for, so listing names stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

from msgpp.errors import MsgppError

ENTRY_POINT_GROUP = "msgpp.separators"

# name → "module:Class": the one list of the built-in separators (their family, sources and
# training recipe are class attributes; msgpp.evaluation.families reads the families from here).
BUILTIN: dict[str, str] = {
    "demucs_v2": "msgpp.separators.demucs:DemucsV2",
    "hdemucs_v3": "msgpp.separators.demucs:HDemucsV3",
    "openunmix": "msgpp.separators.openunmix:OpenUnmixSeparator",
    "wavenet": "msgpp.separators.wavenet.separator:WavenetSeparator",
    "spleeter": "msgpp.separators.spleeter.separator:SpleeterSeparator",
}


def _entry_points() -> dict[str, object]:
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def names() -> list[str]:
    """Every registered separator name: built-in first, then entry points, each sorted."""
    third_party = sorted(set(_entry_points()) - set(BUILTIN))
    return sorted(BUILTIN) + third_party


def separator_class(name: str) -> type:
    """The Separator subclass registered under `name`."""
    from msgpp.separators.base import Separator

    if name in BUILTIN:
        module_name, _, attribute = BUILTIN[name].partition(":")
        klass = getattr(import_module(module_name), attribute)
    else:
        points = _entry_points()
        if name not in points:
            raise MsgppError(f"unknown separator {name!r}; registered: {', '.join(names())}")
        try:
            klass = points[name].load()
        except Exception as error:  # a broken third-party package must not take the CLI down silently
            raise MsgppError(
                f"separator {name!r} (entry point {points[name].value}) failed to import: {error}"
            ) from None
    if not (isinstance(klass, type) and issubclass(klass, Separator)):
        raise MsgppError(f"separator {name!r} is registered as {klass!r}, which is not a msgpp Separator subclass")
    return klass


def get(name: str, weights: str | Path | None = None, device: str = "cpu"):
    """A ready separator: `weights` is a local folder/file in the upstream format, an upstream
    name (downloaded when online), or None for the weights shipped in `separators/<name>/`."""
    return separator_class(name).load(weights=weights, device=device)


def parse_names(text: str) -> list[str]:
    """ "a,b,c" → ["a", "b", "c"], each checked against the registry, duplicates dropped."""
    chosen = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        if name not in names():
            raise MsgppError(f"unknown separator {name!r}; registered: {', '.join(names())}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise MsgppError("no separator named (pass e.g. --separators demucs_v2,openunmix)")
    return chosen
