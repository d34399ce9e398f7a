"""The separator interface: what every separator shares, whatever its model.

A separator has a name, a family ("waveform", "spectrogram" or "hybrid"), a native sample rate,
a channel count and its sources. `separate(mixture, sample_rate)` takes (channels, samples) audio
at any rate and channel count and returns {source: (channels, samples)} in the mixture's own rate,
channel count and length. Around the model, this class does everything the families share:

    mixture ─ to the model's channels ─ resample to the native rate ─ overlapping chunks, batched
            ─ model ─ crossfaded overlap-add ─ resample back ─ back to the mixture's channels

so a family module only builds its network and implements `forward_chunks` (and, when it can be
trained here, `training_loss`). A separator is an `nn.Module`: `.to(device)` moves its model, and
Lightning moves it like any other submodule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from msgpp.constants import MUSDB_SAMPLE_RATE, SOURCES
from msgpp.errors import MsgppError

FAMILIES = ("waveform", "spectrogram", "hybrid")


@dataclass(frozen=True)
class WeightsInfo:
    """Where a separator's weights came from and their fingerprint.

    `sha256` covers every file the weights consist of (see weights.fingerprint), so the estimate
    cache can key on it: a changed file gives a new id.
    """

    location: str  # a folder, a file, or an upstream name ("hdemucs_mmi") when downloaded
    sha256: str
    files: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        from msgpp.separators.cache import weights_id

        return weights_id(self.sha256)


class WeightsReaders(NamedTuple):
    """How a family reads weights that are a local path or an upstream name (Separator.weights_readers).
    The loaders return the family's constructor arguments, (model, WeightsInfo, ...)."""

    local_info: Callable[[Path], WeightsInfo]  # checksums and fingerprint, no model
    upstream_info: Callable[[str], WeightsInfo]
    load_local: Callable[[Path], tuple]
    load_upstream: Callable[[str], tuple]


class Separator(nn.Module):
    """Base class of all separators. Subclasses set the class attributes and implement
    `load` (from weights) and `forward_chunks` (the model on a batch of chunks)."""

    # Registry facts, readable without loading weights (`msgpp separators list`).
    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_sample_rate: ClassVar[int] = MUSDB_SAMPLE_RATE
    default_sources: ClassVar[tuple[str, ...]] = SOURCES
    # `msgpp separators train NAME`: "module:function" of this family's training recipe, called as
    # function(root, out, **options) (plus name=NAME when it takes a name); its keyword defaults
    # are the command's. "": msgpp cannot train it.
    trainer: ClassVar[str] = ""
    # Chunking defaults (seconds); a family may override them from its model.
    segment_seconds: float = 10.0
    overlap_seconds: float = 1.0
    batch_size: int = 1

    def __init__(
        self,
        model: nn.Module,
        weights: WeightsInfo | None = None,
        *,
        sample_rate: int | None = None,
        sources: tuple[str, ...] | list[str] | None = None,
        audio_channels: int = 2,
    ):
        super().__init__()
        if self.family not in FAMILIES:
            raise TypeError(f"{type(self).__name__}.family must be one of {FAMILIES}, got {self.family!r}")
        self.model = model
        self.weights = weights
        self.sample_rate = int(sample_rate or self.default_sample_rate)
        self.sources = tuple(sources or self.default_sources)
        self.audio_channels = int(audio_channels)
        self.eval()

    # -- to implement ------------------------------------------------------------------------
    @classmethod
    def load(cls, weights: str | Path | None = None, device: str | torch.device = "cpu") -> Separator:
        """Build the separator from weights: a local folder/file in the upstream format, or (when
        the family supports it and the machine is online) an upstream name. None: the shipped ones.
        A family with `weights_readers` gets this for free."""
        readers = cls.weights_readers()
        if readers is None:
            raise NotImplementedError
        where = cls.locate_weights(weights)
        loaded = readers.load_local(where) if isinstance(where, Path) else readers.load_upstream(where)
        return cls(*loaded).to(device)

    @classmethod
    def weights_readers(cls) -> WeightsReaders | None:
        """For a family whose weights are a local path or an upstream name that its package
        downloads: the four functions that read them (then `load` and `weights_info` need no
        override). None: the family overrides `load` itself."""
        return None

    @classmethod
    def locate_weights(cls, weights: str | Path | None = None) -> Path | str:
        """Where to read weights from: an existing local Path (None: the shipped folder), or a
        str that names upstream weights to download. A missing path is an error, not a name."""
        from msgpp.errors import MsgppError
        from msgpp.separators.weights import looks_like_path, shipped_folder

        location = shipped_folder(cls.name) if weights is None else weights
        if Path(location).exists():
            return Path(location)
        if looks_like_path(str(location)):
            raise MsgppError(f"{location}: no such weights file or folder")
        return str(location)

    @classmethod
    def weights_info(cls, weights: str | Path | None = None) -> WeightsInfo:
        """The weights' fingerprint without building the model (so `msgpp separate` can skip a
        fully cached separator cheaply). From `weights_readers` when the family has them; else
        families override it, and this fallback loads the model."""
        readers = cls.weights_readers()
        if readers is None:
            return cls.load(weights).weights
        where = cls.locate_weights(weights)
        return readers.local_info(where) if isinstance(where, Path) else readers.upstream_info(where)

    def forward_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """(batch, audio_channels, samples) at the native rate → (batch, sources, audio_channels, samples)."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        parameter = next(self.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    @property
    def weights_id(self) -> str:
        if self.weights is None:
            raise ValueError(f"separator {self.name!r} has no weights fingerprint (built, not loaded)")
        return self.weights.id

    @torch.no_grad()
    def separate(self, mixture, sample_rate: int) -> dict[str, np.ndarray]:
        """{source: float32 (channels, samples)} for a (channels, samples) or (samples,) mixture.

        The estimates have the mixture's rate, channel count and length. Memory for the model is
        bounded by one batch of chunks, whatever the song's length.
        """
        from msgpp.audio import convert_channels, resample
        from msgpp.errors import check_number

        sample_rate = check_number("sample_rate", sample_rate, minimum=1, integer=True)
        mixture = _mixture_array(mixture)
        channels, length = mixture.shape
        # Models need some context (an STFT frame, a receptive field): a very short mixture is
        # separated padded with silence to MIN_SECONDS, and the estimates are cut back.
        minimum = max(1, int(np.ceil(MIN_SECONDS * sample_rate)))
        padded = np.pad(mixture, ((0, 0), (0, minimum - length))) if length < minimum else mixture
        native = resample(convert_channels(padded, self.audio_channels), sample_rate, self.sample_rate)
        native = np.ascontiguousarray(native, dtype=np.float32)
        was_training = self.training
        self.eval()
        try:
            estimates = self._overlap_add(native)  # (sources, audio_channels, native samples)
        finally:
            self.train(was_training)
        result = {}
        for index, source in enumerate(self.sources):
            estimate = resample(estimates[index], self.sample_rate, int(sample_rate))
            estimate = convert_channels(np.asarray(estimate, dtype=np.float32), channels)
            result[source] = _fit_length(estimate, length)
            if not np.isfinite(result[source]).all():
                raise MsgppError(f"{self.name}: the model produced NaN or Inf samples for {source}")
        return result

    def _overlap_add(self, audio: np.ndarray) -> np.ndarray:
        """Chunks of `segment_seconds` overlapping by `overlap_seconds`, crossfaded; the output is
        normalised by the summed window, so any layout of chunks reconstructs the right gain."""
        from msgpp.overlap_add import crossfade, segment_starts

        length = audio.shape[-1]
        # A song shorter than one chunk goes through whole (no zero padding to compute).
        segment = min(length, max(1, int(round(self.segment_seconds * self.sample_rate))))
        overlap = min(int(round(self.overlap_seconds * self.sample_rate)), segment // 2)
        starts = segment_starts(length, segment, overlap)
        fade_in, fade_out = crossfade(overlap)
        output = np.zeros((len(self.sources), audio.shape[0], length), np.float32)
        total = np.zeros(length, np.float32)
        for first in range(0, len(starts), max(1, self.batch_size)):
            batch_starts = starts[first : first + max(1, self.batch_size)]
            chunks = np.zeros((len(batch_starts), audio.shape[0], segment), np.float32)
            for row, start in enumerate(batch_starts):
                piece = audio[:, start : start + segment]
                chunks[row] = piece
            result = self.forward_chunks(torch.from_numpy(chunks).to(self.device))
            expected = (len(batch_starts), len(self.sources), audio.shape[0], segment)
            if tuple(result.shape) != expected:
                raise RuntimeError(f"{self.name}: forward_chunks returned {tuple(result.shape)}, expected {expected}")
            result = result.float().cpu().numpy()
            for row, start in enumerate(batch_starts):
                index = first + row
                window = np.ones(segment, np.float32)
                if overlap and index > 0:
                    window[:overlap] = fade_in
                if overlap and index < len(starts) - 1:
                    window[-overlap:] = fade_out
                used = min(segment, length - start)
                output[..., start : start + used] += result[row, ..., :used] * window[:used]
                total[start : start + used] += window[:used]
        return output / np.maximum(total, 1e-8)

    # -- training hooks (families that can be trained here) -----------------------------------
    def training_loss(self, mixture: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss for (batch, channels, samples) mixtures and (batch, sources, channels, samples) targets."""
        raise NotImplementedError(f"{self.name} cannot be trained with msgpp")

    def save_weights(self, folder: str | Path, training: dict | None = None) -> WeightsInfo:
        """Write the weights in the upstream project's format into `folder`."""
        raise NotImplementedError(f"{self.name} cannot save weights")


MIN_SECONDS = 0.5  # the shortest audio handed to a model; shorter mixtures are zero-padded to it


def _mixture_array(mixture) -> np.ndarray:
    """A (channels, samples) float32 copy of a mixture: arrays and tensors of floats, or of
    integer PCM (scaled to [-1, 1) by the type's full scale); MsgppError for anything else."""
    from msgpp.errors import InvalidValue

    if isinstance(mixture, torch.Tensor):
        mixture = mixture.detach().cpu().numpy()
    if not isinstance(mixture, (np.ndarray, list, tuple)):
        raise InvalidValue(f"mixture must be a NumPy array or torch tensor of samples, got {type(mixture).__name__}")
    array = np.asarray(mixture)
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        array = array.astype(np.float64) / float(np.iinfo(array.dtype).max + 1)
    elif not np.issubdtype(array.dtype, np.floating):
        raise InvalidValue(f"mixture must hold float or integer PCM samples, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise InvalidValue(f"mixture must be (samples,) or (channels, samples), got shape {array.shape}")
    if array.shape[-1] == 0:
        raise InvalidValue("cannot separate an empty mixture")
    if array.shape[0] > 64:
        raise InvalidValue(
            f"mixture has {array.shape[0]} channels; pass (channels, samples) "
            "(soundfile returns (samples, channels): transpose it)"
        )
    if not np.isfinite(array).all():
        raise InvalidValue("mixture contains NaN or Inf samples")
    return np.ascontiguousarray(array, dtype=np.float32)


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad the last axis to `length` (resampling may be off by a sample)."""
    if audio.shape[-1] >= length:
        return np.ascontiguousarray(audio[..., :length], dtype=np.float32)
    return np.pad(audio, ((0, 0), (0, length - audio.shape[-1]))).astype(np.float32)
