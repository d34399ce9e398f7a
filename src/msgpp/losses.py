"""MSG's losses, one small unit each, and the loss balancing of the paper.

- LSGAN for the discriminators and for the generator,
- deep feature matching between the discriminators' maps of real and generated audio,
- multi-resolution STFT reconstruction (spectral convergence + log-magnitude L1),
- onset-envelope L1 (beyond the paper, optional): the onset strength that the paper's onset F1
  thresholds, computed differentiably, matched between generated and real audio,
- `LossBalancer`: weights that make the generator's terms contribute equally, estimated over
  the first steps of training and then frozen (stored as buffers, so they live in checkpoints).

Discriminator outputs are `(logits, feature_maps)` pairs, one per discriminator
(msgpp.models.discriminators).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DiscriminatorOutputs = Sequence[tuple[torch.Tensor, Sequence[torch.Tensor]]]


def discriminator_lsgan_loss(real: DiscriminatorOutputs, fake: DiscriminatorOutputs) -> torch.Tensor:
    """Σ_k mean((D_k(real) − 1)²) + mean(D_k(fake)²): real pushed to 1, fake to 0."""
    loss = 0.0
    for (real_logits, _), (fake_logits, _) in zip(real, fake, strict=True):
        loss = loss + torch.mean((real_logits.float() - 1) ** 2) + torch.mean(fake_logits.float() ** 2)
    return loss


def generator_lsgan_loss(fake: DiscriminatorOutputs) -> torch.Tensor:
    """Σ_k mean((D_k(fake) − 1)²): the generator wants its output judged real."""
    loss = 0.0
    for fake_logits, _ in fake:
        loss = loss + torch.mean((fake_logits.float() - 1) ** 2)
    return loss


def feature_matching_loss(real: DiscriminatorOutputs, fake: DiscriminatorOutputs) -> torch.Tensor:
    """Σ over discriminators and their maps of L1(map(real), map(fake)); real maps are targets."""
    loss = 0.0
    for (_, real_maps), (_, fake_maps) in zip(real, fake, strict=True):
        for real_map, fake_map in zip(real_maps, fake_maps, strict=True):
            loss = loss + F.l1_loss(fake_map.float(), real_map.detach().float())
    return loss


class STFTLoss(nn.Module):
    """Spectral convergence and log-magnitude L1 at one resolution (Hann window)."""

    def __init__(self, n_fft: int = 1024, hop_length: int = 120, win_length: int = 600, eps: float = 1e-7):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length, self.eps = n_fft, hop_length, win_length, eps
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(
            audio.reshape(-1, audio.shape[-1]).float(),
            self.n_fft,
            self.hop_length,
            self.win_length,
            window=self.window.float(),
            return_complex=True,
        )
        # The floor keeps sqrt's gradient finite on digital silence.
        return torch.sqrt(spectrum.real**2 + spectrum.imag**2 + self.eps)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(spectral convergence, log-magnitude L1), each averaged over the batch."""
        estimate_mag, target_mag = self.magnitude(estimate), self.magnitude(target)
        difference = torch.linalg.norm((target_mag - estimate_mag).flatten(1), dim=1)
        reference = torch.linalg.norm(target_mag.flatten(1), dim=1).clamp_min(self.eps)
        convergence = (difference / reference).mean()
        log_magnitude = F.l1_loss(torch.log(estimate_mag), torch.log(target_mag))
        return convergence, log_magnitude


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of weighted spectral convergence + log-magnitude L1.

    Defaults are the reference's: n_fft 1024/2048/512, hop 120/240/50, win 600/1200/240, each
    term ×0.1. Works at any batch shape (..., samples); computed in float32 even under autocast.
    """

    def __init__(
        self,
        n_ffts: Sequence[int] = (1024, 2048, 512),
        hop_lengths: Sequence[int] = (120, 240, 50),
        win_lengths: Sequence[int] = (600, 1200, 240),
        convergence_weight: float = 0.1,
        magnitude_weight: float = 0.1,
    ):
        super().__init__()
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        self.resolutions = nn.ModuleList(
            [STFTLoss(n, h, w) for n, h, w in zip(n_ffts, hop_lengths, win_lengths, strict=True)]
        )
        self.convergence_weight, self.magnitude_weight = convergence_weight, magnitude_weight

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            total = 0.0
            for resolution in self.resolutions:
                convergence, log_magnitude = resolution(estimate, target)
                total = total + self.convergence_weight * convergence + self.magnitude_weight * log_magnitude
            return total / len(self.resolutions)


class OnsetEnvelopeLoss(nn.Module):
    """L1 between the onset-strength envelopes of generated and real audio (beyond the paper).

    The envelope is librosa's `onset_strength` as the evaluation computes it (msgpp.evaluation.
    metrics.onset_frames): power mel spectrogram (n_fft 2048, 128 bands, Hann), dB with an 80 dB
    floor below the example's maximum, positive first differences averaged over the bands, on
    peak-normalised audio. Matching it asks the generator to keep attacks where the ground truth
    has them and add none elsewhere, which the paper's losses do not ask directly.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 2048, hop_length: int = 256, n_mels: int = 128):
        super().__init__()
        import librosa

        self.n_fft, self.hop_length = n_fft, hop_length
        mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
        self.register_buffer("mel", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def envelope(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, ..., samples) → (batch, frames − 1) onset strength."""
        audio = audio.reshape(audio.shape[0], -1).float()
        audio = audio / audio.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
        spectrum = torch.stft(
            audio, self.n_fft, self.hop_length, window=self.window, pad_mode="constant", return_complex=True
        )
        power = spectrum.real**2 + spectrum.imag**2
        decibels = 10.0 * torch.log10(torch.matmul(self.mel, power).clamp_min(1e-10))
        floor = decibels.detach().amax(dim=(-2, -1), keepdim=True) - 80.0
        decibels = torch.maximum(decibels, floor)
        return F.relu(decibels[..., 1:] - decibels[..., :-1]).mean(dim=-2)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            return F.l1_loss(self.envelope(estimate), self.envelope(target).detach())


class LossBalancer(nn.Module):
    """Weights that equalise the generator's loss terms, estimated then frozen.

    While `steps < warmup_steps`, `update(values)` folds each term's value into a running
    estimate (an exponential moving average with `decay`, bias-corrected, so early steps count
    fully); the weights are w_i = (1/L_i) / Σ_j (1/L_j), which makes every w_i·L_i equal. At
    `warmup_steps` the weights freeze. The paper solves the same balance over its first 1000
    iterations; the reference code keeps a single batch's ratio, which is noisier.

    Everything is a buffer, so the running estimate, the step count and the frozen weights are
    saved in checkpoints and restored on resume.
    """

    def __init__(self, names: Sequence[str], warmup_steps: int = 1000, decay: float = 0.99):
        super().__init__()
        if not names:
            raise ValueError("LossBalancer needs at least one loss name")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.names = list(names)
        self.warmup_steps = int(warmup_steps)
        self.decay = float(decay)
        self.register_buffer("running", torch.zeros(len(self.names), dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("_weights", torch.full((len(self.names),), 1.0 / len(self.names), dtype=torch.float64))

    @property
    def frozen(self) -> bool:
        return int(self.steps) >= self.warmup_steps

    @property
    def weights(self) -> dict[str, float]:
        return {name: float(weight) for name, weight in zip(self.names, self._weights, strict=True)}

    @torch.no_grad()
    def update(self, values: dict[str, torch.Tensor | float]) -> None:
        """Fold one step's (detached) loss values into the estimate; a no-op once frozen."""
        if self.frozen:
            return
        current = torch.tensor(
            [float(values[name]) for name in self.names], dtype=torch.float64, device=self.running.device
        ).abs()
        if not torch.isfinite(current).all():
            return  # a diverged step says nothing about the terms' scales
        self.running.mul_(self.decay).add_((1 - self.decay) * current)
        self.steps += 1
        estimate = self.running / (1 - self.decay ** int(self.steps))
        inverse = 1.0 / estimate.clamp_min(1e-12)
        self._weights.copy_(inverse / inverse.sum())

    def forward(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ_i w_i · L_i with the current weights."""
        return sum(float(weight) * values[name] for name, weight in zip(self.names, self._weights, strict=True))
