"""The songs of a MUSDB18-HQ-layout folder, as `msgpp separate` and the trainer need them.

Only the layout is read here (<root>/<subset>/<track>/mixture.wav and <source>.wav), without
musdb or audio decoding, so listing and validating 120 songs takes milliseconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from msgpp.constants import SUBSETS
from msgpp.errors import MsgppError


@dataclass(frozen=True)
class TrackRef:
    subset: str
    name: str
    mixture: Path


def list_tracks(root: str | os.PathLike, subsets: tuple[str, ...] = SUBSETS) -> list[TrackRef]:
    """Every track of `subsets` under a MUSDB18-HQ-layout root (<root>/<subset>/<track>/mixture.wav).

    A missing root, a root with none of the subsets, or a track folder without mixture.wav is a
    MsgppError naming the path (checked before any model is loaded).
    """
    root = Path(root)
    if not root.is_dir():
        raise MsgppError(f"{root}: no such dataset folder (expected <root>/{{train,test}}/<track>/mixture.wav)")
    tracks, present = [], []
    for subset in subsets:
        folder = root / subset
        if not folder.is_dir():
            continue
        present.append(subset)
        for track in sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")):
            mixture = track / "mixture.wav"
            if not mixture.is_file():
                raise MsgppError(f"{track}: no mixture.wav in this track folder")
            tracks.append(TrackRef(subset, track.name, mixture))
    if not present:
        raise MsgppError(f"{root}: no {' or '.join(subsets)} folder (expected the MUSDB18-HQ layout)")
    if not tracks:
        raise MsgppError(f"{root}: no tracks under {', '.join(present)}")
    return tracks
