"""`msgpp separate` and the estimate cache: layout, skipping, keys, --force, kills, damaged
estimates, another writer's files, bad input."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from msgpp.cli import main
from msgpp.constants import SOURCES
from msgpp.files import sha256_file
from msgpp.separators import cache
from tests.helpers.reliability import BAD_LAYOUTS, BAD_OPTIONS, BAD_WEIGHTS, CONCURRENCY, FILESYSTEM, INTERRUPTIONS
from tests.helpers.separators import build_tiny, make_root

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_root(tmp_path_factory.mktemp("songs"), {"train": 2, "test": 1}, seconds=0.8)


@pytest.fixture()
def weights(tmp_path) -> Path:
    build_tiny("demucs_v2").save_weights(tmp_path / "weights")
    return tmp_path / "weights"


def _separate(root, cache_root, weights, *extra) -> int:
    return main(
        [
            "separate",
            "--root",
            str(root),
            "--separators",
            "demucs_v2",
            "--cache",
            str(cache_root),
            "--weights",
            f"demucs_v2={weights}",
            "--threads",
            "1",
            *extra,
        ]
    )


def _meta_times(cache_root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in cache_root.rglob(cache.META_NAME)}


def test_separate_writes_every_track_at_the_mixture_rate_and_channels(root, weights, tmp_path):
    assert _separate(root, tmp_path / "cache", weights) == 0
    for subset, count in (("train", 2), ("test", 1)):
        found = cache.find_estimates(tmp_path / "cache", "demucs_v2", subset)
        assert len(found) == count
        for track, paths in found.items():
            assert sorted(paths) == sorted(SOURCES)
            mixture = sf.info(str(root / subset / track / "mixture.wav"))
            for path in paths.values():
                info = sf.info(str(path))
                assert (info.samplerate, info.channels, info.frames) == (44100, 2, mixture.frames)
            meta = json.loads((path.parent / cache.META_NAME).read_text())
            assert meta["separator"] == "demucs_v2" and meta["track"] == track and meta["subset"] == subset


def test_rerun_hits_the_cache_without_loading_a_model(root, weights, tmp_path, monkeypatch):
    from msgpp.separators.demucs import DemucsV2

    assert _separate(root, tmp_path / "cache", weights) == 0
    before = _meta_times(tmp_path / "cache")

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although every track is cached")

    monkeypatch.setattr(DemucsV2, "load", classmethod(refuse))
    monkeypatch.setattr(DemucsV2, "forward_chunks", refuse)
    assert _separate(root, tmp_path / "cache", weights) == 0
    assert _meta_times(tmp_path / "cache") == before


def test_changed_weights_miss_the_cache_and_force_recomputes(root, weights, tmp_path):
    assert _separate(root, tmp_path / "cache", weights, "--subset", "test") == 0
    first_ids = cache.weights_ids(tmp_path / "cache", "demucs_v2")
    build_tiny("demucs_v2", seed=1).save_weights(weights)  # new weights in the same folder
    assert _separate(root, tmp_path / "cache", weights, "--subset", "test") == 0
    ids = cache.weights_ids(tmp_path / "cache", "demucs_v2")
    assert len(ids) == 2 and set(first_ids) < set(ids)
    before = _meta_times(tmp_path / "cache")
    time.sleep(0.01)
    assert _separate(root, tmp_path / "cache", weights, "--subset", "test", "--force") == 0
    after = _meta_times(tmp_path / "cache")
    changed = [path for path in after if after[path] != before[path]]
    assert len(changed) == 1 and ids[0] in changed[0]  # only the current weights' track was redone


def test_a_changed_mixture_is_separated_again(root, weights, tmp_path):
    """A benchmark regenerated (another seed) into the same root must not pair old estimates with new songs."""
    import shutil

    songs = tmp_path / "songs"
    shutil.copytree(root, songs)
    assert _separate(songs, tmp_path / "cache", weights, "--subset", "test") == 0
    (track,) = (songs / "test").iterdir()
    meta_path = next((tmp_path / "cache").rglob(cache.META_NAME))
    meta = json.loads(meta_path.read_text())
    assert meta[cache.MIXTURE_KEY] == sha256_file(track / "mixture.wav")
    assert not Path(meta["weights"]).is_absolute()
    before = _meta_times(tmp_path / "cache")
    audio, rate = sf.read(str(track / "mixture.wav"), dtype="float32")
    sf.write(str(track / "mixture.wav"), audio[::-1] * 0.5, rate, subtype="PCM_16")  # a different song
    time.sleep(0.01)
    assert _separate(songs, tmp_path / "cache", weights, "--subset", "test") == 0
    assert _meta_times(tmp_path / "cache") != before
    assert json.loads(meta_path.read_text())[cache.MIXTURE_KEY] == sha256_file(track / "mixture.wav")


@INTERRUPTIONS
def test_kill_during_separate_then_rerun_completes(tmp_path, weights):
    """SIGKILL the command while it works; no visible file is half-written, and a rerun finishes."""
    songs = make_root(tmp_path / "songs", {"test": 6}, seconds=3.0, seed=1)
    cache_root = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "msgpp.cli",
        "separate",
        "--root",
        str(songs),
        "--separators",
        "demucs_v2",
        "--cache",
        str(cache_root),
        "--weights",
        f"demucs_v2={weights}",
        "--threads",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(cache_root.rglob(cache.META_NAME)):
            if process.poll() is not None:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    done = cache.find_estimates(cache_root, "demucs_v2", "test")
    assert 1 <= len(done) < 6
    for paths in done.values():
        for path in paths.values():
            sf.read(str(path))  # every estimate of a complete track is a valid file

    assert _separate(songs, cache_root, weights) == 0
    done = cache.find_estimates(cache_root, "demucs_v2", "test")
    assert len(done) == 6
    for track, paths in done.items():
        assert sorted(paths) == sorted(SOURCES)
        frames = sf.info(str(songs / "test" / track / "mixture.wav")).frames
        for path in paths.values():
            audio, rate = sf.read(str(path))
            assert rate == 44100 and audio.shape == (frames, 2)
    left = [p for p in cache_root.rglob(".*") if p.is_file() and p.name != ".lock"]  # a track's lock file stays
    assert not left, "temporary files were left behind"


@FILESYSTEM
@pytest.mark.parametrize("damage", ["cut short", "replaced by a shorter file", "removed"])
def test_a_damaged_estimate_is_separated_again(damage, root, weights, tmp_path):
    """A cached estimate cut short (a full disk, a copy stopped halfway) or replaced, with its
    meta.json intact, used to be reported "cached" forever."""
    cache_root = tmp_path / "cache"
    assert _separate(root, cache_root, weights, "--subset", "test") == 0
    (folder,) = [path.parent for path in cache_root.rglob(cache.META_NAME)]
    victim = folder / "bass.wav"
    good = victim.read_bytes()
    if damage == "cut short":
        victim.write_bytes(good[: len(good) // 2])
    elif damage == "replaced by a shorter file":  # a complete WAV whose header agrees with its size
        audio, rate = sf.read(str(victim))
        sf.write(str(victim), audio[: len(audio) // 2], rate, subtype="PCM_16")
    else:
        victim.unlink()
    before = _meta_times(cache_root)
    time.sleep(0.01)
    assert _separate(root, cache_root, weights, "--subset", "test") == 0
    assert _meta_times(cache_root) != before and victim.read_bytes() == good


@FILESYSTEM
def test_a_cache_written_before_sizes_were_recorded_is_still_cached(root, weights, tmp_path, monkeypatch):
    from msgpp.separators.demucs import DemucsV2

    cache_root = tmp_path / "cache"
    assert _separate(root, cache_root, weights, "--subset", "test") == 0
    (meta_path,) = cache_root.rglob(cache.META_NAME)
    meta = json.loads(meta_path.read_text())
    assert set(meta[cache.SIZES_KEY]) == set(SOURCES)
    del meta[cache.SIZES_KEY]
    meta_path.write_text(json.dumps(meta))

    def refuse(*args, **kwargs):
        raise AssertionError("a complete track of an older cache was separated again")

    monkeypatch.setattr(DemucsV2, "load", classmethod(refuse))
    assert _separate(root, cache_root, weights, "--subset", "test") == 0


@CONCURRENCY
def test_writing_a_track_leaves_another_writers_temporaries(tmp_path):
    """Two runs writing one track folder: the one that cleans up after a source the separator no
    longer makes used to delete the other's temporary `.bass.<pid>-....tmp.wav`, which then died
    renaming it."""
    folder = tmp_path / "track"
    folder.mkdir()
    live = folder / f".bass.{os.getpid()}-abcd1234.tmp.wav"  # a writer that is still running
    live.write_bytes(b"RIFF")
    (folder / "piano.wav").write_bytes(b"RIFF")  # an old source: removed
    cache.write_track(folder, {"drums": np.zeros((2, 100), np.float32)}, 44100, {"separator": "x"})
    assert live.exists() and not (folder / "piano.wav").exists()
    assert cache.read_meta(folder)[cache.SIZES_KEY] == {"drums": (folder / "drums.wav").stat().st_size}


# -- bad input: one line, exit status 2 -------------------------------------------------------------
def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    return err[-1]


@BAD_LAYOUTS
def test_missing_root(tmp_path, weights, capsys):
    assert _separate(tmp_path / "absent", tmp_path / "cache", weights) == 2
    assert "absent: no such dataset folder" in _error(capsys)


@BAD_LAYOUTS
def test_track_without_mixture(tmp_path, weights, capsys):
    songs = make_root(tmp_path / "songs", {"test": 1}, seconds=0.2)
    (songs / "test" / "test-000" / "mixture.wav").unlink()
    assert _separate(songs, tmp_path / "cache", weights) == 2
    assert "test-000: no mixture.wav" in _error(capsys)


@BAD_OPTIONS
def test_unknown_separator(root, tmp_path, capsys):
    assert main(["separate", "--root", str(root), "--separators", "demucs_v2,nope", "--cache", str(tmp_path)]) == 2
    assert "unknown separator 'nope'" in _error(capsys)


@BAD_WEIGHTS
def test_corrupt_weights(root, weights, tmp_path, capsys):
    victim = next(weights.glob("*.th"))
    victim.write_bytes(victim.read_bytes()[:-10])
    assert _separate(root, tmp_path / "cache", weights) == 2
    assert "checksum mismatch" in _error(capsys)


@FILESYSTEM
def test_cache_that_cannot_be_created(root, weights, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert _separate(root, tmp_path / "file" / "cache", weights) == 2
    assert "--cache" in (message := _error(capsys)) and "cannot create the folder" in message


@FILESYSTEM
def test_disk_full_while_writing(root, weights, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sf, "write", full)
    assert _separate(root, tmp_path / "cache", weights, "--subset", "test") == 2
    assert "No space left on device" in _error(capsys)
    assert not list((tmp_path / "cache").rglob("*.wav")) and not list((tmp_path / "cache").rglob(".*.tmp*"))


def test_pcm16_estimates_that_would_clip_are_stored_as_float(tmp_path):
    loud = {"a": np.full((2, 100), 1.5, np.float32), "b": np.full((2, 100), 0.5, np.float32)}
    folder = cache.write_track(tmp_path / "t", loud, 44100, {"separator": "x"})
    assert cache.read_meta(folder)["subtypes"] == {"a": "FLOAT", "b": "PCM_16"}
    assert sf.read(str(folder / "a.wav"))[0].max() == pytest.approx(1.5)
