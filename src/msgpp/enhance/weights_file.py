"""The enhancer's weights file: the MSG inference file format and its checksums.

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
import logging
import os
import re
from pathlib import Path

import torch

from msgpp.errors import MsgppError, error_text
from msgpp.files import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

FORMAT = "msgpp-enhancer/1"
HASHED_NAME = re.compile(r"^(?P<stem>.+)-(?P<sha>[0-9a-f]{8})\.pt$")


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
    check_file_stem(stem)
    target = Path(folder) / f"{stem}-{sha[:8]}.pt"
    if Path(folder).exists() and not Path(folder).is_dir():
        raise MsgppError(f"{folder}: exists and is not a folder")
    return atomic_write_bytes(target, data)  # a full disk or read-only folder: one line, nothing left


def check_file_stem(stem) -> str:
    """A weights file's stem must be a plain file name: no folder parts, not hidden."""
    if (
        not isinstance(stem, str)
        or not stem.strip()
        or stem.startswith(".")
        or "/" in stem
        or "\\" in stem
        or "\0" in stem
        or len(stem) > 200
    ):
        raise MsgppError(f"--name {stem!r}: expected a plain file name (no '/', not starting with '.')")
    return stem


def load_inference_file(path: str | os.PathLike, sha256: str | None = None) -> dict:
    """Read an inference file with weights_only=True, checking its checksum.

    The checksum is `sha256` when given, else the 8-hex prefix in the file name when it has one.
    """
    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: no such weights file")
    expected = sha256
    if expected is not None and (not isinstance(expected, str) or not re.fullmatch(r"[0-9a-fA-F]{8,64}", expected)):
        raise MsgppError(f"sha256 {expected!r}: expected 8 to 64 hex digits of the file's SHA-256 (or None)")
    if expected is None and (match := HASHED_NAME.match(path.name)):
        expected = match.group("sha")
    if expected is not None:
        actual = sha256_file(path)
        if not actual.startswith(expected.lower()):
            raise MsgppError(
                f"{path}: checksum mismatch (expected {expected}, file has {actual[: len(expected)]}); "
                "the file is corrupt or was replaced"
            )
    elif str(path) not in _WARNED:
        _WARNED.add(str(path))
        log.warning(
            "%s: not verified (no checksum in its name, as in msg-bass-1a2b3c4d.pt, and none given); "
            "only its values are checked",
            path,
        )
    if path.stat().st_size == 0:
        raise MsgppError(f"{path}: empty weights file")
    try:
        package = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad pickle
        raise MsgppError(f"{path}: not a readable weights file ({error_text(error)})") from None
    if not isinstance(package, dict) or package.get("format") != FORMAT:
        found = package.get("format") if isinstance(package, dict) else type(package).__name__
        raise MsgppError(f"{path}: not an msgpp enhancer file (format {found!r})")
    check_package(package, path)
    return package


IMPLAUSIBLE_WEIGHT = 1e6  # trained generator weights stay below ~10; a flipped exponent bit gives 1e30s
_WARNED: set[str] = set()
REQUIRED_KEYS = {"source": str, "sample_rate": int, "generator_config": dict, "state_dict": dict}


def check_package(package: dict, path) -> None:
    """An inference file's fields: present, of the right type, the weights tensors with finite values."""
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(package.get(key), kind) or isinstance(package.get(key), bool):
            raise MsgppError(f"{path}: damaged weights file ({key!r} missing or not a {kind.__name__})")
    if package["sample_rate"] <= 0:
        raise MsgppError(f"{path}: damaged weights file (sample_rate {package['sample_rate']})")
    if not package["state_dict"]:
        raise MsgppError(f"{path}: damaged weights file (no weights in its state_dict)")
    for name, tensor in package["state_dict"].items():
        if not isinstance(tensor, torch.Tensor):
            raise MsgppError(f"{path}: damaged weights file ({name!r} is not a tensor)")
        if tensor.is_floating_point() and tensor.numel():
            if not bool(torch.isfinite(tensor).all()):
                raise MsgppError(f"{path}: damaged weights file ({name!r} holds NaN or Inf values)")
            peak = float(tensor.abs().max())
            if peak > IMPLAUSIBLE_WEIGHT:
                raise MsgppError(
                    f"{path}: damaged weights file ({name!r} holds {peak:.3g}, far beyond any trained "
                    "weight: a flipped bit?)"
                )
