"""The "wavenet" separator: msgpp's PyTorch Wavenet (model.py) behind the separator interface.

Mono 16 kHz: stereo input is averaged and the estimates are duplicated back to the mixture's
channels; "other" is the mixture minus the network's sources. Weights: a msgpp checkpoint (`.pt`)
or an upstream Keras file (`.hdf5`, converted on load by keras_weights.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from msgpp.constants import SOURCES
from msgpp.errors import MsgppError
from msgpp.separators.base import Separator, WeightsInfo
from msgpp.separators.wavenet.model import SAMPLE_RATE, Wavenet, load_checkpoint, save_checkpoint, separate_mono


class WavenetSeparator(Separator):
    """Wavenet behind msgpp's separator interface: mono 16 kHz, sources in MUSDB order."""

    name = "wavenet"
    family = "waveform"
    description = "Wavenet (Lluís, Pons & Serra 2019), PyTorch port; mono 16 kHz, other = mixture − rest"
    trainer = "msgpp.separators.wavenet.train:train_wavenet"
    default_sample_rate = SAMPLE_RATE
    # Fragments of this many outputs per network call; see `separate_mono`.
    target_field_length: int = 16001
    batch_size = 4

    def __init__(self, model: Wavenet, weights: WeightsInfo | None = None):
        config = model.config
        names = set(config.sources) | {config.residual_source}
        ordered = tuple(s for s in SOURCES if s in names) + tuple(sorted(names - set(SOURCES)))
        super().__init__(model, weights, sample_rate=config.sample_rate, sources=ordered, audio_channels=1)

    @classmethod
    def load(cls, weights=None, device="cpu") -> WavenetSeparator:
        from msgpp.separators.weights import fingerprint, shipped_folder, verify_files

        path = Path(weights) if weights is not None else shipped_folder(cls.name)
        if path.is_dir():
            candidates = sorted(path.glob("*.pt")) + sorted(path.glob("*.hdf5")) + sorted(path.glob("*.h5"))
            if len(candidates) != 1:
                found = ", ".join(c.name for c in candidates) or "none"
                raise MsgppError(f"{path}: expected one Wavenet weights file (.pt or .hdf5), found {found}")
            path = candidates[0]
        elif not path.exists():
            raise MsgppError(f"{path}: no such Wavenet weights file or folder")
        hashes = verify_files([path])
        if path.suffix in (".hdf5", ".h5"):
            from msgpp.separators.wavenet.keras_weights import load_keras_wavenet

            model = load_keras_wavenet(path)
        else:
            model = load_checkpoint(path)
        info = WeightsInfo(str(path), fingerprint(hashes), (path.name,))
        return cls(model, info).to(device)

    def forward_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) → (batch, sources, 1, samples); each chunk zero-padded by half a
        receptive field at both ends, as upstream pads a whole song."""
        config = self.model.config
        half = (config.receptive_field - 1) // 2 + config.edge_context
        pad = config.target_padding + config.edge_context
        out = self.model(F.pad(chunks[:, 0], (half, half)))[..., pad : pad + chunks.shape[-1]]
        return self._with_residual(chunks[:, 0], out)[:, :, None]

    def _overlap_add(self, audio: np.ndarray) -> np.ndarray:
        # A Wavenet output sample depends on a fixed window of input: fragments cut from the whole
        # padded song with that much context are exact, so no crossfade is needed.
        estimates = separate_mono(
            self.model,
            torch.from_numpy(audio[0]).to(self.device),
            target_field_length=self.target_field_length,
            batch_size=self.batch_size,
        )
        return np.stack([estimates[source].cpu().numpy()[None] for source in self.sources]).astype(np.float32)

    def _with_residual(self, mixture: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """(batch, n, samples) network outputs → (batch, sources, samples) in `self.sources` order."""
        config = self.model.config
        by_name = {source: out[:, i] for i, source in enumerate(config.sources)}
        by_name[config.residual_source] = mixture - out.sum(dim=1)
        return torch.stack([by_name[source] for source in self.sources], dim=1)

    def training_loss(self, mixture: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Upstream's loss: Σ over the network's sources of the mean absolute error, on the
        (padded) target field of (batch, 1, samples) mixtures; targets (batch, sources, 1, samples)."""
        config = self.model.config
        out = self.model(mixture[:, 0])
        start = (config.receptive_field - 1) // 2 - config.target_padding
        target = targets[:, :, 0, start : start + out.shape[-1]]
        loss = 0.0
        for i, source in enumerate(config.sources):
            loss = loss + F.l1_loss(out[:, i], target[:, self.sources.index(source)])
        return loss

    def save_weights(self, folder, training: dict | None = None) -> WeightsInfo:
        """Write `wavenet-<sha8>.pt` (config, weights, versions, training facts) and SHA256SUMS."""
        from msgpp.files import sha256_file
        from msgpp.separators.weights import fingerprint, verify_files, write_checksums

        folder = Path(folder)
        staging = folder / "wavenet.pt"
        save_checkpoint(self.model, staging, training)
        final = folder / f"wavenet-{sha256_file(staging)[:8]}.pt"
        staging.replace(final)
        write_checksums(folder, [final])
        return WeightsInfo(str(final), fingerprint(verify_files([final])), (final.name,))
