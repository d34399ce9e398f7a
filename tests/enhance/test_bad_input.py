"""A corpus of awkward inputs through `msgpp enhance`: each gives a correct result or one clear
line on stderr with exit status 2 — never a traceback, never a partial output file."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from msgpp.cli import main
from tests.helpers.enhance import tiny_weights
from tests.helpers.reliability import BAD_AUDIO, BAD_OPTIONS

OK, ERROR = "ok", "error"


def _tone(frames, rate, channels=1, level=0.5):
    t = np.arange(frames) / rate
    return np.stack([level * np.sin(2 * np.pi * (110 + 55 * c) * t) for c in range(channels)], axis=1).astype(
        np.float32
    )


def _write_corpus(folder: Path) -> dict[str, tuple[str, str]]:
    """{file name: (expected outcome, text the error must contain)}."""
    cases = {}

    def case(name, outcome, message=""):
        cases[name] = (outcome, message)
        return folder / name

    case("empty.wav", ERROR, "empty file").write_bytes(b"")
    sf.write(case("no_frames.wav", ERROR, "no audio"), np.zeros((0, 1), np.float32), 16000)
    sf.write(case("silence.wav", OK), np.zeros((16000, 2), np.float32), 44100, subtype="PCM_16")
    nan = _tone(4000, 16000)
    nan[100] = np.nan
    sf.write(case("nan.wav", ERROR, "NaN or Inf"), nan, 16000, subtype="FLOAT")
    inf = _tone(4000, 16000)
    inf[5] = np.inf
    sf.write(case("inf.wav", ERROR, "NaN or Inf"), inf, 16000, subtype="FLOAT")
    square = np.sign(_tone(16000, 16000)) * 1.0  # a clipped signal at full scale
    sf.write(case("clipped.wav", OK), square.clip(-1, 32767 / 32768), 16000, subtype="PCM_16")
    sf.write(case("one_sample_44k.wav", ERROR, "too short"), np.full((1, 1), 0.5, np.float32), 44100)
    sf.write(case("one_sample_16k.wav", OK), np.full((1, 1), 0.5, np.float32), 16000)
    sf.write(case("pcm_u8.wav", OK), _tone(8000, 16000), 16000, subtype="PCM_U8")
    sf.write(case("pcm_24.wav", OK), _tone(8000, 44100, 2), 44100, subtype="PCM_24")
    sf.write(case("float64.wav", OK), _tone(8000, 48000), 48000, subtype="DOUBLE")
    sf.write(case("six_channels.wav", OK), _tone(8000, 44100, 6, 0.2), 44100, subtype="PCM_16")
    sf.write(case("rate_8k.wav", OK), _tone(8000, 8000), 8000, subtype="PCM_16")
    sf.write(case("rate_192k.wav", OK), _tone(96000, 192000, 2), 192000, subtype="PCM_24")
    sf.write(folder / "whole.wav", _tone(16000, 16000), 16000, subtype="PCM_16")
    data = (folder / "whole.wav").read_bytes()
    (folder / "whole.wav").unlink()
    case("truncated.wav", ERROR, "truncated").write_bytes(data[: len(data) // 2])
    case("header_only.wav", ERROR, "").write_bytes(data[:30])  # cut inside the header
    case("not_audio.wav", ERROR, "not a readable audio file").write_text("this is a text file, not audio\n")
    sf.write(case("bässe – 低音 🎸.wav", OK), _tone(8000, 22050), 22050, subtype="PCM_16")
    sf.write(case("stereo.flac", OK), _tone(8000, 44100, 2), 44100, subtype="PCM_16")
    return cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    weights = tiny_weights(root / "weights")
    folder = root / "corpus"
    folder.mkdir()
    return weights, folder, _write_corpus(folder)


def _run(weights, source, out, capsys, *extra):
    code = main(
        [
            "enhance",
            str(source),
            "--out",
            str(out),
            "--model",
            str(weights),
            "--segment",
            "0.25",
            "--overlap",
            "0.05",
            "-q",
            *extra,
        ]
    )
    captured = capsys.readouterr()
    return code, captured.err


@BAD_AUDIO
def test_every_corpus_file_gives_a_result_or_one_clear_line(corpus, tmp_path, capsys):
    weights, folder, cases = corpus
    for name, (outcome, message) in cases.items():
        out = tmp_path / Path(name).stem
        code, err = _run(weights, folder / name, out, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        if outcome == ERROR:
            assert code == 2, f"{name}: expected an error, got exit {code}"
            assert len(lines) == 1 and lines[0].startswith("msgpp: error: "), f"{name}: {err!r}"
            assert name in lines[0] and message in lines[0], f"{name}: {lines[0]}"
            assert not out.exists() or not any(out.rglob("*")), f"{name}: left files behind"
            continue
        assert "Traceback" not in err, f"{name}: {err}"
        written = out / name
        if code == 2:  # allowed only for a peak above full scale, with nothing written
            assert len(lines) == 1 and "exceeds full scale" in lines[0], f"{name}: {err!r}"
            assert not any(out.rglob("*")), f"{name}: left files behind"
            code, err = _run(weights, folder / name, out, capsys, "--clip", "normalize")
        assert code == 0, f"{name}: {err}"
        info_in, info_out = sf.info(str(folder / name)), sf.info(str(written))
        assert (info_out.samplerate, info_out.channels, info_out.frames) == (
            info_in.samplerate,
            info_in.channels,
            info_in.frames,
        ), name
        audio, _ = sf.read(written, always_2d=True)
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0, name
        hidden = [path.name for path in out.rglob(".*")]
        assert hidden == [f".{written.name}.msgpp.json"], f"{name}: temporary files left"  # only its record


@BAD_AUDIO
def test_depths_are_kept_and_silence_stays_silent(corpus, tmp_path, capsys):
    weights, folder, _ = corpus
    for name, subtype in [
        ("pcm_u8.wav", "PCM_16"),
        ("pcm_24.wav", "PCM_24"),
        ("float64.wav", "FLOAT"),
        ("stereo.flac", "PCM_16"),
    ]:
        out = tmp_path / name.replace(".", "_")
        assert _run(weights, folder / name, out, capsys)[0] == 0
        assert sf.info(str(out / name)).subtype == subtype, name
    assert _run(weights, folder / "silence.wav", tmp_path / "s", capsys)[0] == 0
    assert np.abs(sf.read(tmp_path / "s" / "silence.wav")[0]).max() == 0


@BAD_AUDIO
def test_a_peak_above_full_scale_is_an_error_or_a_stated_choice(corpus, tmp_path, capsys):
    weights, folder, _ = corpus
    loud = tmp_path / "loud.wav"
    sf.write(loud, _tone(16000, 16000, level=0.99), 16000, subtype="PCM_16")

    class Louder(torch.nn.Module):  # a generator whose output peaks at twice its input's
        def forward(self, audio):
            return audio * 2

    from msgpp.enhance.enhancer import Enhancer

    enhancer = Enhancer(Louder(), 16000, segment=0.25, overlap=0.05)
    with pytest.raises(Exception, match="exceeds full scale"):
        enhancer.enhance_file(loud, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists() and not list(tmp_path.glob(".*"))
    normalized = enhancer.enhance_file(loud, tmp_path / "normalized.wav", clip="normalize")
    assert abs(np.abs(sf.read(normalized)[0]).max() - 0.999) < 1e-3
    clipped = enhancer.enhance_file(loud, tmp_path / "clipped.wav", clip="clip")
    assert np.abs(sf.read(clipped)[0]).max() <= 1.0
    floats = enhancer.enhance_file(loud, tmp_path / "float.wav", subtype="FLOAT")
    assert abs(np.abs(sf.read(floats)[0]).max() - 1.98) < 0.01


@BAD_AUDIO
def test_the_console_command_prints_no_traceback(corpus, tmp_path):
    weights, folder, _ = corpus
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "msgpp.cli",
            "enhance",
            str(folder / "not_audio.wav"),
            "--out",
            str(tmp_path / "o"),
            "--model",
            str(weights),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not a readable audio file" in result.stderr
    assert not (tmp_path / "o").exists()


@BAD_OPTIONS
def test_argument_mistakes_are_one_line_errors(corpus, tmp_path, capsys):
    weights, folder, _ = corpus
    code, err = _run(weights, folder / "silence.wav", tmp_path / "x.mp4", capsys)
    assert code == 2 and "unsupported output extension" in err
    code, err = _run(weights, folder, tmp_path / "one.wav", capsys)
    assert code == 2 and "exactly one input" in err
    code, err = _run(weights, tmp_path / "missing.wav", tmp_path / "o", capsys)
    assert code == 2 and "no such file" in err
    code, err = _run(weights, folder / "stereo.flac", tmp_path / "o", capsys, "--format", "ogg", "--subtype", "PCM_24")
    assert code == 2 and "no subtype choice" in err
