"""msgpp.Enhancer: the public inference API.

    enhancer = msgpp.Enhancer.from_pretrained("bass")     # a shipped name, or a weights file
    enhanced = enhancer(estimate, sample_rate)            # NumPy or torch, mono or multichannel
    enhancer.enhance_file("bass.wav", "bass.enhanced.wav")

Audio is (channels, samples) or (samples,), at any sample rate; the result has the same shape,
rate and type. Inside, each channel is peak-normalised on its own (as the paper's input was),
resampled to the model's rate, cut into overlapping segments that are batched through the
generator as mono signals (msgpp.overlap_add), resampled back (_RateBridge), and the channel's
gain is undone so levels are kept. Files are streamed block by block (msgpp.enhance.jobs), so a
long file never sits whole in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from msgpp.audio import channel_gains, checked_signal
from msgpp.constants import BACKENDS
from msgpp.enhance.jobs import FileJob, plan_file, progress_bar, read_blocks, write_blocks
from msgpp.errors import InvalidValue, MsgppError, check_number, error_text, first_line
from msgpp.overlap_add import OverlapAdd

# 5-s segments in pairs (a stereo segment per forward) were among the fastest CPU settings measured
# (benchmarks/bench_enhancer.py) for both backends: 10 s of audio per forward amortises the deep
# layers' weights (1-s windows are the slowest choice), and larger batches only add activation
# memory (about 0.4 GB per 5-s row for the paper generator).
DEFAULT_SEGMENT = 5.0  # seconds at the model's rate
DEFAULT_OVERLAP = 0.5  # seconds shared by neighbouring segments (¼ margin each side, ½ crossfade)
DEFAULT_BATCH_SIZE = 2  # mono segments per forward pass
DEFAULT_BACKEND = "auto"
_RESAMPLE_QUALITY = "VHQ"


class Enhancer:
    """Wraps a generator that maps (batch, 1, samples) → (batch, 1, samples) at `sample_rate`.

    device      where the generator runs ("cpu", "cuda", ...; default: CUDA when available)
    segment     seconds per segment at the model's rate; None runs each signal in one piece
    overlap     seconds shared by neighbouring segments (at most half a segment)
    batch_size  mono segments per forward pass (channels and segments are batched together)
    full_band   keep the input's content above the model's Nyquist frequency (8 kHz for a 16 kHz
                model), which the model never sees, and add it back unchanged; False returns
                only the model's band
    backend     "torch" (PyTorch eager), "onnxruntime" (the generator exported to ONNX once per
                segment length and cached, then run by ONNX Runtime: 1.5x faster than PyTorch on a
                2-core CPU, same output to ~1e-7), or "auto": onnxruntime for an msgpp generator on the CPU when
                onnxruntime is installed, else torch (segment=None always runs PyTorch: a graph
                is made for one segment length)
    """

    def __init__(
        self,
        generator: nn.Module,
        sample_rate: int = 16000,
        *,
        device: str | torch.device | None = None,
        segment: float | None = DEFAULT_SEGMENT,
        overlap: float = DEFAULT_OVERLAP,
        batch_size: int = DEFAULT_BATCH_SIZE,
        full_band: bool = True,
        source: str | None = None,
        backend: str = DEFAULT_BACKEND,
    ):
        sample_rate = check_number("sample_rate", sample_rate, minimum=1, integer=True)
        if segment is not None:
            segment = check_number("segment", segment, above=0)
        overlap = check_number("overlap", overlap, minimum=0, maximum=segment / 2 if segment is not None else None)
        batch_size = check_number("batch_size", batch_size, minimum=1, integer=True)
        if not isinstance(generator, nn.Module):
            raise InvalidValue(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
        if backend not in BACKENDS:
            raise MsgppError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        try:
            self.device = torch.device(
                device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
            )
        except (RuntimeError, TypeError) as error:
            raise MsgppError(f"unknown device {device!r} ({first_line(error)})") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise MsgppError(f"device {device!r} asked for, but CUDA is not available here; use device='cpu'")
        self._generator = generator.to(self.device).eval()
        self._rebuild = None  # set by from_pretrained: rebuilds a released generator from its file
        self._weights_file: Path | None = None  # set by from_pretrained
        self._weights_sha256: str | None = None
        self._fixed_batch = isinstance(generator, torch.jit.ScriptModule)  # traced for one batch size
        self.sample_rate = int(sample_rate)
        self.segment, self.overlap, self.batch_size = segment, float(overlap), int(batch_size)
        self.full_band = bool(full_band)
        self.source = source
        self.backend = self._resolve_backend(backend)
        self._graphs: dict[int, object] = {}  # segment samples → OnnxGenerator (onnxruntime backend)

    def _resolve_backend(self, backend: str) -> str:
        from msgpp.enhance import onnx_backend
        from msgpp.models.generator import Generator

        if backend == "onnxruntime":
            if self.device.type != "cpu":
                raise MsgppError(f"backend 'onnxruntime' runs on the CPU only; use backend='torch' on {self.device}")
            if not onnx_backend.available():
                raise MsgppError(
                    "backend 'onnxruntime' needs the packages onnxruntime, onnx and onnxscript (pip install them)"
                )
            return backend
        if backend == "auto":
            cpu_generator = self.device.type == "cpu" and isinstance(self.generator, Generator)
            return "onnxruntime" if cpu_generator and onnx_backend.available() else "torch"
        return backend

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, sha256: str | None = None, **options) -> Enhancer:
        """A shipped enhancer by source name ("bass", "drums", "vocals"), a published one
        ("paper-bass", "paper-drums", "paper-vocals": the MSG authors' generators, downloaded and
        converted on first use, see msgpp.enhance.published) or an inference file.

        The file is read with weights_only=True and checked against `sha256`, or else against
        the 8-hex prefix in its name (`msg-bass-1a2b3c4d.pt`). `options` are the constructor's.
        """
        from msgpp.enhance.pretrained import resolve_pretrained
        from msgpp.enhance.weights_file import load_inference_file
        from msgpp.files import sha256_file
        from msgpp.models.generator import build_generator

        path = resolve_pretrained(name_or_path)
        package = load_inference_file(path, sha256=sha256)

        def build(package: dict) -> nn.Module:
            try:
                generator = build_generator(package["generator_config"])
                generator.load_state_dict(package["state_dict"])
            except Exception as error:  # noqa: BLE001 - a bad config or state dict raises many types
                raise MsgppError(f"{path}: weights do not fit the generator ({error_text(error)})") from None
            return generator

        enhancer = cls(build(package), package["sample_rate"], source=package.get("source"), **options)
        del package  # nothing may keep the loaded state dict alive: the module holds the weights
        enhancer._weights_file = Path(path)
        if enhancer.backend == "onnxruntime":
            # The PyTorch copy of the weights can be dropped once the ONNX graph exists and rebuilt
            # from the file if it is needed again (358 MB less for the paper generator); the
            # rebuild must read these very weights, so the file's digest is taken now.
            digest = enhancer._weights_sha256 = sha256_file(path)
            enhancer._rebuild = lambda: build(load_inference_file(path, sha256=digest))
        return enhancer

    @property
    def weights_sha256(self) -> str | None:
        """The sha256 of the weights file this enhancer was loaded from (None for a generator
        handed over in memory); taken when the file was loaded or on first use."""
        if self._weights_sha256 is None and self._weights_file is not None:
            from msgpp.files import sha256_file

            self._weights_sha256 = sha256_file(self._weights_file)
        return self._weights_sha256

    def result_settings(self) -> dict:
        """What shapes this enhancer's output besides the input: the weights and the segmenting.
        (The batch size, device, threads and backend change only the speed, or the output within
        ~1e-7.) `msgpp enhance` records it to recognise its own outputs when it resumes."""
        return {
            "weights_sha256": self.weights_sha256,
            "sample_rate": self.sample_rate,
            "segment": self.segment,
            "overlap": self.overlap,
            "full_band": self.full_band,
        }

    @property
    def generator(self) -> nn.Module:
        """The PyTorch generator (rebuilt from its weights file if it was released)."""
        if self._generator is None:
            self._generator = self._rebuild().to(self.device).eval()
        return self._generator

    def __repr__(self) -> str:
        return (
            f"Enhancer(source={self.source!r}, sample_rate={self.sample_rate}, device={str(self.device)!r}, "
            f"backend={self.backend!r}, segment={self.segment}, overlap={self.overlap}, batch_size={self.batch_size})"
        )

    # -- in memory ----------------------------------------------------------------------------
    def __call__(self, audio, sample_rate: int):
        """Enhance (channels, samples) or (samples,) audio; same shape, rate and type back.

        NumPy arrays come back as float32 arrays; torch tensors as tensors of their own dtype
        and device. Values are floats in [-1, 1] by convention (larger values are fine).
        """
        sample_rate = check_number("sample_rate", sample_rate, minimum=1, integer=True)
        if not isinstance(audio, (torch.Tensor, np.ndarray, list, tuple)):
            raise InvalidValue(f"audio must be a NumPy array or torch tensor, got {type(audio).__name__}")
        array, channels_first, is_tensor = checked_signal(audio)
        frames = channels_first.shape[1]
        self._check_length(frames, sample_rate)
        gains = channel_gains(np.abs(channels_first).max(axis=1))
        blocks = self._stream([channels_first], sample_rate, channels_first.shape[0], gains, frames)
        enhanced = np.concatenate(list(blocks), axis=1).reshape(array.shape)
        if is_tensor:
            return torch.from_numpy(enhanced).to(device=audio.device, dtype=audio.dtype)
        return enhanced

    # -- files --------------------------------------------------------------------------------
    def enhance_file(
        self,
        input_path: str | os.PathLike,
        output_path: str | os.PathLike,
        *,
        subtype: str | None = None,
        clip: str = "error",
        overwrite: bool = False,
        progress: bool = False,
    ) -> Path:
        """Enhance one audio file into another, streaming, at the input's rate and channel count.

        The output format follows the output's extension (.wav .flac .ogg .mp3 .aiff); `subtype`
        is PCM_16, PCM_24 or FLOAT (default: the input's depth where the format allows it).
        Formats other than float clip at full scale; `clip` says what happens to a peak above it:
        "error" (stop, nothing written), "clip" (hard clip, logged), "normalize" (scale the
        whole file so its peak is 0.999). The file is written under a temporary name and renamed
        when complete, so an error or interruption never leaves a partial file.
        """
        job = self.plan_file(input_path, output_path, subtype=subtype, clip=clip, overwrite=overwrite)
        return self.run_job(job, progress=progress)

    def plan_file(
        self, input_path, output_path, *, subtype: str | None = None, clip: str = "error", overwrite: bool = False
    ) -> FileJob:
        """Check an input and its output before any model work (msgpp.enhance.jobs.plan_file); the
        CLI plans every file first, so a bad file stops the run before anything is written."""
        job = plan_file(input_path, output_path, subtype=subtype, clip=clip, overwrite=overwrite)
        self._check_length(job.info.frames, job.info.samplerate, str(job.input))
        return job

    def run_job(self, job: FileJob, progress=False) -> Path:
        """Enhance a planned file. `progress`: True for a bar of its own, or a tqdm bar to update."""
        info = job.info
        bar, own_bar = progress_bar(progress, info.frames / info.samplerate, job.input.name)
        try:
            with sf.SoundFile(str(job.input)) as reader:
                blocks = read_blocks(reader, job.input, on_block=lambda n: bar and bar.update(n / info.samplerate))
                enhanced = self._stream(blocks, info.samplerate, info.channels, job.gains, info.frames)
                write_blocks(job, enhanced)
        finally:
            if own_bar and bar:
                bar.close()
        return job.output

    # -- the pipeline -------------------------------------------------------------------------
    def _stream(
        self, blocks: Iterable[np.ndarray], sample_rate: int, channels: int, gains: np.ndarray, frames: int
    ) -> Iterator[np.ndarray]:
        """(channels, k) blocks at `sample_rate` → enhanced blocks, exactly `frames` in all."""
        model_rate = self.sample_rate
        if self.segment is None:  # one piece: the whole signal is one segment
            segment, overlap = max(1, -(-frames * model_rate // sample_rate)), 0
        else:
            segment = max(1, round(self.segment * model_rate))
            overlap = min(round(self.overlap * model_rate), segment // 2)
        # A TorchScript graph (graph_export) was traced for one (batch, samples) shape.
        fixed_batch = self._fixed_batch
        process = self._process
        if self.backend == "onnxruntime" and self.segment is not None:  # a graph per segment length, any batch
            graph = self._graph(segment)

            def process(batch: np.ndarray) -> np.ndarray:
                return graph(torch.from_numpy(batch).unsqueeze(1)).squeeze(1).numpy()

        overlap_add = OverlapAdd(process, channels, segment, overlap, self.batch_size, fixed_batch)
        bridge = _RateBridge(sample_rate, model_rate, channels, self.full_band)
        gains = gains.astype(np.float32)[:, None]
        written = 0

        def finished(enhanced: np.ndarray) -> np.ndarray:
            nonlocal written
            enhanced = enhanced[:, : frames - written] / gains
            written += enhanced.shape[1]
            return enhanced

        for block in blocks:
            out = finished(bridge.back(overlap_add.push(bridge.there(block * gains))))
            if out.shape[1]:
                yield out
        tail = overlap_add.push(bridge.there(np.zeros((channels, 0), np.float32), last=True))
        out = finished(bridge.back(np.concatenate([tail, overlap_add.finish()], axis=1), last=True))
        if written < frames:  # resamplers may round a few samples short
            out = np.concatenate([out, np.zeros((channels, frames - written), np.float32)], axis=1)
        yield out

    def _graph(self, segment: int):
        from msgpp.enhance.onnx_backend import onnx_generator_for

        if segment not in self._graphs:
            self._graphs[segment] = onnx_generator_for(
                self.generator, sample_rate=self.sample_rate, segment_samples=segment
            )
            if self._rebuild is not None:
                self._generator = None  # the graph runs from here on; see from_pretrained
        return self._graphs[segment]

    @torch.inference_mode()
    def _process(self, batch: np.ndarray) -> np.ndarray:
        """(rows, L) mono segments → the generator's (rows, L) output."""
        tensor = torch.from_numpy(batch).to(self.device).unsqueeze(1)
        return self.generator(tensor).squeeze(1).float().cpu().numpy()

    def _check_length(self, frames: int, sample_rate: int, name: str = "audio") -> None:
        if int(sample_rate) <= 0:
            raise MsgppError(f"{name}: sample rate must be positive, got {sample_rate}")
        if frames == 0:
            raise MsgppError(f"{name}: holds no audio samples")
        if frames * self.sample_rate < sample_rate:
            raise MsgppError(
                f"{name}: too short to enhance ({frames} sample(s) at {sample_rate} Hz is less than "
                f"one sample at the model's {self.sample_rate} Hz)"
            )


class _RateBridge:
    """Streams audio to the model's rate and back (soxr, stateful, so blocks join seamlessly).

    With `full_band`, what the model cannot see — the input's content above the model's
    Nyquist frequency — is added back unchanged: output = up(model(down(x))) + (x − up(down(x))).
    So an identity model gives the input back exactly, at any rate.
    """

    def __init__(self, rate: int, model_rate: int, channels: int, full_band: bool):
        from msgpp.errors import interrupts_deferred

        with interrupts_deferred():  # imported mid-run: see interrupts_deferred
            import soxr

        self.active = int(rate) != int(model_rate)
        self.full_band = full_band and self.active
        if self.active:

            def stream(a, b):
                return soxr.ResampleStream(a, b, channels, dtype="float32", quality=_RESAMPLE_QUALITY)

            self._down, self._up = stream(rate, model_rate), stream(model_rate, rate)
            if self.full_band:
                self._plain_up = stream(model_rate, rate)
        self._inputs = np.zeros((channels, 0), np.float32)  # inputs awaiting their low band
        self._high = np.zeros((channels, 0), np.float32)  # high band awaiting the model's output

    def there(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if not self.active:
            return block
        low = self._down.resample_chunk(np.ascontiguousarray(block.T), last=last).T
        if self.full_band:
            self._inputs = np.concatenate([self._inputs, block], axis=1)
            back = self._plain_up.resample_chunk(np.ascontiguousarray(low.T), last=last).T
            self._high = np.concatenate([self._high, _take(self, "_inputs", back.shape[1]) - back], axis=1)
            if last:  # the round trip rounded a few samples short: they pass through as they are
                self._high = np.concatenate([self._high, _take(self, "_inputs", self._inputs.shape[1])], axis=1)
        return np.ascontiguousarray(low)

    def back(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if not self.active:
            return block
        out = self._up.resample_chunk(np.ascontiguousarray(block.T), last=last).T
        if self.full_band:
            if last and self._high.shape[1] > out.shape[1]:  # samples the resamplers rounded away
                out = np.pad(out, ((0, 0), (0, self._high.shape[1] - out.shape[1])))
            out = out + _take(self, "_high", out.shape[1])
        return out


def _take(owner, name: str, count: int) -> np.ndarray:
    """The first `count` samples of a (channels, n) buffer attribute, zero-padded if short."""
    buffer = getattr(owner, name)
    head, rest = buffer[:, :count], buffer[:, count:]
    setattr(owner, name, rest)
    if head.shape[1] < count:
        head = np.pad(head, ((0, 0), (0, count - head.shape[1])))
    return head
