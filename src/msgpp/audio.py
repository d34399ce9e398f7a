"""Audio in and out: load, save (atomically), resample, channel conversion, peak normalisation.

Arrays are float32 shaped (channels, samples) everywhere in msgpp. Every function that takes an
array also takes a torch tensor where it says so; file IO is NumPy only.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from msgpp.constants import AUDIO_FORMATS, CLIP_POLICIES, OUTPUT_SUBTYPES
from msgpp.errors import AudioError, MsgppError, first_line
from msgpp.files import atomic_path, describe_write_error

PathLike = str | os.PathLike

# User-facing names → libsndfile subtypes.
SUBTYPES = {
    "PCM_16": "PCM_16",
    "16": "PCM_16",
    "pcm16": "PCM_16",
    "PCM_24": "PCM_24",
    "24": "PCM_24",
    "pcm24": "PCM_24",
    "FLOAT": "FLOAT",
    "float": "FLOAT",
    "float32": "FLOAT",
}
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # libsndfile subtypes that hold values beyond ±1; every other one clips
LOSSY_SUBTYPES = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}  # containers with one subtype, no choice
SILENCE_PEAK = 1e-8  # peaks below this are digital silence: no gain is applied


def load_audio(path: PathLike) -> tuple[np.ndarray, int]:
    """Read any file soundfile reads (wav, flac, ogg, mp3, aiff ...).

    Returns float32 audio shaped (channels, samples) and the sample rate. Raises AudioError,
    naming the file, when it is missing, unreadable, empty, truncated, or holds NaN/Inf samples.
    """
    path = Path(path)
    info = check_audio_file(path, decode=False)
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        raise AudioError(f"{path}: not a readable audio file ({first_line(error)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no audio samples")
    check_decoded(path, info, data.shape[0])
    audio = np.ascontiguousarray(data.T)
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: contains NaN or Inf samples")
    return audio, int(sample_rate)


def check_audio_file(path: PathLike, decode: bool = True):
    """Check that a file is complete audio with at least one frame, whatever its name says.

    WAV and AIFF are checked against their headers without reading the samples; other
    containers (MP3, FLAC, Ogg ...) declare a length that only decoding can confirm, so with
    `decode` they are decoded to the end once and the frames counted.
    Returns soundfile's info (samplerate, channels, frames, subtype ...); raises AudioError naming
    the file when it is missing, a folder, empty, not audio, frameless or truncated.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        raise AudioError(f"{path}: not a readable audio file ({first_line(error)})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: holds no audio samples")
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"{path}: declares {info.samplerate} Hz and {info.channels} channel(s)")
    if info.format == "WAV":
        _check_wav_complete(path)
    elif info.format == "AIFF":
        _check_aiff_complete(path, info)
    elif info.format == "OGG":
        _check_ogg_complete(path)
    elif decode:
        check_decoded(path, info, _decoded_frames(path))
    return info


def save_audio(
    path: PathLike,
    audio,
    sample_rate: int,
    subtype: str = "PCM_16",
    clip: str = "error",
) -> Path:
    """Write (channels, samples) audio atomically: a temporary file beside the target, then rename.

    PCM subtypes cannot hold samples beyond ±1. `clip` says what to do then: "error" (default,
    nothing is written), "clip" (hard clip), or "normalize" (scale the peak to 0.999). FLOAT keeps
    any value. NaN/Inf is always an error. The format follows the file extension.
    """
    path = Path(path)
    audio = as_channels_first(_to_numpy(audio))
    if subtype not in SUBTYPES:
        raise AudioError(f"unknown subtype {subtype!r}; choose one of {', '.join(OUTPUT_SUBTYPES)}")
    if clip not in CLIP_POLICIES:
        raise AudioError(f"unknown clip policy {clip!r}; choose one of {', '.join(CLIP_POLICIES)}")
    subtype = SUBTYPES[subtype]
    if audio.shape[-1] == 0:
        raise AudioError(f"{path}: refusing to write an empty signal")
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: refusing to write NaN or Inf samples")
    peak = float(np.abs(audio).max())
    if subtype != "FLOAT" and peak > 1.0:
        if clip == "error":
            raise AudioError(
                f"{path}: peak {peak:.3f} exceeds full scale for {subtype}; "
                "use a float subtype, or clip='normalize' / clip='clip'"
            )
        audio = np.clip(audio, -1.0, 1.0) if clip == "clip" else audio * (0.999 / peak)
    file_format = AUDIO_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise AudioError(f"{path}: unsupported output extension {path.suffix!r} (use {', '.join(AUDIO_FORMATS)})")
    subtype = LOSSY_SUBTYPES.get(file_format, subtype)
    try:
        with atomic_path(path, suffix=f".tmp{path.suffix}") as temporary:
            try:
                sf.write(temporary, audio.T, int(sample_rate), subtype=subtype, format=file_format)
            except (sf.LibsndfileError, RuntimeError) as error:
                raise AudioError(f"{path}: cannot write ({describe_write_error(error)})") from None
    except MsgppError as error:  # atomic_path's one line for an OSError, as this module's error
        raise AudioError(str(error)) from None
    return path


def resample(audio, orig_sr: int, target_sr: int):
    """Resample along the last axis. NumPy arrays use soxr (VHQ); torch tensors use julius."""
    if orig_sr == target_sr:
        return audio
    if orig_sr <= 0 or target_sr <= 0:
        raise AudioError(f"sample rates must be positive, got {orig_sr} → {target_sr}")
    if _is_tensor(audio):
        # julius wants a reduced fraction; its cost grows with the numerator/denominator.
        from math import gcd

        import julius

        divisor = gcd(orig_sr, target_sr)
        return julius.resample_frac(audio, orig_sr // divisor, target_sr // divisor)
    from msgpp.errors import interrupts_deferred

    with interrupts_deferred():  # imported mid-run: see interrupts_deferred
        import soxr

    array = np.asarray(audio, dtype=np.float32)
    if array.ndim == 1:
        return soxr.resample(array, orig_sr, target_sr, quality="VHQ").astype(np.float32)
    flat = array.reshape(-1, array.shape[-1])
    out = soxr.resample(np.ascontiguousarray(flat.T), orig_sr, target_sr, quality="VHQ")
    out = np.asarray(out, dtype=np.float32).reshape(-1, flat.shape[0]).T
    return np.ascontiguousarray(out).reshape(*array.shape[:-1], -1)


def to_mono(audio):
    """Average the channels: (channels, samples) → (1, samples)."""
    return audio.mean(axis=0, keepdims=True) if not _is_tensor(audio) else audio.mean(dim=0, keepdim=True)


def convert_channels(audio, channels: int):
    """(C, N) → (channels, N): mono is duplicated, many → mono averages, many → stereo downmixes
    through mono only when the input is not already stereo."""
    current = audio.shape[0]
    if current == channels:
        return audio
    if channels == 1:
        return to_mono(audio)
    if current == 1:
        return audio.repeat(channels, 0) if not _is_tensor(audio) else audio.repeat(channels, 1)
    if channels < 1:
        raise AudioError(f"cannot convert {current} channels to {channels}")
    return convert_channels(to_mono(audio), channels)  # many → other many: through mono


def peak_normalize(audio, peak: float = 1.0, eps: float = SILENCE_PEAK):
    """Scale so the absolute peak equals `peak`. Silence (peak < eps) is returned unchanged.

    Returns (normalised audio, gain) so the caller can undo it with `audio / gain`.
    """
    current = float(abs(audio).max()) if audio.shape[-1] else 0.0
    if current < eps:
        return audio, 1.0
    gain = peak / current
    return audio * gain, gain


def channel_gains(peaks: np.ndarray) -> np.ndarray:
    """1/peak per channel, the gains that peak-normalise each channel on its own; digital
    silence keeps gain 1 (no division by zero)."""
    peaks = np.asarray(peaks, dtype=np.float64)
    return np.where(peaks > SILENCE_PEAK, 1.0 / np.maximum(peaks, SILENCE_PEAK), 1.0)


def as_channels_first(audio: np.ndarray) -> np.ndarray:
    """Accept (samples,) or (channels, samples); return float32 (channels, samples)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise AudioError(f"audio must be (samples,) or (channels, samples), got shape {audio.shape}")
    return audio


def checked_signal(audio) -> tuple[np.ndarray, np.ndarray, bool]:
    """Audio handed over in memory, checked the way the public API promises: floats (NumPy, or a
    torch tensor), (samples,) or (channels, samples) with at most 64 channels, finite.

    Returns (the input as a NumPy array of its own shape, a float32 (channels, samples) view of
    it, whether it was a torch tensor). A MsgppError says what is wrong in the caller's terms
    (soundfile's (samples, channels) layout is named as such)."""
    is_tensor = _is_tensor(audio)
    if is_tensor and not audio.is_floating_point():
        raise MsgppError(f"audio must hold floats (got {audio.dtype}); scale integer PCM to [-1, 1] first")
    array = audio.detach().cpu().float().numpy() if is_tensor else np.asarray(audio)
    if not np.issubdtype(array.dtype, np.floating):
        raise MsgppError(f"audio must hold floats (got dtype {array.dtype}); scale integer PCM to [-1, 1] first")
    if array.ndim not in (1, 2):
        raise MsgppError(f"audio must be (samples,) or (channels, samples), got shape {tuple(array.shape)}")
    channels_first = array.reshape(1, -1) if array.ndim == 1 else array
    if channels_first.shape[0] > 64:
        raise MsgppError(
            f"audio has {channels_first.shape[0]} channels; pass (channels, samples) "
            "(soundfile returns (samples, channels): transpose it)"
        )
    channels_first = channels_first.astype(np.float32, copy=False)
    if not np.isfinite(channels_first).all():
        raise MsgppError("audio contains NaN or Inf samples")
    return array, channels_first, is_tensor


def rms_dbfs(audio) -> float:
    """Root-mean-square level in dB relative to full scale (−inf for digital silence)."""
    power = float(np.mean(np.square(np.asarray(audio, dtype=np.float64))))
    return float("-inf") if power == 0 else 10.0 * np.log10(power)


def _decoded_frames(path: Path) -> int:
    """Frames that decode, reading the whole file once in blocks."""
    frames = 0
    try:
        with sf.SoundFile(str(path)) as reader:
            while True:
                block = reader.read(1 << 16, dtype="float32", always_2d=True)
                if not block.shape[0]:
                    return frames
                frames += block.shape[0]
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(f"{path}: truncated or corrupt ({first_line(error)})") from None


def check_decoded(path: Path, info, decoded: int) -> None:
    """Decoded frames against the declared ones, for a reader that decodes a file anyway (and
    checked it with check_audio_file(path, decode=False), so it is decoded only once). MP3
    declares an estimate when it has no Xing/LAME header; a shortfall beyond a few frames and
    1 % is a truncated file."""
    declared = int(info.frames)
    slack = 4 * 1152 + declared // 100 if info.format == "MP3" else 0
    if decoded + slack < declared:
        raise AudioError(f"{path}: truncated (declares {declared} frames, {decoded} decode)")


def _check_ogg_complete(path: Path) -> None:
    """An Ogg stream ends with a page flagged end-of-stream; a cut file's last page is not."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - (1 << 16)))
        tail = handle.read()
    last = tail.rfind(b"OggS")
    if last >= 0 and last + 6 <= len(tail) and not tail[last + 5] & 0x04:
        raise AudioError(f"{path}: truncated (its last Ogg page does not end the stream)")


def _check_aiff_complete(path: Path, info) -> None:
    """libsndfile reads what is there of a truncated AIFF; compare with COMM's frame count."""
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"FORM" or header[8:12] not in (b"AIFF", b"AIFC"):
            return
        size = path.stat().st_size
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack(">4sI", handle.read(8))
            if chunk_id == b"COMM":
                body = handle.read(6)
                if len(body) == 6:
                    declared = struct.unpack(">hI", body)[1]
                    if declared > info.frames:
                        raise AudioError(
                            f"{path}: truncated (header declares {declared} frames, file holds {info.frames})"
                        )
                return
            position += 8 + chunk_size + (chunk_size & 1)


def _check_wav_complete(path: Path) -> None:
    """libsndfile silently reads what is there of a truncated WAV; compare with the header."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # RF64/W64 etc.: libsndfile has checked them
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                if chunk_size not in (0, 0xFFFFFFFF) and position + 8 + chunk_size > size:
                    raise AudioError(
                        f"{path}: truncated (header declares {chunk_size} bytes of audio, "
                        f"file holds {size - position - 8})"
                    )
                return
            position += 8 + chunk_size + (chunk_size & 1)


def _to_numpy(audio) -> np.ndarray:
    if _is_tensor(audio):
        return audio.detach().cpu().float().numpy()
    return np.asarray(audio)


def _is_tensor(audio) -> bool:
    return type(audio).__module__.startswith("torch")
