"""MSG's discriminators: multi-resolution STFT discriminators and HiFi-GAN multi-period ones.

Every discriminator maps a waveform batch (batch, 1, samples) to `(logits, feature_maps)`: the
logits a tensor of any shape (LSGAN averages it), the feature maps the list of intermediate
activations that deep feature matching compares. `Discriminators` holds the whole set and
returns one `(logits, feature_maps)` pair per member.

The constructor arguments are the configuration (stored in checkpoints). Figures of the paper's
set (docs/training.md, "The paper's models in figures"): 3 STFT discriminators (n_fft
2048/1024/512, hop n_fft/4, 32 channels, ~93.6k parameters each) + 5 period discriminators
(periods 2/3/5/7/11, ~8.2M each) ≈ 41.4M.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from msgpp.models.presets import preset_config

LEAKY_SLOPE = 0.1

DiscriminatorOutput = tuple[torch.Tensor, list[torch.Tensor]]


STFT_LAYOUTS = ("time", "frequency")


class STFTDiscriminator(nn.Module):
    """2-D convolutions over one linear-magnitude STFT, kernel (3, 9), stride (1, 2).

    layout "time" (the default, the paper's and the authors' code): the spectrogram is
    (batch, 1, frequency, frames) from a rectangular window, so the 9-tap kernels and the three
    strides run along *time*: the frame axis is halved three times and every frequency bin keeps
    its resolution. layout "frequency" (msgpp before 0.2, kept for the ablation in
    docs/training.md): (batch, 1, frames, frequency) from a Hann window, striding the frequency
    axis instead. The parameter count is the same either way.
    """

    def __init__(self, n_fft: int = 1024, hop_length: int | None = None, channels: int = 32, layout: str = "time"):
        super().__init__()
        if layout not in STFT_LAYOUTS:
            raise ValueError(f"unknown STFT discriminator layout {layout!r}; choose one of {STFT_LAYOUTS}")
        self.n_fft = n_fft
        self.hop_length = hop_length or n_fft // 4
        self.layout = layout
        window = torch.ones(n_fft) if layout == "time" else torch.hann_window(n_fft)
        self.register_buffer("window", window, persistent=False)
        kernel, padding = (3, 9), (1, 4)
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, channels, kernel, padding=padding)),
                weight_norm(nn.Conv2d(channels, channels, kernel, stride=(1, 2), padding=padding)),
                weight_norm(nn.Conv2d(channels, channels, kernel, stride=(1, 2), padding=padding)),
                weight_norm(nn.Conv2d(channels, channels, kernel, stride=(1, 2), padding=padding)),
                weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
            ]
        )
        self.output = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) → linear magnitude in float32: (batch, 1, n_fft/2 + 1, frames) for
        layout "time", (batch, 1, frames, n_fft/2 + 1) for layout "frequency"."""
        spectrum = torch.stft(
            audio[:, 0].float(),
            self.n_fft,
            self.hop_length,
            window=self.window.float(),
            center=True,
            return_complex=True,
        ).abs()
        if self.layout == "frequency":
            spectrum = spectrum.transpose(1, 2)
        return spectrum.unsqueeze(1)

    def forward(self, audio: torch.Tensor) -> DiscriminatorOutput:
        x = self.spectrogram(audio).to(audio.dtype)
        if self.layout == "frequency":
            return _convolve(self.convs, self.output, x)
        # Layout "time", computed on the transposed (frames, frequency) tensor with transposed
        # kernels: the same parameters and the same sums, but the long frequency axis is the
        # contiguous one, which oneDNN's kernels run ~15 % faster on a CPU (benchmarks/
        # bench_training.py). Feature maps and logits come out transposed, which neither LSGAN
        # nor feature matching (both element-wise over real/fake pairs) can tell.
        x = x.transpose(-1, -2).contiguous()
        features = []
        for conv in self.convs:
            x = F.leaky_relu(_transposed_conv(conv, x), LEAKY_SLOPE)
            features.append(x)
        return _transposed_conv(self.output, x).flatten(1), features


def _transposed_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv` applied with its two spatial axes swapped (kernel, stride and padding alike)."""
    return F.conv2d(x, conv.weight.transpose(-1, -2), conv.bias, stride=conv.stride[::-1], padding=conv.padding[::-1])


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator: the waveform folded into (samples / period, period) and
    convolved along the first axis only, so each column sees one phase of the period."""

    def __init__(
        self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024), kernel_size: int = 5, stride: int = 3
    ):
        super().__init__()
        self.period = period
        padding = ((kernel_size - 1) // 2, 0)
        layers, previous = [], 1
        for index, width in enumerate(channels):
            last = index == len(channels) - 1
            layers.append(
                weight_norm(
                    nn.Conv2d(previous, width, (kernel_size, 1), stride=(1 if last else stride, 1), padding=padding)
                )
            )
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
        stft_layout: str = "time",
    ):
        super().__init__()
        self.config = dict(
            stft_n_ffts=list(stft_n_ffts),
            stft_channels=stft_channels,
            periods=list(periods),
            period_channels=list(period_channels),
            peak_normalize=peak_normalize,
            stft_layout=stft_layout,
        )
        self.peak_normalize = peak_normalize
        self.members = nn.ModuleList(
            [STFTDiscriminator(n_fft, channels=stft_channels, layout=stft_layout) for n_fft in stft_n_ffts]
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


DISCRIMINATOR_PRESETS: dict[str, dict] = {
    # The paper's set, 41.4M parameters.
    "paper": dict(
        stft_n_ffts=[2048, 1024, 512],
        stft_channels=32,
        periods=[2, 3, 5, 7, 11],
        period_channels=[32, 128, 512, 1024, 1024],
    ),
    # Trains on a 2-core CPU: same resolutions and periods, narrower convolutions (0.70M).
    "small": dict(
        stft_n_ffts=[2048, 1024, 512], stft_channels=8, periods=[2, 3, 5, 7, 11], period_channels=[16, 32, 64, 128, 128]
    ),
}


def build_discriminators(preset_or_config: str | dict = "paper", **overrides) -> Discriminators:
    """The discriminator set from a preset name ("paper", "small") or a config dict."""
    return Discriminators(**preset_config("discriminator", DISCRIMINATOR_PRESETS, preset_or_config, overrides))


def _convolve(convs: nn.ModuleList, output: nn.Module, x: torch.Tensor) -> DiscriminatorOutput:
    """LeakyReLU conv stack then the output conv. The feature maps are the hidden layers'
    activations only, not the logits (as the authors' feature matching)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LEAKY_SLOPE)
        features.append(x)
    return output(x).flatten(1), features
