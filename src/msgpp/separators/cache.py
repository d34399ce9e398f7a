"""The estimate cache: every separator's estimates, written once, keyed by the weights' hash.

Layout: <cache>/<separator>/<weights id>/<subset>/<track>/<source>.wav, plus meta.json beside
the sources (separator, weights sha256, sample rate, msgpp version). The weights id is the first
12 hex digits of the weights' sha256, so a changed weights file gets a new key, never a stale hit.
A track is complete when meta.json exists: it is written last, atomically, after every source.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from msgpp.errors import MsgppError

META_NAME = "meta.json"


@dataclass(frozen=True)
class EstimateKey:
    separator: str
    weights_id: str
    subset: str
    track: str

    def folder(self, cache_root: str | os.PathLike) -> Path:
        return Path(cache_root) / self.separator / self.weights_id / self.subset / self.track


def weights_id(sha256: str) -> str:
    return sha256[:12]


def is_complete(folder: Path) -> bool:
    return (folder / META_NAME).is_file()


def write_meta(folder: Path, meta: dict) -> None:
    """Write meta.json atomically; call it after every source file is in place."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".meta.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(meta, handle, indent=2, sort_keys=True)
        os.replace(temporary, folder / META_NAME)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_meta(folder: Path) -> dict:
    return json.loads((folder / META_NAME).read_text())


def weights_ids(cache_root: str | os.PathLike, separator: str) -> list[str]:
    """The weights ids cached for a separator, newest first."""
    folder = Path(cache_root) / separator
    if not folder.is_dir():
        return []
    ids = [path for path in folder.iterdir() if path.is_dir()]
    return [path.name for path in sorted(ids, key=lambda path: path.stat().st_mtime, reverse=True)]


def find_estimates(
    cache_root: str | os.PathLike, separator: str, subset: str, weights: str | None = None
) -> dict[str, dict[str, Path]]:
    """{track: {source: path}} of the complete cached tracks of one separator and subset.

    `weights` picks a weights id; by default the newest cached one is used.
    """
    ids = weights_ids(cache_root, separator)
    if not ids:
        raise MsgppError(f"no cached estimates for separator {separator!r} under {cache_root} (run `msgpp separate`)")
    chosen = weights or ids[0]
    if chosen not in ids:
        raise MsgppError(f"no cached estimates for {separator!r} with weights id {chosen!r} (have: {', '.join(ids)})")
    subset_folder = Path(cache_root) / separator / chosen / subset
    found: dict[str, dict[str, Path]] = {}
    if subset_folder.is_dir():
        for track_folder in sorted(subset_folder.iterdir()):
            if track_folder.is_dir() and is_complete(track_folder):
                found[track_folder.name] = {path.stem: path for path in sorted(track_folder.glob("*.wav"))}
    return found
