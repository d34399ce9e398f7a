"""Whole commands stopped and raced (issue 15), each in its own process, as a user would:

- `msgpp enhance` over a folder and `msgpp separate` into an estimate cache, stopped with SIGINT
  (Ctrl-C) or SIGKILL at two points (while the first output is being made, and once it is
  written), then rerun. SIGINT ends with "msgpp: interrupted" and status 130 and leaves no
  temporary file; whatever a stopped run left is complete and correct; the rerun removes what
  a killed one left, keeps what it finished, and ends byte-identical to an uninterrupted run.
- Two `msgpp separate` runs into one cache at once, and two `msgpp data` runs into one root.

Tiny inputs (a few seconds of audio), the shipped enhancer and the shipped openunmix on one CPU
thread. By default a SIGINT and a SIGKILL case of `msgpp enhance`, a SIGINT case of `msgpp
separate` (tests/separators/test_cache.py kills one) and both races run (about 40 s); the other
stop points are `slow` (about 35 s more).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers.reliability import CONCURRENCY, INTERRUPTIONS
from tests.helpers.separators import make_root

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# -- helpers -------------------------------------------------------------------------------------
def start(*argv) -> subprocess.Popen:
    """`msgpp ARGV` in a new process. SIGINT gets Python's default handler (KeyboardInterrupt)
    there even when this process ignores it (a background job in a non-interactive shell)."""
    return subprocess.Popen(
        [sys.executable, "-m", "msgpp.cli", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err


def run(*argv) -> str:
    code, err = finish(start(*argv))
    assert code == 0, err
    return err


def stop_when(process: subprocess.Popen, ready, signum: int, timeout: float = 300) -> tuple[int, str]:
    """Send `signum` as soon as `ready()` holds; the exit status and stderr."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            code, err = finish(process)
            pytest.fail(f"the run ended (exit {code}) before it could be stopped: {err[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the stop point was never reached")
        time.sleep(0.002)
    process.send_signal(signum)
    return finish(process)


def temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if ".tmp" in path.name]


def visible(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".")]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (lock files aside) by relative path: what two runs must share."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def assert_stopped(signum: int, code: int, err: str, folder: Path) -> None:
    if signum == signal.SIGINT:
        lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
        assert code == 130 and lines[-1] == "msgpp: interrupted", err[-2000:]
        assert "Traceback" not in err, err[-2000:]
        assert not temporaries(folder), temporaries(folder)
    else:
        assert code == -signal.SIGKILL


# -- msgpp enhance over a folder ---------------------------------------------------------------
ENHANCE = ["--source", "bass", "--backend", "torch", "--threads", "1", "--segment", "0.5", "--overlap", "0.1"]
ENHANCE += ["--batch-size", "1", "-q"]


@pytest.fixture(scope="module")
def estimates(tmp_path_factory) -> Path:
    """Eight 4-s stereo files at 44.1 kHz (about 0.3 s of work each on one thread)."""
    folder = tmp_path_factory.mktemp("estimates")
    rng = np.random.default_rng(0)
    t = np.arange(4 * 44100) / 44100
    for index in range(8):
        tone = 0.3 * np.sin(2 * np.pi * (60 + 15 * index) * t)[:, None].repeat(2, 1)
        audio = tone + 0.05 * rng.standard_normal((t.size, 2))
        sf.write(folder / f"bass-{index}.wav", audio.astype(np.float32), 44100, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def enhanced(estimates, tmp_path_factory) -> Path:
    """An uninterrupted run: what every stopped-and-rerun one must end with."""
    out = tmp_path_factory.mktemp("enhanced") / "out"
    run("enhance", estimates, "--out", out, *ENHANCE)
    assert len(visible(out)) == 8
    return out


ENHANCE_POINTS = {
    "while writing the first output": lambda out: bool(temporaries(out)),
    "after the first output": lambda out: bool(visible(out)),
}
SIGNALS = {"SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL}


def _enhance_stopped(signal_name, point, estimates, enhanced, tmp_path) -> None:
    out = tmp_path / "out"
    process = start("enhance", estimates, "--out", out, *ENHANCE)
    code, err = stop_when(process, lambda: ENHANCE_POINTS[point](out), SIGNALS[signal_name])
    assert_stopped(SIGNALS[signal_name], code, err, out)
    finished = visible(out)
    assert len(finished) < 8, "the run was not stopped before its end"
    for path in finished:  # what it finished is complete and correct
        assert path.read_bytes() == (enhanced / path.relative_to(out)).read_bytes(), path
    err = run("enhance", estimates, "--out", out, *ENHANCE)
    if finished:
        assert f"kept {len(finished)} output(s)" in err, err
    assert not temporaries(out), temporaries(out)
    assert tree(out) == tree(enhanced)  # outputs and their records, byte for byte


@INTERRUPTIONS
@pytest.mark.parametrize(
    "signal_name, point", [("SIGINT", "while writing the first output"), ("SIGKILL", "after the first output")]
)
def test_enhance_stopped_then_rerun(signal_name, point, estimates, enhanced, tmp_path):
    _enhance_stopped(signal_name, point, estimates, enhanced, tmp_path)


@INTERRUPTIONS
@pytest.mark.slow
@pytest.mark.parametrize(
    "signal_name, point", [("SIGINT", "after the first output"), ("SIGKILL", "while writing the first output")]
)
def test_enhance_stopped_elsewhere_then_rerun(signal_name, point, estimates, enhanced, tmp_path):
    _enhance_stopped(signal_name, point, estimates, enhanced, tmp_path)


# -- msgpp separate into an estimate cache -------------------------------------------------------
SEPARATE = ["--separators", "openunmix", "--accelerator", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    """Four 3-s songs in the MUSDB18-HQ layout (about 0.5 s of separation each)."""
    return make_root(tmp_path_factory.mktemp("songs"), {"test": 4}, seconds=3.0, seed=2)


@pytest.fixture(scope="module")
def separated(songs, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("separated") / "cache"
    run("separate", "--root", songs, "--cache", cache, *SEPARATE)
    assert len(list(cache.rglob("meta.json"))) == 4
    return cache


SEPARATE_POINTS = {  # a track's lock is taken before it is separated, its meta.json written last
    "while separating the first track": lambda cache: bool(list(cache.rglob(".lock"))),
    "after the first track": lambda cache: bool(list(cache.rglob("meta.json"))),
}


def _separate_stopped(signal_name, point, songs, separated, tmp_path) -> None:
    cache = tmp_path / "cache"
    process = start("separate", "--root", songs, "--cache", cache, *SEPARATE)
    code, err = stop_when(process, lambda: SEPARATE_POINTS[point](cache), SIGNALS[signal_name])
    assert_stopped(SIGNALS[signal_name], code, err, cache)
    done = [path.parent for path in cache.rglob("meta.json")]
    assert len(done) < 4, "the run was not stopped before its end"
    for folder in done:  # a track with meta.json is complete and correct
        assert tree(folder) == tree(separated / folder.relative_to(cache)), folder
    err = run("separate", "--root", songs, "--cache", cache, *SEPARATE)
    assert f"{4 - len(done)} separated, {len(done)} already cached" in err, err
    assert not temporaries(cache), temporaries(cache)
    assert tree(cache) == tree(separated)


@INTERRUPTIONS
@pytest.mark.parametrize("signal_name, point", [("SIGINT", "after the first track")])
def test_separate_stopped_then_rerun(signal_name, point, songs, separated, tmp_path):
    _separate_stopped(signal_name, point, songs, separated, tmp_path)


@INTERRUPTIONS
@pytest.mark.slow
@pytest.mark.parametrize(
    "signal_name, point",
    [
        ("SIGINT", "while separating the first track"),
        ("SIGKILL", "while separating the first track"),
        ("SIGKILL", "after the first track"),
    ],
)
def test_separate_stopped_elsewhere_then_rerun(signal_name, point, songs, separated, tmp_path):
    _separate_stopped(signal_name, point, songs, separated, tmp_path)


# -- two writers at once -----------------------------------------------------------------------------
@CONCURRENCY
def test_two_separate_runs_into_one_cache(songs, separated, tmp_path):
    """Both finish; each track is separated once (the second run waits for a track the first one
    holds, then finds it done); the cache is that of one uninterrupted run."""
    cache = tmp_path / "cache"
    first, second = (start("separate", "--root", songs, "--cache", cache, *SEPARATE) for _ in range(2))
    results = [finish(first), finish(second)]
    counts = []
    for code, err in results:
        assert code == 0 and "Traceback" not in err, err[-2000:]
        counts.append(re.search(r"(\d+) separated, (\d+) already cached", err).groups())
    assert sum(int(separated_) for separated_, _ in counts) == 4, counts
    assert not temporaries(cache), temporaries(cache)
    assert tree(cache) == tree(separated)


@CONCURRENCY
def test_two_data_runs_into_one_root(tmp_path):
    """Two `msgpp data` runs with different seeds into one new root used to both succeed and leave a
    mixed set. Now one writes the benchmark, the other refuses in one line; the set verifies."""
    from msgpp.data.benchmark import read_manifest, verify_benchmark
    from msgpp.data.render import default_soundfont
    from msgpp.errors import MsgppError

    try:
        default_soundfont()
    except MsgppError:
        pytest.skip("no soundfont here")
    root = tmp_path / "root"
    runs = {
        seed: start("data", "--root", root, "--preset", "tiny", "--workers", "1", "--seed", seed, "--quiet")
        for seed in (1, 2)
    }
    results = {seed: finish(process) for seed, process in runs.items()}
    codes = sorted(code for code, _ in results.values())
    assert codes == [0, 2], results
    (winner,) = [seed for seed, (code, _) in results.items() if code == 0]
    (loser_err,) = [err for code, err in results.values() if code == 2]
    lines = [line for line in loser_err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("msgpp: error: "), loser_err
    assert "another `msgpp data`" in lines[0] or "different benchmark" in lines[0], lines[0]
    assert read_manifest(root)["seed"] == winner and verify_benchmark(root) == []
    assert not temporaries(root), temporaries(root)
