"""msgpp.audio: round trips per subtype and rate, resampling, channels, and the clear errors."""

import numpy as np
import pytest
import soundfile as sf
import torch

from msgpp.audio import (
    convert_channels,
    load_audio,
    peak_normalize,
    resample,
    rms_dbfs,
    save_audio,
)
from msgpp.errors import AudioError

# Quantisation step of each subtype: the round trip must be within half a step (float: exact).
SUBTYPE_TOLERANCE = {"PCM_16": 1 / 2**15, "PCM_24": 1 / 2**23, "FLOAT": 0.0}


def _tone(sample_rate, seconds=0.25, channels=2, amplitude=0.5):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return np.stack([amplitude * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100, 48000])
def test_round_trip_per_subtype_and_rate(tmp_path, subtype, sample_rate):
    audio = _tone(sample_rate)
    path = save_audio(tmp_path / "tone.wav", audio, sample_rate, subtype=subtype)
    loaded, loaded_rate = load_audio(path)
    assert loaded_rate == sample_rate
    assert loaded.dtype == np.float32 and loaded.shape == audio.shape
    assert np.abs(loaded - audio).max() <= SUBTYPE_TOLERANCE[subtype]
    assert sf.info(str(path)).subtype == subtype


@pytest.mark.parametrize("extension", ["flac", "ogg", "mp3"])
def test_compressed_formats_load(tmp_path, extension):
    audio = _tone(44100, seconds=0.5)
    path = tmp_path / f"tone.{extension}"
    sf.write(str(path), audio.T, 44100)
    loaded, rate = load_audio(path)
    assert rate == 44100 and loaded.shape[0] == 2
    # Lossy codecs add delay/padding; the level must survive.
    assert abs(rms_dbfs(loaded) - rms_dbfs(audio)) < 1.0


def test_mono_1d_input_saves_as_one_channel(tmp_path):
    path = save_audio(tmp_path / "mono.wav", _tone(16000, channels=1)[0], 16000)
    assert load_audio(path)[0].shape[0] == 1


def test_save_is_atomic_and_leaves_no_temporary_on_error(tmp_path):
    target = tmp_path / "out.wav"
    save_audio(target, _tone(16000), 16000)
    before = target.read_bytes()
    with pytest.raises(AudioError, match="peak"):
        save_audio(target, _tone(16000) * 3, 16000)  # would clip: refused
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_clip_policies(tmp_path):
    loud = _tone(16000, amplitude=2.0)
    clipped, _ = load_audio(save_audio(tmp_path / "c.wav", loud, 16000, clip="clip"))
    assert np.abs(clipped).max() == pytest.approx(1.0, abs=1e-4)
    normalised, _ = load_audio(save_audio(tmp_path / "n.wav", loud, 16000, clip="normalize"))
    assert np.abs(normalised).max() == pytest.approx(0.999, abs=1e-3)
    floats, _ = load_audio(save_audio(tmp_path / "f.wav", loud, 16000, subtype="FLOAT"))
    assert np.abs(floats).max() == pytest.approx(2.0, abs=1e-5)


def test_bad_subtype_and_extension(tmp_path):
    with pytest.raises(AudioError, match="subtype"):
        save_audio(tmp_path / "a.wav", _tone(16000), 16000, subtype="PCM_12")
    with pytest.raises(AudioError, match="extension"):
        save_audio(tmp_path / "a.xyz", _tone(16000), 16000)


def test_nan_is_refused_on_save(tmp_path):
    audio = _tone(16000)
    audio[0, 10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "nan.wav", audio, 16000)
    assert not list(tmp_path.iterdir())


# --- bad files: one clear error naming the file -------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file") as error:
        load_audio(tmp_path / "absent.wav")
    assert "absent.wav" in str(error.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as error:
        load_audio(path)
    assert "empty.wav" in str(error.value)


def test_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n" * 100)
    with pytest.raises(AudioError, match="not a readable audio file") as error:
        load_audio(path)
    assert "notes.wav" in str(error.value)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_wav(tmp_path, keep):
    whole = save_audio(tmp_path / "whole.wav", _tone(16000, seconds=1.0), 16000)
    data = whole.read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(AudioError, match="truncated") as error:
        load_audio(path)
    assert "cut.wav" in str(error.value)


def test_header_only(tmp_path):
    whole = save_audio(tmp_path / "whole.wav", _tone(16000), 16000)
    path = tmp_path / "header.wav"
    path.write_bytes(whole.read_bytes()[:30])
    with pytest.raises(AudioError, match="header.wav"):
        load_audio(path)


def test_nan_samples_in_file(tmp_path):
    audio = _tone(16000)
    audio[1, 100] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(str(path), audio.T, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or Inf") as error:
        load_audio(path)
    assert "inf.wav" in str(error.value)


def test_zero_frames(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(str(path), np.zeros((0, 2), dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path)


# --- resampling, channels, normalisation ------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_resample_keeps_a_tone(backend):
    audio = _tone(44100, seconds=1.0, channels=2)
    source = audio if backend == "numpy" else torch.from_numpy(audio)
    out = resample(source, 44100, 16000)
    out = out if backend == "numpy" else out.numpy()
    assert out.shape == (2, 16000)
    expected = _tone(16000, seconds=1.0, channels=2)
    # Away from the edges a band-limited tone resamples almost exactly.
    assert np.abs(out[:, 500:-500] - expected[:, 500:-500]).max() < 1e-3


def test_resample_same_rate_is_identity():
    audio = _tone(16000)
    assert resample(audio, 16000, 16000) is audio


def test_resample_removes_content_above_new_nyquist():
    t = np.arange(44100) / 44100
    high = np.sin(2 * np.pi * 12000 * t).astype(np.float32)[None]  # above 8 kHz
    out = resample(high, 44100, 16000)
    assert rms_dbfs(out[:, 200:-200]) < -60


def test_channel_conversion():
    stereo = _tone(16000, channels=2)
    mono = convert_channels(stereo, 1)
    assert mono.shape == (1, stereo.shape[1])
    np.testing.assert_allclose(mono[0], stereo.mean(0), atol=1e-7)
    assert convert_channels(mono, 2).shape == stereo.shape
    assert convert_channels(_tone(16000, channels=6), 2).shape == stereo.shape
    assert convert_channels(torch.from_numpy(mono), 2).shape == stereo.shape


def test_peak_normalize_safe_on_silence():
    silence = np.zeros((2, 100), dtype=np.float32)
    out, gain = peak_normalize(silence)
    assert gain == 1.0 and np.all(out == 0) and np.isfinite(out).all()
    audio = _tone(16000, amplitude=0.25)
    out, gain = peak_normalize(audio)
    assert np.abs(out).max() == pytest.approx(1.0) and gain == pytest.approx(4.0, rel=1e-3)
    np.testing.assert_allclose(out / gain, audio, atol=1e-7)
