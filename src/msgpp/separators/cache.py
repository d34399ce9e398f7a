"""The estimate cache: every separator's estimates, written once, keyed by the weights' hash.

Layout: <cache>/<separator>/<weights id>/<subset>/<track>/<source>.wav, plus meta.json beside
the sources (separator, weights sha256, the mixture's sha256, sample rate, msgpp version). The
weights id is the first 12 hex digits of the weights' sha256, so a changed weights file gets a new
key, never a stale hit; a changed mixture (a benchmark regenerated with another seed into the same
root) makes its track pending again, because meta.json records which mixture was separated.
A track is complete when meta.json exists: it is written last, atomically, after every source,
and records each source file's size, so a file truncated or replaced afterwards makes its track
pending again instead of "cached" forever. Rewriting a track (--force, or after a kill) first
removes meta.json and any temporary files a killed writer left, so a reader never pairs a new
meta.json with old sources or vice versa. A writer holds the track's lock file (`.lock` in its
folder, see track_lock) from before it separates the track until meta.json is written, so two
`msgpp separate` runs into one cache never write the same track at once: the second waits, then
finds the track done and skips it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from msgpp.errors import MsgppError
from msgpp.files import LOCK_NAME, FileLock, atomic_write_text, remove_stale_in, sha256_file

META_NAME = "meta.json"
MIXTURE_KEY = "mixture_sha256"  # meta.json's record of the mixture file that was separated
SIZES_KEY = "bytes"  # meta.json's record of each source file's size: {source: bytes}


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
    atomic_write_text(folder / META_NAME, json.dumps(meta, indent=2, sort_keys=True))


def write_track(folder: Path, estimates: dict, sample_rate: int, meta: dict, subtype: str = "PCM_16") -> Path:
    """Write one track's estimates ({source: (channels, samples)}) and then its meta.json.

    Every file is written atomically. A PCM_16 estimate that peaks over full scale is stored as
    32-bit float instead (never clipped); meta.json records each file's subtype and size. The
    caller holds the track's lock (track_lock) when another process may write the same cache.
    """
    import numpy as np

    from msgpp.audio import save_audio

    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_NAME).unlink(missing_ok=True)
    clean_partial(folder)
    subtypes = {}
    for source, audio in estimates.items():
        chosen = subtype
        if subtype != "FLOAT" and float(np.abs(audio).max(initial=0.0)) > 1.0:
            chosen = "FLOAT"
        save_audio(folder / f"{source}.wav", audio, sample_rate, subtype=chosen)
        subtypes[source] = chosen
    for stale in folder.glob("*.wav"):  # a source the separator no longer makes (never a temporary)
        if stale.stem not in estimates and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)
    sizes = {source: (folder / f"{source}.wav").stat().st_size for source in estimates}
    write_meta(
        folder,
        {
            **meta,
            "sample_rate": int(sample_rate),
            "sources": sorted(estimates),
            "subtypes": subtypes,
            SIZES_KEY: sizes,
        },
    )
    return folder


def track_lock(folder: Path) -> FileLock:
    """The lock of one cached track (`<folder>/.lock`; the folder is made). Acquire it before
    separating the track and release it after write_track."""
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / LOCK_NAME)


def clean_partial(folder: Path) -> None:
    """Remove the temporary files of a writer that was killed (they start with a dot); those of a
    writer still running (another `msgpp separate` into this cache) are left alone."""
    remove_stale_in(folder)


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
                found[track_folder.name] = {
                    path.stem: path for path in sorted(track_folder.glob("*.wav")) if not path.name.startswith(".")
                }
    return found


def track_folder(cache_root: str | os.PathLike, separator: str, weights_id_: str, track) -> Path:
    """The cache folder of a track (anything with .subset and .name)."""
    return EstimateKey(separator, weights_id_, track.subset, track.name).folder(cache_root)


def pending_tracks(cache_root, separator: str, weights_id_: str, tracks: list, force: bool = False) -> list:
    """The tracks whose estimates are not complete in the cache, or were made from another mixture
    than the track's current one (all of them with `force`)."""
    if force:
        return list(tracks)
    return [track for track in tracks if not up_to_date(track_folder(cache_root, separator, weights_id_, track), track)]


def up_to_date(folder: Path, track) -> bool:
    """Whether the cached track in `folder` is complete and was made from the track's current
    mixture: meta.json is readable, every source it lists is a complete audio file of the size it
    records (caches written before sizes were recorded: of a complete header), and its mixture
    checksum is the mixture's."""
    from msgpp.audio import check_audio_file
    from msgpp.errors import AudioError

    if not is_complete(folder):
        return False
    try:
        meta = read_meta(folder)
        recorded = meta.get(MIXTURE_KEY)
        sizes = meta.get(SIZES_KEY) or {}
        for source in meta.get("sources") or []:  # a truncated or missing estimate: separate again
            path = folder / f"{source}.wav"
            if source in sizes and path.stat().st_size != sizes[source]:
                return False
            check_audio_file(path, decode=False)
    except (OSError, ValueError, TypeError, AttributeError, AudioError):  # unreadable meta.json: separate again
        return False
    return recorded == sha256_file(track.mixture)


def portable_location(location: str) -> str:
    """A weights location fit for meta.json: relative to the working folder, or just its name,
    never an absolute path of this machine."""
    path = Path(location)
    if not path.is_absolute():
        return str(location)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return path.name
