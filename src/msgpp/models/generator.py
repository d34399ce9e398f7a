"""The MSG generator: Demucs v2's waveform U-Net, mono in and out, any input length.

The demucs package's `Demucs` class already holds the architecture the paper uses (see
docs/training.md, "The paper's models in figures"); reusing it beats rewriting it. This wrapper
fixes the MSG-specific arguments, keeps the constructor arguments as the configuration (stored
in every checkpoint), and maps (batch, 1, samples) → (batch, 1, samples).

`residual=True` (beyond the paper) makes it an identity-start enhancer: output = input +
correction, with the correction exactly zero at initialisation.
"""

from __future__ import annotations

import torch
from demucs.demucs import Demucs
from torch import nn

from msgpp.models.presets import preset_config

# The paper's generator: 64 channels, depth 6, kernel 8, stride 4, GLU, 3-tap rewrite ("context
# 3" in v2's terms is context=1 in this class), ×2 internal resampling, per-example normalisation,
# no LSTM. 89,447,041 parameters (the reference's 89,447,044 minus an unused output conv).
GENERATOR_PRESETS: dict[str, dict] = {
    "paper": dict(channels=64, depth=6, kernel_size=8, stride=4, growth=2.0, context=1, resample=True),
    # Trains on a 2-core CPU: 1,397,665 parameters (5.6 MB in fp32).
    "small": dict(channels=16, depth=5, kernel_size=8, stride=4, growth=2.0, context=1, resample=True),
}


class Generator(nn.Module):
    """Waveform U-Net enhancer. `config` (the constructor arguments) rebuilds it."""

    def __init__(
        self,
        channels: int = 64,
        depth: int = 6,
        kernel_size: int = 8,
        stride: int = 4,
        growth: float = 2.0,
        context: int = 1,
        resample: bool = True,
        normalize: bool = True,
        rescale: float = 0.1,
        sample_rate: int = 16000,
        residual: bool = False,
    ):
        super().__init__()
        self.config = dict(
            channels=channels,
            depth=depth,
            kernel_size=kernel_size,
            stride=stride,
            growth=growth,
            context=context,
            resample=resample,
            normalize=normalize,
            rescale=rescale,
            sample_rate=sample_rate,
            residual=residual,
        )
        self.sample_rate = sample_rate
        self.residual = residual
        self.unet = Demucs(
            sources=["enhanced"],
            audio_channels=1,
            channels=channels,
            growth=growth,
            depth=depth,
            rewrite=True,
            lstm_layers=0,
            kernel_size=kernel_size,
            stride=stride,
            context=context,
            gelu=False,
            glu=True,
            norm_starts=99,
            dconv_mode=0,
            normalize=normalize,
            resample=resample,
            rescale=rescale,
            samplerate=sample_rate,
            segment=1,
        )
        if residual:
            # Identity start: the last transposed conv is zero, so the U-Net's correction is zero
            # and an untrained generator returns its input exactly (see forward).
            last = self.unet.decoder[-1][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) → (batch, 1, samples)."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"Generator expects (batch, 1, samples), got {tuple(audio.shape)}")
        output = self.unet(audio)[:, 0]
        if not self.residual:
            return output
        # The U-Net adds the input's mean back after its own normalisation; the correction is
        # what it adds on top of that, so output = input + correction.
        correction = output - audio.mean(dim=-1, keepdim=True) if self.config["normalize"] else output
        return audio + correction


def build_generator(preset_or_config: str | dict = "paper", **overrides) -> Generator:
    """A generator from a preset name ("paper", "small") or a config dict, with overrides."""
    return Generator(**preset_config("generator", GENERATOR_PRESETS, preset_or_config, overrides))


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())
