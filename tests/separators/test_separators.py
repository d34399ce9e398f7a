"""The separator interface, the registry and the upstream weight formats."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import msgpp.separators as separators
from msgpp.constants import SOURCES
from msgpp.errors import MsgppError
from tests.helpers.separators import build_tiny, make_root, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUILTIN = ("demucs_v2", "hdemucs_v3", "openunmix")


def _mixture(seconds: float = 0.6, channels: int = 2, rate: int = 44100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((channels, int(seconds * rate)))).astype(np.float32)


def _same(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


# -- registry -------------------------------------------------------------------------------------
def test_registry_lists_the_builtin_separators(capsys):
    from msgpp.cli import main

    for name in BUILTIN:
        assert name in separators.names()
    assert main(["separators", "list"]) == 0
    out = capsys.readouterr().out
    families = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert families["demucs_v2"] == "waveform"
    assert families["hdemucs_v3"] == "hybrid"
    assert families["openunmix"] == "spectrogram"


def test_unknown_separator_is_a_clear_error():
    with pytest.raises(MsgppError, match="unknown separator 'nope'.*demucs_v2"):
        separators.get("nope")


# -- the interface ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN)
def test_separates_into_sources_at_the_mixture_rate_and_channels(name, tmp_path):
    separator = build_tiny(name)
    assert separator.family == {"demucs_v2": "waveform", "hdemucs_v3": "hybrid", "openunmix": "spectrogram"}[name]
    for channels, rate, seconds in ((2, 44100, 0.6), (1, 22050, 0.5)):
        mixture = _mixture(seconds, channels, rate)
        estimates = separator.separate(mixture, rate)
        assert tuple(estimates) == SOURCES
        for estimate in estimates.values():
            assert estimate.dtype == np.float32
            assert estimate.shape == mixture.shape  # same channels and length, at the mixture's rate
            assert np.isfinite(estimate).all() and np.abs(estimate).max() > 0


def test_chunked_separation_matches_whole_song_for_a_pointwise_model():
    """Overlap-add must reconstruct exactly: a model that scales its input gives scaled outputs
    whatever the chunk layout (several chunks, a shifted last chunk, a song shorter than a chunk)."""
    from msgpp.separators.base import Separator

    class Scale(Separator):
        name, family = "scale", "waveform"
        default_sources = ("half", "double")

        def forward_chunks(self, chunks):
            return torch.stack([0.5 * chunks, 2.0 * chunks], dim=1)

    separator = Scale(torch.nn.Identity(), sample_rate=44100)
    separator.segment_seconds, separator.overlap_seconds, separator.batch_size = 0.1, 0.03, 3
    mixture = _mixture(0.37)
    estimates = separator.separate(mixture, 44100)
    np.testing.assert_allclose(estimates["half"], 0.5 * mixture, atol=1e-6)
    np.testing.assert_allclose(estimates["double"], 2.0 * mixture, atol=1e-6)


def test_a_model_that_depends_on_context_sees_overlapping_chunks():
    """Chunks really are cut: a model returning the chunk's mean shows a staircase, not one value."""
    from msgpp.separators.base import Separator

    class Mean(Separator):
        name, family = "mean", "waveform"
        default_sources = ("mean",)

        def forward_chunks(self, chunks):
            return chunks.mean(dim=-1, keepdim=True).expand_as(chunks)[:, None]

    separator = Mean(torch.nn.Identity(), sample_rate=1000)
    separator.segment_seconds, separator.overlap_seconds = 1.0, 0.2
    ramp = np.linspace(0, 1, 3000, dtype=np.float32)[None].repeat(2, 0)
    out = separator.separate(ramp, 1000)["mean"][0]
    assert out[0] < out[1500] < out[-1]


# -- weights in the upstream formats ----------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN)
def test_saved_weights_load_back_to_identical_outputs(name, tmp_path):
    separator = build_tiny(name)
    info = separator.save_weights(tmp_path / name)
    loaded = separators.get(name, weights=tmp_path / name)
    assert loaded.weights.sha256 == info.sha256
    mixture = _mixture()
    assert _same(separator.separate(mixture, 44100), loaded.separate(mixture, 44100))


def _demucs_repo_with_upstream_saver(model, folder: Path, bag: str) -> None:
    """A local demucs repository written with demucs' own serialisation helpers."""
    from demucs import states

    args, kwargs = model._init_args_kwargs
    package = {"klass": type(model), "args": args, "kwargs": kwargs, "state": states.get_state(model, None, half=False)}
    folder.mkdir(parents=True)
    states.save_with_checksum(package, folder / "a1b2c3d4.th")
    (folder / f"{bag}.yaml").write_text(yaml.safe_dump({"models": ["a1b2c3d4"]}))


@pytest.mark.parametrize("name", ("demucs_v2", "hdemucs_v3"))
def test_demucs_repository_written_by_demucs_round_trips(name, tmp_path):
    from demucs.apply import apply_model
    from demucs.pretrained import get_model

    original = build_tiny(name)
    _demucs_repo_with_upstream_saver(original.model, tmp_path / "repo", "mybag")
    mixture = _mixture()

    # Every way of pointing at it gives the same model: folder, bag yaml, .th file.
    estimates = original.separate(mixture, 44100)
    th_file = next((tmp_path / "repo").glob("a1b2c3d4-*.th"))
    for location in (tmp_path / "repo", tmp_path / "repo" / "mybag.yaml", th_file):
        assert _same(estimates, separators.get(name, weights=location).separate(mixture, 44100))

    # And demucs' own loader reads the same folder to the same network.
    theirs = get_model("mybag", repo=tmp_path / "repo")
    x = torch.from_numpy(mixture)[None]
    ours = separators.get(name, weights=tmp_path / "repo").model
    with torch.no_grad():
        np.testing.assert_array_equal(
            apply_model(theirs, x, shifts=0, split=False, progress=False).numpy(),
            apply_model(ours, x, shifts=0, split=False, progress=False).numpy(),
        )


def test_openunmix_folder_written_like_upstream_round_trips(tmp_path):
    """open-unmix's own layout (<target>.pth state dicts saved with torch.save, <target>.json,
    separator.json), with no checksums anywhere, loads to the same outputs."""
    original = build_tiny("openunmix")
    config = original.config
    folder = tmp_path / "umx"
    folder.mkdir()
    for target, model in original.model.target_models.items():
        torch.save(model.state_dict(), folder / f"{target}.pth")
        args = {
            "nfft": config["nfft"],
            "nhop": config["nhop"],
            "nb_channels": 2,
            "hidden_size": config["hidden_size"],
            "nb_layers": config["nb_layers"],
        }
        (folder / f"{target}.json").write_text(json.dumps({"args": args}))
    (folder / "separator.json").write_text(
        json.dumps({"sample_rate": 44100, "nfft": config["nfft"], "nhop": config["nhop"], "nb_channels": 2, "niter": 0})
    )

    mixture = _mixture()
    loaded = separators.get("openunmix", weights=folder)
    assert _same(original.separate(mixture, 44100), loaded.separate(mixture, 44100))


def test_openunmix_loader_of_upstream_reads_our_folder(tmp_path):
    """The folder msgpp writes is the one `openunmix.utils.load_separator` reads (3 LSTM layers,
    the only depth its loader builds)."""
    from msgpp.separators.openunmix import openunmix_model

    torch.manual_seed(0)
    ours = separators.separator_class("openunmix").build(dict(tiny_config("openunmix"), nb_layers=3))
    ours.save_weights(tmp_path / "umx")
    openunmix_model()
    from openunmix.utils import load_separator

    theirs = load_separator(str(tmp_path / "umx"), targets=list(SOURCES), niter=0, pretrained=True).eval()
    x = torch.from_numpy(_mixture())[None]
    with torch.no_grad():
        np.testing.assert_array_equal(theirs(x).numpy(), ours.model(x).numpy())


def test_openunmix_imports_without_leaving_a_torchaudio_stand_in():
    from msgpp.separators.openunmix import openunmix_model

    assert openunmix_model().OpenUnmix is not None
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        pass  # the stand-in is gone again: code probing for torchaudio still sees the truth
    else:
        assert not hasattr(sys.modules["torchaudio"], "__msgpp_stand_in__")


# -- weights: checksums, keys, errors ----------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN)
def test_a_corrupt_weights_file_is_refused_with_one_line(name, tmp_path):
    build_tiny(name).save_weights(tmp_path / "w")
    victim = next(p for p in (tmp_path / "w").iterdir() if p.suffix in (".th", ".pth"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(MsgppError, match="checksum mismatch") as error:
        separators.get(name, weights=tmp_path / "w")
    assert victim.name in str(error.value) and "\n" not in str(error.value)


def test_an_unchecked_garbage_file_is_a_clear_error(tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "deadbeef.th").write_bytes(b"not a torch file")
    with pytest.raises(MsgppError, match="deadbeef.th: not a readable weights file"):
        separators.get("demucs_v2", weights=folder)


def test_missing_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(MsgppError, match="no such weights file or folder"):
        separators.get("openunmix", weights=tmp_path / "absent")


@pytest.mark.parametrize("name", BUILTIN)
def test_changed_weights_get_a_new_id(name, tmp_path):
    first = build_tiny(name, seed=0).save_weights(tmp_path / "w")
    second = build_tiny(name, seed=1).save_weights(tmp_path / "w")  # same folder, new weights
    assert first.id != second.id
    assert separators.separator_class(name).weights_info(tmp_path / "w").id == second.id


# -- training ------------------------------------------------------------------------------------------
def test_training_is_seeded_and_changes_the_weights(tmp_path):
    from msgpp.separators.train import TrainingOptions, train_separator

    root = make_root(tmp_path / "data", {"train": 2}, seconds=0.5)
    options = TrainingOptions(steps=3, max_minutes=None, batch_size=2, segment_seconds=0.1, seed=3)
    states = []
    for _ in range(2):
        separator = build_tiny("demucs_v2")
        before = {k: v.clone() for k, v in separator.state_dict().items()}
        facts = train_separator(separator, root, options, progress=False)
        assert facts["steps"] == 3 and np.isfinite(facts["loss_last"])
        states.append(separator.state_dict())
    assert any(not torch.equal(before[k], states[0][k]) for k in before)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
