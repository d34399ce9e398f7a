"""MSG's discriminators: multi-resolution STFT discriminators and HiFi-GAN multi-period ones.

Every discriminator maps a waveform batch (batch, 1, samples) to `(logits, feature_maps)`: the
logits a tensor of any shape (LSGAN averages it), the feature maps the list of intermediate
activations that deep feature matching compares. `Discriminators` holds the whole set and
returns one `(logits, feature_maps)` pair per member.

The constructor arguments are the configuration (stored in checkpoints). Figures of the paper's
set (MSG-SPEC.md): 3 STFT discriminators (n_fft 2048/1024/512, hop n_fft/4, 32 channels,
~93.6k parameters each) + 5 period discriminators (periods 2/3/5/7/11, ~8.2M each) ≈ 41.4M.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LEAKY_SLOPE = 0.1

DiscriminatorOutput = tuple[torch.Tensor, list[torch.Tensor]]


class STFTDiscriminator(nn.Module):
    """2-D convolutions over one linear-magnitude STFT, shaped (batch, 1, frames, frequency).

    Kernel (3, 9) with stride (1, 2). In this (frames, frequency) layout — the one of the UnivNet
    spectrogram discriminator MSG builds on — the stride halves the frequency axis three times and
    the frame axis keeps its resolution. MSG-SPEC.md words it as "stride along time"; the
    parameter count is the same either way, and striding the 1025-bin axis is ~4x cheaper on 1-s
    clips, which matters on a CPU.
    """

    def __init__(self, n_fft: int = 1024, hop_length: int | None = None, channels: int = 32):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length or n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        kernel, padding = (3, 9), (1, 4)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, kernel, padding=padding)),
            weight_norm(nn.Conv2d(channels, channels, kernel, stride=(1, 2), padding=padding)),
            weight_norm(nn.Conv2d(channels, channels, kernel, stride=(1, 2), padding=padding)),
            weight_norm(nn.Conv2d(channels, channels, kernel, stride=(1, 2), padding=padding)),
            weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.output = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) → linear magnitude (batch, 1, frames, n_fft/2 + 1), in float32."""
        spectrum = torch.stft(
            audio[:, 0].float(), self.n_fft, self.hop_length, window=self.window.float(),
            center=True, return_complex=True,
        )
        return spectrum.abs().transpose(1, 2).unsqueeze(1)

    def forward(self, audio: torch.Tensor) -> DiscriminatorOutput:
        x = self.spectrogram(audio).to(audio.dtype)
        return _convolve(self.convs, self.output, x)


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator: the waveform folded into (samples / period, period) and
    convolved along the first axis only, so each column sees one phase of the period."""

    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024),
                 kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        padding = ((kernel_size - 1) // 2, 0)
        layers, previous = [], 1
        for index, width in enumerate(channels):
            last = index == len(channels) - 1
            layers.append(weight_norm(nn.Conv2d(
                previous, width, (kernel_size, 1), stride=(1 if last else stride, 1), padding=padding)))
            previous = width
        self.convs = nn.ModuleList(layers)
        self.output = weight_norm(nn.Conv2d(previous, 1, (3, 1), padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> DiscriminatorOutput:
        batch, channels, samples = audio.shape
        remainder = samples % self.period
        if remainder:  # reflect-pad to a whole number of periods
            audio = F.pad(audio, (0, self.period - remainder), mode="reflect")
        x = audio.view(batch, channels, -1, self.period)
        return _convolve(self.convs, self.output, x)


class Discriminators(nn.Module):
    """The full set: STFT discriminators (one per n_fft) then period discriminators.

    Inputs are peak-normalised per example first (the reference does the same), so the
    discriminators judge timbre, not level.
    """

    def __init__(
        self,
        stft_n_ffts: Sequence[int] = (2048, 1024, 512),
        stft_channels: int = 32,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        period_channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        peak_normalize: bool = True,
    ):
        super().__init__()
        self.config = dict(
            stft_n_ffts=list(stft_n_ffts), stft_channels=stft_channels, periods=list(periods),
            period_channels=list(period_channels), peak_normalize=peak_normalize,
        )
        self.peak_normalize = peak_normalize
        self.members = nn.ModuleList(
            [STFTDiscriminator(n_fft, channels=stft_channels) for n_fft in stft_n_ffts]
            + [PeriodDiscriminator(period, period_channels) for period in periods]
        )
        self.names = [f"stft{n_fft}" for n_fft in stft_n_ffts] + [f"period{period}" for period in periods]

    def forward(self, audio: torch.Tensor) -> list[DiscriminatorOutput]:
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"discriminators expect (batch, 1, samples), got {tuple(audio.shape)}")
        if self.peak_normalize:
            peak = audio.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
            audio = audio / peak
        return [member(audio) for member in self.members]


PRESETS: dict[str, dict] = {
    # The paper's set, 41.4M parameters.
    "paper": dict(stft_n_ffts=[2048, 1024, 512], stft_channels=32, periods=[2, 3, 5, 7, 11],
                  period_channels=[32, 128, 512, 1024, 1024]),
    # Trains on a 2-core CPU: same resolutions and periods, narrower convolutions (0.70M).
    "small": dict(stft_n_ffts=[2048, 1024, 512], stft_channels=8, periods=[2, 3, 5, 7, 11],
                  period_channels=[16, 32, 64, 128, 128]),
}


def build_discriminators(preset_or_config: str | dict = "paper", **overrides) -> Discriminators:
    """The discriminator set from a preset name ("paper", "small") or a config dict."""
    if isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise KeyError(f"unknown discriminator preset {preset_or_config!r}; choose one of {sorted(PRESETS)}")
        config = dict(PRESETS[preset_or_config])
    else:
        config = dict(preset_or_config)
    config.update(overrides)
    return Discriminators(**config)


def _convolve(convs: nn.ModuleList, output: nn.Module, x: torch.Tensor) -> DiscriminatorOutput:
    """LeakyReLU conv stack then the output conv; every layer's activation is a feature map."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LEAKY_SLOPE)
        features.append(x)
    x = output(x)
    features.append(x)
    return x.flatten(1), features
