"""For the training tests: a tiny synthetic estimate cache, built in the real cache layout with
meta.json (tones with gaps; "separators" that low-pass or add noise), and tiny models, data
modules and trainers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msgpp.audio import save_audio
from msgpp.separators.cache import write_meta

RATE = 44100
TINY_GENERATOR = dict(channels=4, depth=3, kernel_size=8, stride=4, growth=2.0, context=1, resample=True)
TINY_DISCRIMINATORS = dict(stft_n_ffts=[256, 128], stft_channels=4, periods=[2, 3], period_channels=[4, 8])
TRACKS = ("alpha", "beta", "gamma", "delta")


def _tone(seed: int, seconds: float) -> np.ndarray:
    """A stereo harmonic tone with a silent gap in the middle (so not every window is salient)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = rng.uniform(150, 400)
    mono = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) for k in range(1, 6))
    mono[int(1.6 * RATE) : int(2.6 * RATE)] = 0.0
    return np.stack([mono, 0.9 * mono]).astype(np.float32)


def _degrade(audio: np.ndarray, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "lowpass":
        kernel = np.ones(9) / 9
        out = np.stack([np.convolve(channel, kernel, mode="same") for channel in audio])
        return (out + 0.01 * rng.standard_normal(audio.shape)).astype(np.float32)
    if kind == "noise":
        return (audio + 0.05 * rng.standard_normal(audio.shape)).astype(np.float32)
    return (0.8 * audio + 0.02 * rng.standard_normal(audio.shape)).astype(np.float32)


def make_fake_cache(folder: Path, seconds: float = 4.0) -> tuple[Path, Path]:
    """(root, cache): TRACKS in <root>/train and 1 track in <root>/test; separators sepa
    (low-pass), sepb (noise) and unseen (quieter + noise), cached for both subsets."""
    root, cache = folder / "musdb", folder / "estimates"
    kinds = {"sepa": "lowpass", "sepb": "noise", "unseen": "quiet"}
    for subset, tracks in (("train", TRACKS), ("test", ("omega",))):
        for number, track in enumerate(tracks):
            target = _tone(number + (100 if subset == "test" else 0), seconds)
            save_audio(root / subset / track / "vocals.wav", target, RATE)
            for separator, kind in kinds.items():
                out = cache / separator / "0123456789ab" / subset / track
                save_audio(out / "vocals.wav", np.clip(_degrade(target, kind, number), -1, 1), RATE)
                write_meta(out, {"separator": separator, "sample_rate": RATE})
    return root, cache


def tiny_datamodule(root, cache, **overrides):
    from msgpp.training.datamodule import MSGDataModule

    settings = dict(
        root=str(root),
        cache=str(cache),
        source="vocals",
        separators=["sepa", "sepb"],
        held_out=["unseen"],
        sample_rate=8000,
        window_seconds=0.5,
        hop_seconds=0.25,
        batch_size=4,
        val_fraction=0.25,
        val_windows_per_track=2,
        seed=3,
    )
    settings.update(overrides)
    return MSGDataModule(**settings)


def tiny_module(**overrides):
    from msgpp.training.module import MSGModule

    settings = dict(
        source="vocals",
        generator=TINY_GENERATOR,
        discriminators=TINY_DISCRIMINATORS,
        sample_rate=8000,
        balance_steps=3,
        lr=1e-3,
    )
    settings.update(overrides)
    return MSGModule(**settings)


def tiny_trainer(folder, max_batches: int, **overrides):
    import lightning as L

    settings = dict(
        accelerator="cpu",
        devices=1,
        max_steps=2 * max_batches,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(folder),
    )
    settings.update(overrides)
    return L.Trainer(**settings)
