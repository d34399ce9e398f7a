"""ONNX export and the Enhancer's ONNX Runtime backend: same output as PyTorch, graphs cached once."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from msgpp.cli import main
from msgpp.enhance import onnx_backend
from msgpp.enhance.enhancer import Enhancer
from msgpp.errors import MsgppError
from msgpp.models.generator import build_generator
from tests.helpers.enhance import save_generator

TINY = dict(channels=4, depth=3, kernel_size=8, stride=4, growth=2.0, context=1, resample=True)


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(1)
    return build_generator(TINY).eval()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MSGPP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def noise(shape, seed=0, scale=0.3):
    return (np.random.default_rng(seed).uniform(-1, 1, shape) * scale).astype(np.float32)


def test_exported_graph_matches_pytorch_at_any_batch_size(generator, tmp_path):
    path = tmp_path / "g.onnx"
    onnx_backend.export_onnx(generator, path, sample_rate=16000, segment_samples=4000, source="bass")
    graph = onnx_backend.load_onnx(path)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # the usual mode, not mkstemp's owner-only
    assert graph.metadata["format"] == onnx_backend.FORMAT and graph.metadata["source"] == "bass"
    assert (graph.sample_rate, graph.segment_samples) == (16000, 4000)
    for batch in (1, 3):
        audio = torch.from_numpy(noise((batch, 1, 4000), seed=batch))
        with torch.no_grad():
            expected = generator(audio)
        assert torch.allclose(graph(audio), expected, atol=1e-5)
    with pytest.raises(ValueError, match="4000"):
        graph(torch.zeros(1, 1, 3999))
    with pytest.raises(MsgppError, match="exists"):
        onnx_backend.export_onnx(generator, path, sample_rate=16000, segment_samples=4000)


def test_onnxruntime_backend_gives_the_torch_backend_output(generator, cache):
    audio = noise((2, 3 * 44100))
    options = dict(segment=0.5, overlap=0.1, batch_size=3)
    fast = Enhancer(generator, 16000, backend="onnxruntime", **options)
    expected = Enhancer(generator, 16000, backend="torch", **options)(audio, 44100)
    np.testing.assert_allclose(fast(audio, 44100), expected, atol=1e-5)
    cached = sorted(cache.glob("*.onnx"))
    assert len(cached) == 1  # one graph for the one segment length
    stamp = cached[0].stat().st_mtime_ns
    again = Enhancer(generator, 16000, backend="onnxruntime", **options)(audio, 44100)
    np.testing.assert_allclose(again, expected, atol=1e-5)
    assert sorted(cache.glob("*.onnx")) == cached and cached[0].stat().st_mtime_ns == stamp  # reused, not re-exported


def test_changed_weights_get_their_own_graph(generator, cache):
    other = build_generator(TINY).eval()
    other.load_state_dict({name: value + 0.01 for name, value in generator.state_dict().items()})
    keys = {onnx_backend.graph_key(model, 8000) for model in (generator, other)}
    keys.add(onnx_backend.graph_key(generator, 4000))
    assert len(keys) == 3


def test_a_damaged_cached_graph_is_exported_again(generator, cache):
    options = dict(segment=0.25, overlap=0.05, backend="onnxruntime")
    audio = noise((1, 16000))
    expected = Enhancer(generator, 16000, **options)(audio, 16000)
    (path,) = cache.glob("*.onnx")
    path.write_bytes(b"not a model")
    np.testing.assert_allclose(Enhancer(generator, 16000, **options)(audio, 16000), expected, atol=1e-6)
    assert path.stat().st_size > 1000


class Halve(torch.nn.Module):
    def forward(self, audio):
        return audio * 0.5


def test_auto_backend_picks_onnxruntime_for_msgpp_generators_on_the_cpu(generator):
    assert Enhancer(generator, 16000, device="cpu").backend == "onnxruntime"
    assert Enhancer(Halve(), 16000, device="cpu").backend == "torch"  # any module: PyTorch, no export
    assert "backend='onnxruntime'" in repr(Enhancer(generator, 16000, device="cpu"))
    with pytest.raises(MsgppError, match="unknown backend"):
        Enhancer(generator, 16000, backend="tensorrt")


def test_not_an_onnx_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "g.onnx"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(MsgppError, match="not a loadable ONNX model") as raised:
        onnx_backend.load_onnx(bad)
    assert "\n" not in str(raised.value)
    with pytest.raises(MsgppError, match="no such ONNX file"):
        onnx_backend.load_onnx(tmp_path / "missing.onnx")


def test_cli_export_graph_onnx_reports_the_match(generator, tmp_path, capsys):
    weights = save_generator(tmp_path, generator)
    out = tmp_path / "g.onnx"
    argv = ["export-graph", "--model", str(weights), "--out", str(out), "--segment", "0.25"]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "max |ONNX Runtime − PyTorch|" in report and float(report.rsplit("=", 1)[1].split()[0]) < 1e-5
    assert onnx_backend.load_onnx(out).metadata["source"] == "bass"
    assert main(argv) == 2 and "exists" in capsys.readouterr().err


def test_cli_backends_write_the_same_file(generator, tmp_path, cache):
    import soundfile as sf

    weights = save_generator(tmp_path, generator)
    song = tmp_path / "song.wav"
    sf.write(str(song), noise((22050, 2)), 22050, subtype="FLOAT")
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        outputs[backend] = tmp_path / f"{backend}.wav"
        assert (
            main(
                [
                    "enhance",
                    str(song),
                    "--out",
                    str(outputs[backend]),
                    "--model",
                    str(weights),
                    "--backend",
                    backend,
                    "--segment",
                    "0.25",
                    "--overlap",
                    "0.05",
                    "-q",
                ]
            )
            == 0
        )
    torch_out, _ = sf.read(str(outputs["torch"]))
    onnx_out, _ = sf.read(str(outputs["onnxruntime"]))
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5)
    assert len(list(cache.glob("*.onnx"))) == 1


def test_from_pretrained_drops_the_torch_weights_once_the_graph_runs_and_rebuilds_them(generator, tmp_path, cache):
    weights = save_generator(tmp_path, generator, "model")
    enhancer = Enhancer.from_pretrained(weights, backend="onnxruntime", segment=0.25, overlap=0.05)
    audio = noise((1, 8000))
    first = enhancer(audio, 16000)
    assert enhancer._generator is None  # released: the ONNX graph holds the weights now
    rebuilt = enhancer.generator  # rebuilt from the file on demand
    for name, value in generator.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], value)
    np.testing.assert_allclose(enhancer(audio, 16000), first, atol=1e-6)
    enhancer._generator = None
    replacement = save_generator(
        tmp_path / "other",
        generator,
        "model",
        state_dict={name: value * 2 for name, value in generator.state_dict().items()},
    )
    replacement.replace(weights)
    with pytest.raises(MsgppError, match="checksum mismatch"):
        _ = enhancer.generator  # the file changed since it was loaded: refuse, never mix weights
