"""Export a generator as a TorchScript graph, for deployment without msgpp or demucs installed
(libtorch in C++, or `torch.jit.load` in Python).

The graph is made for one input shape, (batch, 1, samples): Demucs computes its padding from the
input length in Python, which a trace cannot follow, so the generator is first captured with
torch.export at that shape and the captured program is traced. `msgpp.Enhancer` pads its last
batch when it runs such a graph, so any signal goes through it. The file carries its metadata
(sample rate, segment length, batch size, source, msgpp version) as an extra file "msgpp.json".
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from msgpp.errors import MsgppError, error_text
from msgpp.files import atomic_path

METADATA_NAME = "msgpp.json"


def export_torchscript(
    generator: nn.Module,
    path: str | os.PathLike,
    *,
    sample_rate: int,
    segment: float,
    batch_size: int,
    source: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `generator` as TorchScript for (batch_size, 1, segment · sample_rate) inputs; atomic."""
    import msgpp

    path = Path(path)
    if path.exists() and not overwrite:
        raise MsgppError(f"{path}: exists; pass --force (overwrite=True) to replace it")
    samples = max(1, round(segment * sample_rate))
    example = torch.zeros(batch_size, 1, samples)
    generator = generator.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values baked into the graph
        program = torch.export.export(generator, (example,))
        traced = torch.jit.trace(program.module(), example, check_trace=False)
    metadata = {
        "format": "msgpp-torchscript/1",
        "sample_rate": int(sample_rate),
        "segment_samples": samples,
        "batch_size": int(batch_size),
        "source": source,
        "msgpp": msgpp.__version__,
        "torch": torch.__version__,
    }
    with atomic_path(path) as temporary:
        torch.jit.save(traced, temporary, _extra_files={METADATA_NAME: json.dumps(metadata)})
    return path


def load_torchscript(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.jit.ScriptModule, dict]:
    """(graph, metadata) of a file written by export_torchscript."""
    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: no such TorchScript file")
    extra = {METADATA_NAME: ""}
    try:
        graph = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        metadata = json.loads(extra[METADATA_NAME])
    except (RuntimeError, ValueError) as error:
        raise MsgppError(f"{path}: not an msgpp TorchScript file ({error_text(error, 300)})") from None
    return graph.eval(), metadata


def enhancer_from_torchscript(path: str | os.PathLike, **options):
    """An Enhancer running an exported graph; its segment and batch size are the graph's own."""
    from msgpp.enhance.enhancer import DEFAULT_OVERLAP, Enhancer

    graph, metadata = load_torchscript(path, options.get("device") or "cpu")
    rate = metadata["sample_rate"]
    options.update(segment=metadata["segment_samples"] / rate, batch_size=metadata["batch_size"])
    options.setdefault("overlap", min(DEFAULT_OVERLAP, options["segment"] / 2))
    return Enhancer(graph, rate, source=metadata.get("source"), **options)


def max_difference(generator: nn.Module, graph: nn.Module, batch_size: int, samples: int, seed: int = 0) -> float:
    """Largest absolute difference between the module and its graph on seeded random input."""
    noise = torch.randn(batch_size, 1, samples, generator=torch.Generator().manual_seed(seed)) * 0.1
    with torch.no_grad():
        return float((generator.eval()(noise) - graph(noise)).abs().max())
