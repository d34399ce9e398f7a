"""For the evaluation tests: a tiny synthetic benchmark with two stand-in separators, and Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from scipy import signal as sps

from msgpp.audio import save_audio
from msgpp.constants import SOURCES
from msgpp.separators.cache import write_meta

RATE = 44100
TRACKS = ("Alpha Song", "Beta Song")


def _song(seed: int, seconds: float = 3.0) -> dict[str, np.ndarray]:
    """Four stereo stems with partials up to ~4 kHz, note onsets and a silent stretch."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    gate = (np.sin(2 * np.pi * 2.0 * t) > -0.2).astype(np.float32)  # notes with gaps
    stems = {}
    for source in SOURCES:
        f0 = {"bass": 55.0, "drums": 180.0, "other": 220.0, "vocals": 330.0}[source] * (1 + 0.05 * seed)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, int(4000 / f0)))
        if source == "drums":
            tone = tone * np.exp(-((t * 4) % 1.0) * 12) + 0.3 * rng.standard_normal(t.size) * np.exp(
                -((t * 4) % 1.0) * 30
            )
        mono = (0.15 * tone * gate).astype(np.float32)
        mono[int(0.1 * t.size) : int(0.2 * t.size)] = 0.0  # a silent stretch the metrics must ignore
        stems[source] = np.stack([mono, 0.9 * mono])
    return stems


def lowpass(audio: np.ndarray, sample_rate: int, cutoff: float) -> np.ndarray:
    sos = sps.butter(8, cutoff, fs=sample_rate, output="sos")
    return sps.sosfiltfilt(sos, audio, axis=-1).astype(np.float32)


def add_hf_noise(audio: np.ndarray, sample_rate: int, seed: int, level: float = 0.05) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(audio.shape)
    sos = sps.butter(4, 6000, btype="high", fs=sample_rate, output="sos")
    return (audio + level * sps.sosfilt(sos, noise, axis=-1) * (np.abs(audio) > 1e-6)).astype(np.float32)


def separator_estimate(separator: str, audio: np.ndarray, source: str, song: int) -> np.ndarray:
    """A stand-in separator's estimate of a stem: 'demucs_v2' (a waveform separator) adds HF
    noise, 'openunmix' (a spectrogram one) low-passes at 1.5 kHz."""
    if separator == "demucs_v2":
        return add_hf_noise(audio, RATE, seed=song * 10 + SOURCES.index(source))
    return lowpass(audio, RATE, 1500)


def make_tiny_setup(base: Path) -> tuple[Path, Path]:
    """Ground truth + a cache with a 'waveform' separator (HF noise added) and a 'spectrogram' one
    (low-passed at 1.5 kHz)."""
    root, cache = base / "musdb", base / "cache"
    for number, track in enumerate(TRACKS):
        stems = _song(number)
        for source, audio in stems.items():
            save_audio(root / "test" / track / f"{source}.wav", audio, RATE, subtype="FLOAT")
        save_audio(root / "test" / track / "mixture.wav", sum(stems.values()), RATE, subtype="FLOAT")
        for separator in ("demucs_v2", "openunmix"):
            folder = cache / separator / "abc123def456" / "test" / track
            for source, audio in stems.items():
                estimate = separator_estimate(separator, audio, source, number)
                save_audio(folder / f"{source}.wav", estimate, RATE, subtype="FLOAT")
            write_meta(folder, {"separator": separator, "sample_rate": RATE})
    return root, cache


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
