"""msgpp.Enhancer: arrays in and out, rates and channels kept, weights loading, files, CLI, export."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import msgpp
from msgpp.cli import main
from msgpp.enhance.enhancer import Enhancer
from msgpp.errors import MsgppError
from tests.helpers import REPO
from tests.helpers.enhance import tiny_weights


class Identity(torch.nn.Module):
    def forward(self, audio):
        return audio.clone()


class SoftLimit(torch.nn.Module):
    """Non-linear and level-dependent: shows whether the input reached it peak-normalised."""

    def forward(self, audio):
        return torch.clamp(audio, -0.5, 0.5)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights"))


def noise(shape, seed=0, scale=0.3):
    return (np.random.default_rng(seed).uniform(-1, 1, shape) * scale).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("shape", [(5000,), (1, 5000), (2, 5000), (6, 1234)])
def test_identity_generator_gives_the_input_back_at_any_rate_and_shape(rate, shape):
    enhancer = Enhancer(Identity(), 16000, segment=0.2, overlap=0.05, batch_size=3)
    audio = noise(shape, seed=rate)
    out = enhancer(audio, rate)
    assert out.shape == audio.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, audio, atol=1e-5)


def test_model_band_only_drops_what_the_model_cannot_see():
    enhancer = Enhancer(Identity(), 16000, segment=0.2, overlap=0.05, full_band=False)
    audio = noise((1, 44100))  # white noise: most of its energy is above 8 kHz
    assert np.abs(enhancer(audio, 44100) - audio).max() > 0.1


def test_channels_are_peak_normalised_separately_and_levels_kept():
    enhancer = Enhancer(SoftLimit(), 16000, segment=0.5, overlap=0.1)
    audio = np.stack([noise(8000, 1, 0.8), noise(8000, 2, 0.01)])
    out = enhancer(audio, 16000)
    for channel in range(2):
        peak = np.abs(audio[channel]).max()
        expected = np.clip(audio[channel] / peak, -0.5, 0.5) * peak
        np.testing.assert_allclose(out[channel], expected, atol=1e-6)


def test_silence_stays_silent_without_dividing_by_zero(weights):
    enhancer = Enhancer.from_pretrained(weights, segment=0.5, overlap=0.1)
    out = enhancer(np.zeros((2, 8000), np.float32), 16000)
    assert np.isfinite(out).all() and np.abs(out).max() < 1e-6


def test_torch_tensors_come_back_as_tensors_of_their_dtype():
    enhancer = Enhancer(Identity(), 16000, segment=0.2, overlap=0.05)
    audio = torch.from_numpy(noise((2, 3000))).double()
    out = enhancer(audio, 44100)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == audio.shape
    torch.testing.assert_close(out, audio, atol=1e-5, rtol=0)


def test_from_pretrained_checks_the_checksum_and_is_deterministic(weights, tmp_path):
    enhancer = Enhancer.from_pretrained(weights, segment=0.5, overlap=0.1, batch_size=2)
    assert enhancer.source == "bass" and enhancer.sample_rate == 16000
    audio = noise((2, 22050))
    first, second = enhancer(audio, 44100), enhancer(audio, 44100)
    np.testing.assert_array_equal(first, second)
    assert np.abs(first - audio).max() > 1e-3  # a random generator does change the audio
    corrupt = tmp_path / weights.name
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(MsgppError, match="checksum mismatch"):
        Enhancer.from_pretrained(corrupt)
    with pytest.raises(MsgppError, match="unknown enhancer"):
        Enhancer.from_pretrained("no-such-source")


def test_batching_does_not_change_the_result(weights):
    audio = noise((2, 20000))
    one = Enhancer.from_pretrained(weights, segment=0.3, overlap=0.1, batch_size=1)(audio, 16000)
    many = Enhancer.from_pretrained(weights, segment=0.3, overlap=0.1, batch_size=5)(audio, 16000)
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_bad_arrays_are_refused():
    enhancer = Enhancer(Identity(), 16000)
    with pytest.raises(MsgppError, match="NaN"):
        enhancer(np.array([0.0, np.nan], np.float32), 16000)
    with pytest.raises(MsgppError, match="floats"):
        enhancer(np.zeros(100, np.int16), 16000)
    with pytest.raises(MsgppError, match="transpose"):
        enhancer(np.zeros((44100, 2), np.float32), 44100)
    with pytest.raises(MsgppError, match="no audio"):
        enhancer(np.zeros((2, 0), np.float32), 16000)
    with pytest.raises(MsgppError, match="overlap"):
        Enhancer(Identity(), 16000, segment=1.0, overlap=0.8)


def test_enhance_file_streams_to_the_same_result_as_in_memory(weights, tmp_path, monkeypatch):
    import msgpp.enhance.jobs as jobs

    monkeypatch.setattr(jobs, "BLOCK_FRAMES", 777)  # many blocks, none aligned with anything
    audio = noise((2, 44100 * 2), seed=3)
    sf.write(tmp_path / "in.wav", audio.T, 44100, subtype="FLOAT")
    enhancer = Enhancer.from_pretrained(weights, segment=0.4, overlap=0.1, batch_size=3)
    output = enhancer.enhance_file(tmp_path / "in.wav", tmp_path / "out.wav")
    written, rate = sf.read(output, dtype="float32", always_2d=True)
    assert rate == 44100 and sf.info(str(output)).subtype == "FLOAT"
    np.testing.assert_allclose(written.T, enhancer(audio, 44100), atol=1e-5)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_cli_enhances_a_folder_once_and_refuses_other_settings_over_it(weights, tmp_path, capsys):
    folder = tmp_path / "estimates"
    (folder / "song b").mkdir(parents=True)
    sf.write(folder / "a.wav", noise((8000, 2), 1), 16000, subtype="PCM_24")
    sf.write(folder / "song b" / "bass.flac", noise((11025,), 2), 22050, subtype="PCM_16")
    out = tmp_path / "enhanced"
    argv = [
        "enhance",
        str(folder),
        "--out",
        str(out),
        "--model",
        str(weights),
        "--segment",
        "0.3",
        "--overlap",
        "0.1",
        "-q",
    ]
    assert main(argv) == 0
    a, b = out / "a.wav", out / "song b" / "bass.flac"
    assert sf.info(str(a)).subtype == "PCM_24" and sf.info(str(a)).channels == 2
    assert sf.info(str(b)).samplerate == 22050 and sf.info(str(b)).frames == 11025
    assert str(a) in capsys.readouterr().out
    before = a.read_bytes()
    assert main(argv) == 0  # the same model and settings: the outputs are kept, nothing is redone
    assert "kept 2 output(s)" in capsys.readouterr().err and a.read_bytes() == before
    assert main([*argv, "--segment", "0.4"]) == 2  # other settings: refused, not mixed in
    assert "written with another model, settings or input" in capsys.readouterr().err and a.read_bytes() == before
    assert main(argv + ["--force", "--subtype", "FLOAT", "--format", "wav"]) == 0
    assert sf.info(str(out / "song b" / "bass.wav")).subtype == "FLOAT"


def test_cli_missing_input_is_named(capsys):
    assert main(["enhance", "x.wav", "--source", "no-such-source", "-q"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_lazy_export():
    assert msgpp.Enhancer is Enhancer


def test_torchscript_export_matches_pytorch(weights, tmp_path):
    from msgpp.enhance.graph_export import (
        enhancer_from_torchscript,
        export_torchscript,
        load_torchscript,
        max_difference,
    )

    enhancer = Enhancer.from_pretrained(weights, segment=0.5, overlap=0.1, batch_size=2)
    path = export_torchscript(enhancer.generator, tmp_path / "g.ts", sample_rate=16000, segment=0.5, batch_size=2)
    graph, metadata = load_torchscript(path)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # the usual mode, not mkstemp's owner-only
    assert metadata["segment_samples"] == 8000 and metadata["batch_size"] == 2
    assert max_difference(enhancer.generator, graph, 2, 8000) < 1e-5
    audio = noise((3, 30000))  # 3 channels: the last batch is padded to the graph's batch size
    np.testing.assert_allclose(
        enhancer_from_torchscript(path, overlap=0.1)(audio, 44100), enhancer(audio, 44100), atol=1e-5
    )


def test_readme_python_example_runs_verbatim(weights, tmp_path, monkeypatch):
    """The first Python block of docs/enhancing.md (the README's example), with a stand-in for
    the shipped bass weights."""
    import re
    import shutil

    import msgpp.enhance.pretrained as pretrained

    text = (REPO / "docs" / "enhancing.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    shutil.copy(weights, shipped / weights.name)  # msg-bass-<sha8>.pt
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", shipped)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/enhancing.md", "exec"), {})
    enhanced, rate = sf.read(tmp_path / "bass_enhanced.wav", always_2d=True)
    assert rate == 44100 and enhanced.shape == (5 * 44100, 2)


@pytest.mark.slow  # a second torch.export (the API test above covers the default run)
def test_cli_export_graph_writes_a_checked_graph(weights, tmp_path, capsys):
    out = tmp_path / "g.ts"
    argv = ["export-graph", "--model", str(weights), "--out", str(out), "--segment", "0.25", "--batch-size", "2"]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert out.is_file() and "max |graph − PyTorch|" in report
    assert float(report.rsplit("=", 1)[1].split()[0]) < 1e-5
    assert main(argv) == 2 and "exists" in capsys.readouterr().err


def test_unknown_device_is_a_clear_error():
    with pytest.raises(MsgppError, match="device"):
        Enhancer(Identity(), 16000, device="no-such-device")
