"""Wavenet for music source separation (Lluís, Pons & Serra, Interspeech 2019), in PyTorch.

A port of the architecture of francesclluis/source-separation-wavenet (Keras): mono 16 kHz
waveform in, one waveform per source out, non-causal dilated convolutions, no normalisation.

    initial conv 1→R (k 3, same, no bias)
    stacks × dilations 1, 2, 4, …, 2^depth residual blocks:
        h = conv R→2R (k 3, dilation d, same, no bias); z = tanh(h[:R]) · sigmoid(h[R:])
        o = conv R→R+S (k 1, no bias); x += o[:R]; skip = o[R:], cropped to the target field
    Σ skips → ReLU → conv S→F1 (k 3) → ReLU → conv F1→F2 (k 3) → conv F2→n (k 1, bias), linear

The multi-instrument model predicts vocals, drums and bass; "other" is the mixture minus their
sum. With the paper's figures (4 stacks, depth 9, R = S = 64, F = 2048, 256) it has 3,277,763
parameters, the singing-voice variant (n = 1) 3,277,249 — the upstream configs' own counts.

The network is fully convolutional: an input of L samples gives L − (receptive field − 1) + 2·p
outputs (p = target padding, the samples the upstream loss keeps at each edge of the target
field); output j lines up with input sample (receptive field − 1)/2 − p + j.

The "wavenet" separator (separator.py) wraps it behind msgpp's separator interface; its weights
are a msgpp checkpoint (`.pt`: config, state dict, versions; save_checkpoint / load_checkpoint
here) or an upstream Keras file (`.hdf5`, converted on load by keras_weights.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
FORMAT = "msgpp-wavenet/1"


@dataclass(frozen=True)
class WavenetConfig:
    """The constructor arguments of `Wavenet`; stored in every checkpoint."""

    sources: tuple[str, ...] = ("vocals", "drums", "bass")  # the network's outputs, in order
    residual_source: str = "other"  # mixture − Σ outputs
    num_stacks: int = 4
    dilation_depth: int = 9  # dilations 1, 2, …, 2**dilation_depth in each stack
    residual_channels: int = 64
    skip_channels: int = 64
    kernel_size: int = 3
    final_channels: tuple[int, int] = (2048, 256)
    final_kernel_sizes: tuple[int, int] = (3, 3)
    target_field_length: int = 1601  # the training target field (outputs per training example)
    target_padding: int = 1
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self):
        # JSON / checkpoints give lists back; keep tuples so configs compare and hash.
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "final_channels", tuple(self.final_channels))
        object.__setattr__(self, "final_kernel_sizes", tuple(self.final_kernel_sizes))
        if self.kernel_size % 2 == 0 or any(k % 2 == 0 for k in self.final_kernel_sizes):
            raise ValueError("Wavenet kernels must have odd lengths ('same' padding)")

    @property
    def dilations(self) -> list[int]:
        return [2**i for i in range(self.dilation_depth + 1)]

    @property
    def receptive_field(self) -> int:
        """Input samples that one output sample sees (8185 for the paper's model)."""
        half = (self.kernel_size - 1) // 2
        return self.num_stacks * 2 * half * sum(self.dilations) + 1

    @property
    def edge_context(self) -> int:
        """Samples beyond upstream's receptive field that an output still sees at each side: the
        initial conv and the final convs are 'same'-padded too (3 for the paper's model)."""
        return (self.kernel_size - 1) // 2 + sum((k - 1) // 2 for k in self.final_kernel_sizes)

    @property
    def input_length(self) -> int:
        """Input samples of one training example (9785 for the paper's model)."""
        return self.receptive_field + self.target_field_length - 1

    def to_dict(self) -> dict:
        data = asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}


WAVENET_CONFIGS: dict[str, WavenetConfig] = {
    # The released multi-instrument model: 3,277,763 parameters, receptive field 8185 (0.51 s).
    "multi-instrument": WavenetConfig(),
    # The released singing-voice model: vocals and accompaniment, 3,277,249 parameters.
    "singing-voice": WavenetConfig(sources=("vocals",), residual_source="accompaniment"),
    # Trains on a 2-core CPU in minutes: 2 stacks of dilations 1..256, 24 channels;
    # receptive field 2045 samples (0.13 s).
    "small": WavenetConfig(
        num_stacks=2,
        dilation_depth=8,
        residual_channels=24,
        skip_channels=24,
        final_channels=(128, 64),
        target_field_length=4001,
    ),
}


class ResidualBlock(nn.Module):
    """Gated dilated convolution; returns (residual output, skip output), both full length."""

    def __init__(self, residual_channels: int, skip_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.residual_channels = residual_channels
        self.dilated = nn.Conv1d(
            residual_channels,
            2 * residual_channels,
            kernel_size,
            dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2,
            bias=False,
        )
        self.mix = nn.Conv1d(residual_channels, residual_channels + skip_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        filtered, gate = self.dilated(x).split(self.residual_channels, dim=1)
        out = self.mix(torch.tanh(filtered) * torch.sigmoid(gate))
        return x + out[:, : self.residual_channels], out[:, self.residual_channels :]


class Wavenet(nn.Module):
    """(batch, samples) or (batch, 1, samples) mono mixture → (batch, n_sources, outputs)."""

    def __init__(self, config: WavenetConfig | dict | None = None, **overrides):
        super().__init__()
        if config is None:
            config = WavenetConfig(**overrides)
        elif isinstance(config, dict):
            config = WavenetConfig(**{**config, **overrides})
        elif overrides:
            config = WavenetConfig(**{**asdict(config), **overrides})
        self.config = config
        c = config
        self.initial = nn.Conv1d(1, c.residual_channels, c.kernel_size, padding=(c.kernel_size - 1) // 2, bias=False)
        self.blocks = nn.ModuleList(
            ResidualBlock(c.residual_channels, c.skip_channels, c.kernel_size, dilation)
            for _ in range(c.num_stacks)
            for dilation in c.dilations
        )
        (f1, f2), (k1, k2) = c.final_channels, c.final_kernel_sizes
        self.final1 = nn.Conv1d(c.skip_channels, f1, k1, padding=(k1 - 1) // 2, bias=False)
        self.final2 = nn.Conv1d(f1, f2, k2, padding=(k2 - 1) // 2, bias=False)
        self.output = nn.Conv1d(f2, len(c.sources), 1, bias=True)

    def output_length(self, input_length: int) -> int:
        return input_length - self.config.receptive_field + 1 + 2 * self.config.target_padding

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        if mixture.dim() == 2:
            mixture = mixture[:, None]
        if mixture.dim() != 3 or mixture.shape[1] != 1:
            raise ValueError(f"Wavenet expects (batch, samples) or (batch, 1, samples), got {tuple(mixture.shape)}")
        outputs = self.output_length(mixture.shape[-1])
        if outputs < 1 + 2 * self.config.target_padding:
            raise ValueError(
                f"Wavenet needs at least {self.config.receptive_field} input samples, got {mixture.shape[-1]}"
            )
        # Skips are summed over the target field only (plus padding), as upstream does.
        start = (self.config.receptive_field - 1) // 2 - self.config.target_padding
        x = self.initial(mixture)
        skips = 0
        for block in self.blocks:
            x, skip = block(x)
            skips = skips + skip[..., start : start + outputs]
        h = self.final2(F.relu(self.final1(F.relu(skips))))
        return self.output(h)


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@torch.no_grad()
def separate_mono(
    model: Wavenet,
    mixture: torch.Tensor | np.ndarray,
    *,
    target_field_length: int | None = 16001,
    batch_size: int = 4,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Separate a whole mono 16 kHz signal (samples,) → {source: (samples,)}, residual included.

    The signal is zero-padded by half a receptive field at each end (so the estimate covers the
    whole song, as upstream does) and cut into fragments of `target_field_length` outputs, run in
    batches. Each fragment gets `edge_context` extra input samples at both ends, so the result
    equals one pass over the whole padded song: upstream's own loop (fragments of the training
    target field, 1601) lets a few samples at every fragment edge see zero padding. A longer
    target field costs less recomputed context (~5× faster than 1601). None: the model's own.
    """
    config = model.config
    signal = torch.as_tensor(mixture, dtype=torch.float32)
    if signal.dim() != 1:
        raise ValueError(f"separate_mono expects (samples,), got {tuple(signal.shape)}")
    device = next(model.parameters()).device
    target = int(target_field_length or config.target_field_length)
    length = signal.shape[-1]
    fragments = max(1, math.ceil(length / target))
    half = (config.receptive_field - 1) // 2 + config.edge_context
    padded = F.pad(signal, (half, half + fragments * target - length))
    fragment_length = target + 2 * half
    pieces = []
    starts = range(0, fragments * target, target)
    batches = [list(starts[i : i + batch_size]) for i in range(0, fragments, batch_size)]
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="wavenet", unit="batch", leave=False)
    pad = config.target_padding + config.edge_context
    for batch_starts in batches:
        inputs = torch.stack([padded[s : s + fragment_length] for s in batch_starts]).to(device)
        out = model(inputs)[..., pad : pad + target]  # (batch, n, target)
        pieces.append(out.transpose(0, 1).reshape(len(config.sources), -1).cpu())
    estimates = torch.cat(pieces, dim=-1)[:, :length]
    result = {source: estimates[i] for i, source in enumerate(config.sources)}
    result[config.residual_source] = signal - estimates.sum(dim=0)
    return result


def save_checkpoint(model: Wavenet, path, training: dict | None = None) -> None:
    """Write {format, config, state_dict, versions, training} atomically (torch.save)."""
    from msgpp.enhance.weights_file import versions
    from msgpp.files import atomic_path

    package = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {key: value.detach().cpu().clone() for key, value in model.state_dict().items()},
        "versions": {name: str(value) for name, value in versions().items()},  # TorchVersion is not weights_only-safe
        "training": dict(training or {}),
    }
    with atomic_path(path) as temporary:
        torch.save(package, temporary)


def load_checkpoint(path) -> Wavenet:
    """A Wavenet from a checkpoint written by `save_checkpoint` (weights_only loading)."""
    from msgpp.errors import MsgppError

    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: no such Wavenet checkpoint")
    try:
        package = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle/zip errors of a corrupt or foreign file
        raise MsgppError(f"{path}: not a readable Wavenet checkpoint ({type(error).__name__})") from None
    if not isinstance(package, dict) or package.get("format") != FORMAT:
        raise MsgppError(f"{path}: not a Wavenet checkpoint (expected format {FORMAT!r})")
    model = Wavenet(WavenetConfig(**package["config"]))
    try:
        model.load_state_dict(package["state_dict"])
    except RuntimeError as error:
        raise MsgppError(f"{path}: weights do not fit the stored config ({str(error).splitlines()[0]})") from None
    return model.eval()
