"""Weight files: the MSG inference file format, checksums, and shipped model names.

An inference file is a plain dict saved with torch.save and read with weights_only=True:
    format            "msgpp-enhancer/1"
    source            "bass" | "drums" | "vocals" | "other" | anything the trainer named
    sample_rate       the generator's rate (16000 in the paper)
    generator_config  msgpp.models.generator.Generator's constructor arguments
    state_dict        the generator's weights (tensors)
    loss_weights      the frozen loss-balancing weights of the run that made it
    versions          msgpp / torch / lightning versions that wrote it
    training          free-form facts: data seed, steps, separators ...
Files are named `<stem>-<first 8 hex of sha256>.pt` (demucs' habit), and the loader checks that
prefix, so a corrupt or swapped file is refused.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import torch

from msgpp.errors import MsgppError

FORMAT = "msgpp-enhancer/1"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
_HASHED_NAME = re.compile(r"^(?P<stem>.+)-(?P<sha>[0-9a-f]{8})\.pt$")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    import msgpp

    found = {"msgpp": msgpp.__version__, "torch": str(torch.__version__)}  # TorchVersion fails weights_only
    try:
        import lightning

        found["lightning"] = lightning.__version__
    except ImportError:
        pass
    return found


def save_inference_file(
    folder: str | os.PathLike,
    stem: str,
    *,
    source: str,
    sample_rate: int,
    generator_config: dict,
    state_dict: dict,
    loss_weights: dict | None = None,
    training: dict | None = None,
) -> Path:
    """Write `<folder>/<stem>-<sha8>.pt` atomically and return its path."""
    package = {
        "format": FORMAT,
        "source": source,
        "sample_rate": int(sample_rate),
        "generator_config": dict(generator_config),
        "state_dict": {key: value.detach().cpu().contiguous() for key, value in state_dict.items()},
        "loss_weights": {key: float(value) for key, value in (loss_weights or {}).items()},
        "versions": versions(),
        "training": dict(training or {}),
    }
    buffer = io.BytesIO()
    torch.save(package, buffer)
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}-{sha[:8]}.pt"
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)
    return target


def load_inference_file(path: str | os.PathLike, sha256: str | None = None) -> dict:
    """Read an inference file with weights_only=True, checking its checksum.

    The checksum is `sha256` when given, else the 8-hex prefix in the file name when it has one.
    """
    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: no such weights file")
    expected = sha256
    if expected is None and (match := _HASHED_NAME.match(path.name)):
        expected = match.group("sha")
    if expected is not None:
        actual = sha256_file(path)
        if not actual.startswith(expected.lower()):
            raise MsgppError(f"{path}: checksum mismatch (expected {expected}, file has {actual[:len(expected)]}); the file is corrupt or was replaced")
    try:
        package = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad pickle
        raise MsgppError(f"{path}: not a readable weights file ({str(error).splitlines()[0][:200]})") from None
    if not isinstance(package, dict) or package.get("format") != FORMAT:
        raise MsgppError(f"{path}: not an msgpp enhancer file (format {package.get('format') if isinstance(package, dict) else type(package).__name__!r})")
    return package


def pretrained_names() -> dict[str, Path]:
    """{name: path} of the shipped enhancer weights (msg-<name>-<sha8>.pt in msgpp/pretrained)."""
    names = {}
    for path in sorted(PRETRAINED_DIR.glob("msg-*.pt")):
        match = _HASHED_NAME.match(path.name)
        if match:
            names[match.group("stem").removeprefix("msg-")] = path
    return names


def resolve_pretrained(name_or_path: str | os.PathLike) -> Path:
    """A shipped name ("bass") or a path to an inference file."""
    path = Path(name_or_path)
    if path.suffix == ".pt" or path.exists():
        if not path.is_file():
            raise MsgppError(f"{path}: no such weights file")
        return path
    names = pretrained_names()
    if str(name_or_path) not in names:
        shipped = ", ".join(sorted(names)) or "none"
        raise MsgppError(f"unknown enhancer {str(name_or_path)!r}: not a file, and not a shipped name (shipped: {shipped})")
    return names[str(name_or_path)]
