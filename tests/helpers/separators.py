"""For the separator tests: tiny separators (a few thousand parameters) and a tiny MUSDB-layout folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from msgpp.constants import SOURCES

RATE = 44100


def tiny_config(name: str) -> dict:
    """The separator's small architecture, shrunk to a few thousand parameters (fast on CPU)."""
    from msgpp.separators.registry import separator_class

    small = separator_class(name).small_architecture
    if name == "openunmix":
        return dict(small, hidden_size=8, nfft=512, nhop=128, nb_layers=1)
    if name == "demucs_v2":
        return dict(small, channels=4, depth=2, lstm_layers=1)
    return dict(small, channels=4, depth=2, nfft=64)


def build_tiny(name: str, seed: int = 0):
    from msgpp.separators.registry import separator_class

    torch.manual_seed(seed)
    separator = separator_class(name).build(tiny_config(name))
    # Non-trivial weights everywhere (openunmix initialises its output scale to ones, etc.).
    with torch.no_grad():
        for parameter in (p for p in separator.parameters() if p.requires_grad):
            parameter.add_(0.01 * torch.randn_like(parameter))
    return separator


def make_root(root: Path, tracks: dict[str, int], seconds: float = 1.0, seed: int = 0) -> Path:
    """<root>/<subset>/<track>/{mixture,sources}.wav: stereo 44.1 kHz PCM_16, tones + noise."""
    rng = np.random.default_rng(seed)
    length = int(seconds * RATE)
    time = np.arange(length) / RATE
    for subset, count in tracks.items():
        for index in range(count):
            folder = root / subset / f"{subset}-{index:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            stems = {
                "drums": 0.2 * rng.standard_normal((2, length)) * (np.sin(2 * np.pi * 4 * time) > 0.8),
                "bass": 0.2 * np.sin(2 * np.pi * rng.uniform(50, 100) * time)[None].repeat(2, 0),
                "other": 0.1 * np.sin(2 * np.pi * rng.uniform(300, 600) * time)[None].repeat(2, 0),
                "vocals": 0.1
                * np.sin(2 * np.pi * rng.uniform(200, 400) * time * (1 + 0.01 * np.sin(time)))[None].repeat(2, 0),
            }
            for source in SOURCES:
                sf.write(folder / f"{source}.wav", stems[source].T.astype(np.float32), RATE, subtype="PCM_16")
            mixture = sum(stems.values())
            sf.write(folder / "mixture.wav", mixture.T.astype(np.float32), RATE, subtype="PCM_16")
    return root
