"""A separator from another package, registered through the "msgpp.separators" entry-point group."""

from __future__ import annotations

import numpy as np
import pytest

from msgpp.errors import MsgppError
from tests.helpers import FIXTURES

TOY_PACKAGE = FIXTURES / "separator_toy"  # toy_separator.py + its dist-info


@pytest.fixture()
def toy_installed(monkeypatch):
    # A folder on sys.path holding a *.dist-info is an installed distribution to importlib.metadata.
    monkeypatch.syspath_prepend(str(TOY_PACKAGE))


def test_entry_point_separator_is_registered_and_works(toy_installed, capsys):
    import msgpp.separators as separators
    from msgpp.cli import main

    assert "toy_gain" in separators.names()
    assert separators.names()[:3] == ["demucs_v2", "hdemucs_v3", "openunmix"]
    toy = separators.get("toy_gain")
    assert (toy.name, toy.family, toy.sources, toy.sample_rate) == ("toy_gain", "waveform", ("low", "high"), 8000)
    mixture = np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32)
    estimates = toy.separate(mixture, 44100)  # resampled to 8 kHz mono and back
    assert set(estimates) == {"low", "high"} and estimates["low"].shape == mixture.shape
    np.testing.assert_allclose(estimates["low"] * 3, estimates["high"], atol=1e-5)

    assert main(["separators", "list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("toy_gain"))
    assert "entry point" in line and "waveform" in line


def test_without_the_package_the_name_is_unknown():
    import msgpp.separators as separators

    assert "toy_gain" not in separators.names()
    with pytest.raises(MsgppError, match="unknown separator 'toy_gain'"):
        separators.get("toy_gain")
