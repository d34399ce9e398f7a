"""ONNX export of a generator, and ONNX Runtime as the Enhancer's CPU backend.

Why a second backend: on the CPU, PyTorch's oneDNN convolutions re-lay-out the deep layers'
weights (100 MB for the paper generator's innermost decoder conv) on every call, so those layers
run far below the machine's GEMM speed; ONNX Runtime packs the weights once per session. On the
2-core development machine msgpp's defaults ran the paper generator 1.54× faster in ONNX Runtime
than in PyTorch eager (`python benchmarks/bench_enhancer.py`), with outputs equal to ~1e-7.

A graph is exported by torch.onnx (the dynamo exporter) for ONE segment length and ANY batch
size: Demucs computes its padding from the input length in Python, which the graph cannot
follow, and `OverlapAdd` hands the model segments of exactly one length anyway. The file carries
its metadata (format, sample rate, segment length, source, versions) as the ONNX metadata entry
"msgpp". Graphs the Enhancer makes for itself are cached on disk (msgpp.files.cache_dir()), keyed by the
generator's class, configuration, weights and the versions involved, so the export (several
seconds) is paid once per model and segment length.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msgpp.errors import MsgppError, error_text, first_line
from msgpp.files import atomic_write_bytes, cache_dir

FORMAT = "msgpp-onnx/1"
METADATA_KEY = "msgpp"
INPUT_NAME, OUTPUT_NAME = "audio", "enhanced"
log = logging.getLogger(__name__)


def available() -> bool:
    """Whether onnxruntime and the exporter's packages (onnx, onnxscript) import here."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


# -- export ------------------------------------------------------------------------------------
def export_onnx(
    generator: nn.Module,
    path: str | os.PathLike | None = None,
    *,
    sample_rate: int,
    segment_samples: int,
    source: str | None = None,
    overwrite: bool = False,
) -> bytes:
    """The generator as an ONNX model (bytes) for (any batch, 1, segment_samples) inputs.

    With `path`, the model is also written there, atomically."""
    import onnx

    import msgpp

    if path is not None and Path(path).exists() and not overwrite:
        raise MsgppError(f"{path}: exists; pass --force (overwrite=True) to replace it")
    generator = generator.eval()
    example = torch.zeros(2, 1, int(segment_samples))
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                generator,
                (example,),
                None,
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"audio": {0: batch}},
                verbose=False,
            )
    except Exception as error:  # the exporter raises many types; all mean "this module does not export"
        raise MsgppError(
            f"cannot export this generator to ONNX ({first_line(error, 200)}); use backend='torch'"
        ) from None
    model = program.model_proto
    metadata = {
        "format": FORMAT,
        "sample_rate": int(sample_rate),
        "segment_samples": int(segment_samples),
        "source": source,
        "msgpp": msgpp.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
    }
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    data = model.SerializeToString()
    if path is not None:
        atomic_write_bytes(path, data)
    return data


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter reports progress and skipped torchvision ops on stdout, warnings and logging."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# -- running -----------------------------------------------------------------------------------
class OnnxGenerator:
    """An exported graph in an ONNX Runtime session: (batch, 1, segment_samples) tensors in and out.

    `threads`: ONNX Runtime's intra-op threads (default: torch.get_num_threads(), so `--threads`
    and torch.set_num_threads govern both backends alike)."""

    def __init__(self, model: bytes | str | os.PathLike, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        # ONNX Runtime's memory arena stays on: without it every call maps and faults in its
        # activation buffers afresh, 22% slower here for ~0.1-0.2 GB less peak memory.
        options.log_severity_level = 3  # errors only
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types
            name = "model" if isinstance(model, bytes) else str(model)
            raise MsgppError(f"{name}: not a loadable ONNX model ({error_text(error, 300)})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.metadata = json.loads(raw) if raw else {}
        if self.metadata.get("format") != FORMAT:
            name = "model" if isinstance(model, bytes) else str(model)
            raise MsgppError(f"{name}: not an msgpp ONNX graph (no '{METADATA_KEY}' metadata of format {FORMAT})")
        self.sample_rate = int(self.metadata["sample_rate"])
        self.segment_samples = int(self.metadata["segment_samples"])

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 3 or audio.shape[1] != 1 or audio.shape[2] != self.segment_samples:
            raise ValueError(f"this graph takes (batch, 1, {self.segment_samples}) inputs, got {tuple(audio.shape)}")
        array = np.ascontiguousarray(audio.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


def load_onnx(path: str | os.PathLike, threads: int | None = None) -> OnnxGenerator:
    """A graph written by export_onnx (or `msgpp export-graph --out X.onnx`)."""
    if not Path(path).is_file():
        raise MsgppError(f"{path}: no such ONNX file")
    return OnnxGenerator(path, threads)


def onnx_generator_for(
    generator: nn.Module, *, sample_rate: int, segment_samples: int, threads: int | None = None
) -> OnnxGenerator:
    """The generator's graph for this segment length, from the disk cache or freshly exported."""
    path = cache_dir() / "onnx" / f"{graph_key(generator, segment_samples)}.onnx"
    if path.is_file():
        try:
            return OnnxGenerator(path, threads)
        except MsgppError:  # a damaged cache entry: export again
            log.warning("%s: unreadable cached graph, exporting again", path)
    log.info(
        "exporting the generator to ONNX for %d-sample segments (once; cached in %s)", segment_samples, path.parent
    )
    data = export_onnx(generator, sample_rate=sample_rate, segment_samples=segment_samples)
    try:
        atomic_write_bytes(path, data)
    except MsgppError as error:  # a read-only home or a full disk: run from memory, export again next time
        log.warning("cannot cache the ONNX graph (%s)", error)
    return OnnxGenerator(data, threads)


def graph_key(generator: nn.Module, segment_samples: int) -> str:
    """sha256 over what decides the graph: class, configuration, weights, segment length and the
    versions of the exporter and msgpp."""
    import onnx
    import onnxscript

    import msgpp

    digest = hashlib.sha256()
    kind = type(generator)
    header = {
        "class": f"{kind.__module__}.{kind.__qualname__}",
        "config": getattr(generator, "config", None),
        "segment_samples": int(segment_samples),
        "msgpp": msgpp.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "format": FORMAT,
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in generator.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]
