"""Read MUSDB-layout datasets: the embedded benchmark, a real MUSDB18-HQ (wav) or MUSDB18 (.stem.mp4).

    tracks = open_tracks("data/musdb-embedded", subset="test")
    mixture = tracks[0].load_mixture()        # float32 (channels, samples)
    vocals = tracks[0].load_source("vocals")

The folder is listed through `musdb.DB`, so the embedded set and the real datasets take the same
path; audio is read only when asked for. `root=None` reads $MUSDB_PATH, as musdb itself does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msgpp.constants import SOURCES, SUBSETS
from msgpp.errors import MsgppError


@dataclass
class Track:
    """One song. Audio is loaded on demand and not kept."""

    name: str
    subset: str
    sample_rate: int
    _musdb_track: object = field(repr=False)
    path: Path | None = None  # the track's folder (wav) or .stem.mp4 file

    def load_mixture(self) -> np.ndarray:
        self.check_layout()
        return self._read(self._musdb_track.audio, "mixture")

    def load_source(self, source: str) -> np.ndarray:
        if source not in SOURCES:
            raise MsgppError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
        self.check_layout()
        return self._read(self._musdb_track.sources[source].audio, source)

    def check_layout(self) -> None:
        """A wav-layout track's stems must match its mixture: same rate, channels and length
        (musdb would read them at the mixture's rate and the scores would be nonsense)."""
        if self.path is None or not self.path.is_dir() or getattr(self, "_layout_checked", False):
            return
        from msgpp.audio import check_audio_file

        mixture = check_audio_file(self.path / "mixture.wav", decode=False)
        for source in SOURCES:
            path = self.path / f"{source}.wav"
            if not path.is_file():
                raise MsgppError(
                    f"{path}: missing (a MUSDB track folder holds mixture.wav and {', '.join(SOURCES)}.wav)"
                )
            info = check_audio_file(path, decode=False)
            for what in ("samplerate", "channels", "frames"):
                if getattr(info, what) != getattr(mixture, what):
                    raise MsgppError(
                        f"{path}: {getattr(info, what)} {what}, but mixture.wav has "
                        f"{getattr(mixture, what)}; the stems of a track must match its mixture"
                    )
        self._layout_checked = True

    def _read(self, audio, what: str) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[:, None]
        return np.ascontiguousarray(audio.T)  # musdb gives (samples, channels)


def open_tracks(root=None, subset: str = "test", names=None) -> list[Track]:
    """The tracks of `subset` ("train" or "test") under `root` (None → $MUSDB_PATH), sorted by
    name; `names` keeps only those tracks (each must exist)."""
    if subset not in SUBSETS:
        raise MsgppError(f"unknown subset {subset!r}; choose train or test")
    root = _resolve_root(root)
    is_wav = _detect_format(root, subset)
    import musdb

    try:
        database = musdb.DB(root=str(root), subsets=subset, is_wav=is_wav)
    except (RuntimeError, OSError) as error:  # musdb raises RuntimeError for a bad root
        raise MsgppError(f"{root}: cannot read as a MUSDB dataset ({error})") from None
    tracks = []
    for musdb_track in database.tracks:
        path = Path(musdb_track.path)
        tracks.append(
            Track(
                name=musdb_track.name,
                subset=subset,
                sample_rate=int(musdb_track.rate),
                _musdb_track=musdb_track,
                path=path.parent if is_wav else path,
            )
        )
    tracks.sort(key=lambda track: track.name)
    if not tracks:
        raise MsgppError(f"{root / subset}: no tracks found")
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        by_name = {track.name: track for track in tracks}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise MsgppError(f"{root / subset}: no track named {', '.join(map(repr, missing))}")
        tracks = [by_name[name] for name in names]
    return tracks


def _resolve_root(root) -> Path:
    if root is None:
        root = os.environ.get("MUSDB_PATH")
        if not root:
            raise MsgppError("no dataset folder: pass --root DIR (or root=...) or set MUSDB_PATH")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MsgppError(f"{root}: dataset folder not found")
    return root


def _detect_format(root: Path, subset: str) -> bool:
    """True for the wav layout (MUSDB18-HQ, the embedded set), False for MUSDB18 .stem.mp4 files."""
    folder = root / subset
    if not folder.is_dir():
        raise MsgppError(f"{root}: not a MUSDB layout (no {subset}/ folder)")
    if any(folder.glob("*.stem.mp4")):
        return False
    if any((entry / "mixture.wav").is_file() for entry in folder.iterdir() if entry.is_dir()):
        return True
    raise MsgppError(f"{folder}: not a MUSDB layout (expected <track>/mixture.wav folders or <track>.stem.mp4 files)")
