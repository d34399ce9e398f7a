"""The embedded benchmark: a seeded multitrack set in the MUSDB18-HQ layout, rendered with FluidSynth.

    <root>/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav   44.1 kHz stereo PCM_16
    <root>/manifest.json                                               written last

The same seed, preset and soundfont give bit-identical files whatever the number of workers: each
song is planned from (seed, subset, index) alone and rendered by fresh synthesisers. Every
mixture is exactly the sum of its stem files (integer sum of the int16 stems).

An interrupted run resumes: finished songs are listed, with their checksums, in
<root>/.progress.json, which is replaced by the manifest at the end.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msgpp.constants import MUSDB_SAMPLE_RATE, STEMS, SUBSETS
from msgpp.data.plan import make_song_plan, track_name
from msgpp.errors import MsgppError
from msgpp.files import LOCK_NAME, FileLock, atomic_path, atomic_write_text, output_folder, sha256_file

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PROGRESS = ".progress.json"
FORMAT = "msgpp-embedded-benchmark/1"
# Bump whenever a change to plan.py or render.py changes the audio of a given seed: a folder made
# by another generator is then refused instead of being completed with songs of a different kind.
GENERATOR = 1


@dataclass(frozen=True)
class Preset:
    train: int
    test: int
    seconds: float


BENCHMARK_PRESETS = {
    "tiny": Preset(train=2, test=2, seconds=6.0),
    "small": Preset(train=20, test=6, seconds=12.0),
    "default": Preset(train=100, test=20, seconds=20.0),
}


def song_list(preset: Preset) -> list[tuple[str, int]]:
    """(subset, index) of every song; test songs first, so an interrupted run is usable early."""
    return [("test", i) for i in range(preset.test)] + [("train", i) for i in range(preset.train)]


def generate_benchmark(
    root, preset: str = "default", seed: int = 0, soundfont=None, workers: int | None = None, progress: bool = True
) -> dict:
    """Make (or complete) the embedded benchmark in `root` and return its manifest.

    Songs already present with their recorded checksums are kept. A folder holding a benchmark of
    another seed, preset or soundfont, or unrelated files, is refused.
    """
    from msgpp.data.render import check_soundfont, default_soundfont

    settings = _preset(preset)
    seed = _seed(seed)
    soundfont = check_soundfont(soundfont) if soundfont is not None else default_soundfont()
    root = Path(root)
    identity = {
        "format": FORMAT,
        "generator": GENERATOR,
        "preset": preset,
        "seed": seed,
        "sample_rate": MUSDB_SAMPLE_RATE,
        "seconds": settings.seconds,
        "train": settings.train,
        "test": settings.test,
        "soundfont": {"name": soundfont.name, "sha256": sha256_file(soundfont)},
    }
    _workers(workers, 1)  # a bad count stops the run before the folder is touched
    output_folder(root)
    with _exclusive(root):
        return _generate(root, identity, settings, seed, soundfont, workers, progress)


def _generate(
    root: Path, identity: dict, settings: Preset, seed: int, soundfont: Path, workers: int | None, progress: bool
) -> dict:
    done = _prepare_root(root, identity)
    todo = [(s, i) for s, i in song_list(settings) if not _song_intact(root, s, i, done)]
    workers = _workers(workers, len(todo))
    if todo and (root / MANIFEST).exists():  # the manifest only ever describes a complete folder
        _write_json(root / PROGRESS, {"identity": identity, "songs": done})
        (root / MANIFEST).unlink()
    started = time.perf_counter()
    if todo:
        log.info("rendering %d songs of %.0f s into %s with %d worker(s)", len(todo), settings.seconds, root, workers)
    jobs = [(str(root), str(soundfont), seed, subset, index, settings.seconds) for subset, index in todo]
    for key, record in _run(jobs, workers, progress):
        done[key] = record
        _write_json(root / PROGRESS, {"identity": identity, "songs": done})
    manifest = _manifest(identity, settings, done)
    _write_json(root / MANIFEST, manifest)
    (root / PROGRESS).unlink(missing_ok=True)
    if todo:
        log.info("made %d songs in %.1f s", len(todo), time.perf_counter() - started)
    return manifest


def verify_benchmark(root) -> list[str]:
    """Relative paths of the files that are missing or whose sha256 differs from the manifest
    (an empty list: the folder is exactly what was generated)."""
    manifest = read_manifest(root)
    root = Path(root)
    bad = []
    for relative, digest in sorted(manifest["files"].items()):
        path = root / relative
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(relative)
    return bad


def read_manifest(root) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise MsgppError(f"{path}: no manifest (not an embedded benchmark folder, or its generation did not finish)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MsgppError(f"{path}: unreadable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("identity", {}).get("format") != FORMAT:
        raise MsgppError(f"{path}: not a manifest of an msgpp embedded benchmark")
    return manifest


# ------------------------------------------------------------------------------------ internals
def _preset(name: str) -> Preset:
    if name not in BENCHMARK_PRESETS:
        raise MsgppError(f"unknown preset {name!r}; choose one of {', '.join(BENCHMARK_PRESETS)}")
    return BENCHMARK_PRESETS[name]


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise MsgppError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def _workers(workers: int | None, jobs: int) -> int:
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise MsgppError(f"workers must be a positive integer, got {workers!r}")
    return max(1, min(workers, jobs))


def _prepare_root(root: Path, identity: dict) -> dict:
    """Check that `root` is empty or holds (part of) this very benchmark; return the songs
    already recorded there ({"subset/track": {"files": {relative path: sha256}}})."""
    if root.exists() and not root.is_dir():
        raise MsgppError(f"{root}: exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST, PROGRESS):
        path = root / name
        if not path.is_file():
            continue
        try:
            recorded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise MsgppError(f"{path}: unreadable; delete it (or the folder) to regenerate") from None
        if recorded.get("identity") != identity:
            theirs = recorded.get("identity", {})
            raise MsgppError(
                f"{root} holds a different benchmark (preset {theirs.get('preset')!r}, seed {theirs.get('seed')!r}, "
                f"soundfont {theirs.get('soundfont', {}).get('name')!r}); choose another --root or delete it"
            )
        if name == PROGRESS:
            return dict(recorded.get("songs", {}))
        return {  # a finished benchmark: the song records are spread over "songs" and "files"
            key: {"plan": plan, "files": {rel: d for rel, d in recorded["files"].items() if rel.startswith(key + "/")}}
            for key, plan in recorded.get("songs", {}).items()
        }
    leftovers = [p.name for p in root.iterdir() if not p.name.startswith(".")]
    if leftovers:
        raise MsgppError(f"{root} is not empty and holds no benchmark manifest; choose an empty or new folder")
    # Claim the folder for this benchmark before the first song: a run killed in it resumes, and
    # a run with another seed, preset or soundfont is refused instead of mixing its songs in.
    _write_json(root / PROGRESS, {"identity": identity, "songs": {}})
    return {}


def _exclusive(root: Path):
    """One writer per root: a second `msgpp data` into the same folder stops at once."""
    return FileLock(root / LOCK_NAME).held(
        busy=f"{root}: another `msgpp data` is writing into this folder; "
        "wait for it to finish, or choose another --root"
    )


def _song_intact(root: Path, subset: str, index: int, done: dict) -> bool:
    record = done.get(f"{subset}/{track_name(subset, index)}")
    if record is None:
        return False
    return all((root / rel).is_file() and sha256_file(root / rel) == digest for rel, digest in record["files"].items())


def _run(jobs: list[tuple], workers: int, progress: bool):
    """Yield (song key, record) as songs finish; in one process or a pool of `workers`."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="song", desc="rendering", disable=not progress or not jobs)
    try:
        if workers == 1:
            for job in jobs:
                yield _render_job(job)
                bar.update()
        else:
            import multiprocessing

            # spawn: workers start clean (no inherited threads or FluidSynth state) on every OS
            with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
                for result in pool.imap_unordered(_render_job, jobs):
                    yield result
                    bar.update()
    finally:
        bar.close()


_RENDERERS: dict = {}  # one Renderer per soundfont per process


def _init_worker() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool


def _render_job(job: tuple) -> tuple[str, dict]:
    from msgpp.data.render import Renderer, mix_to_int16

    root, soundfont, seed, subset, index, seconds = job
    renderer = _RENDERERS.get(soundfont)
    if renderer is None:
        renderer = _RENDERERS[soundfont] = Renderer(soundfont)
    plan = make_song_plan(seed, subset, index, seconds)
    audio = mix_to_int16(renderer.render_song(plan), plan, renderer.sample_rate)
    folder = Path(root) / subset / plan.name
    files = {}
    for stem in STEMS:
        path = folder / f"{stem}.wav"
        write_wav_int16(path, audio[stem], renderer.sample_rate)
        files[f"{subset}/{plan.name}/{stem}.wav"] = sha256_file(path)
    return f"{subset}/{plan.name}", {"files": files, "plan": plan.summary()}


def write_wav_int16(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write int16 (channels, samples) as a plain PCM WAV, atomically. The header depends on the
    shape and rate only, so the bytes are reproducible across machines and library versions."""
    if audio.dtype != np.int16:
        raise TypeError("write_wav_int16 takes int16 samples")
    with atomic_path(path) as temporary, open(temporary, "wb") as handle, wave.open(handle, "wb") as writer:
        writer.setnchannels(audio.shape[0])
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(np.ascontiguousarray(audio.T).astype("<i2").tobytes())


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _versions() -> dict:
    import scipy

    from msgpp import __version__

    versions = {
        "msgpp": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }
    try:
        import ctypes

        import fluidsynth

        major, minor, micro = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        fluidsynth._fl.fluid_version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(micro))
        versions["libfluidsynth"] = f"{major.value}.{minor.value}.{micro.value}"
        versions["pyfluidsynth"] = fluidsynth.api_version
    except (ImportError, AttributeError):
        pass
    return versions


def _manifest(identity: dict, preset: Preset, songs: dict) -> dict:
    tracks = {
        subset: sorted(key.split("/", 1)[1] for key in songs if key.startswith(subset + "/")) for subset in SUBSETS
    }
    files = {rel: digest for record in songs.values() for rel, digest in record["files"].items()}
    return {
        "identity": identity,
        "seed": identity["seed"],
        "preset": identity["preset"],
        "soundfont": identity["soundfont"],
        "versions": _versions(),
        "tracks": tracks,
        "songs": {key: songs[key]["plan"] for key in sorted(songs)},
        "files": dict(sorted(files.items())),
    }
