"""Shared fixtures. `tiny_root`: the embedded benchmark's tiny preset, generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """Every reliability case names its class (tests/helpers/reliability.py), so the suite can be
    counted by class (docs/reliability.md)."""
    from tests.helpers.reliability import CLASSES

    for item in items:
        for mark in item.iter_markers("reliability"):
            if len(mark.args) != 1 or mark.args[0] not in CLASSES:
                raise pytest.UsageError(f"{item.nodeid}: mark it reliability(CLASS), CLASS one of {', '.join(CLASSES)}")


# MSGPP_CACHE_DIR as the test session found it: msgpp's own cache, where `make install` puts the
# released weights (read before private_cache_dir replaces it).
OUTSIDE_CACHE_DIR = os.environ.get("MSGPP_CACHE_DIR")


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """ONNX graphs the Enhancer exports go to a folder of this test session, not ~/.cache/msgpp."""
    previous = os.environ.get("MSGPP_CACHE_DIR")
    os.environ["MSGPP_CACHE_DIR"] = str(tmp_path_factory.mktemp("msgpp-cache"))
    yield Path(os.environ["MSGPP_CACHE_DIR"])
    if previous is None:
        os.environ.pop("MSGPP_CACHE_DIR", None)
    else:
        os.environ["MSGPP_CACHE_DIR"] = previous


@pytest.fixture
def user_cache_dir(monkeypatch) -> Path:
    """msgpp's cache as it is outside the tests, for a slow test that uses what `make install`
    fetched there (the released Spleeter 2stems weights) instead of the session's private one."""
    from msgpp.files import cache_dir

    if OUTSIDE_CACHE_DIR is None:
        monkeypatch.delenv("MSGPP_CACHE_DIR")
    else:
        monkeypatch.setenv("MSGPP_CACHE_DIR", OUTSIDE_CACHE_DIR)
    return cache_dir()


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A tiny MUSDB18-HQ-layout folder: <root>/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav.

    2 train + 2 test songs of ~6 s, 44.1 kHz stereo PCM_16, seed 0. Read-only by convention: copy it
    before modifying anything.
    """
    from msgpp.data.benchmark import generate_benchmark

    root = tmp_path_factory.mktemp("musdb-tiny")
    generate_benchmark(root, preset="tiny", seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models train fastest on one thread; two oversubscribe a shared 2-core machine (~10x slower).
    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
