"""Separator weight folders: where the shipped ones live, checksums, fingerprints, safe loading.

Weights stay in their upstream project's format (demucs `.th` packages and bag `.yaml` files,
open-unmix `<target>.pth` + json). msgpp adds two habits on top, both optional for a folder a user
brings:
  - a `SHA256SUMS` file (the `sha256sum` format) that is checked before anything is loaded;
  - file names carrying the first hex digits of their sha256 (`name-<sha8>.th`, demucs' and
    torch.hub's habit), also checked.
The fingerprint of a separator's weights is one sha256 over the (name, sha256) of every file it
reads, so the estimate cache gets a new key whenever any of them changes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from msgpp.errors import MsgppError, error_text
from msgpp.files import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

CHECKSUMS_NAME = "SHA256SUMS"
ENV_SEPARATORS_DIR = "MSGPP_SEPARATORS_DIR"
_HASH_SUFFIX = re.compile(r"-(?P<sha>[0-9a-f]{8,64})$")


# The shipped separator weights, package data: in a checkout `shipped` is a link to the top-level
# `separators/` folder (where the weights are kept and trained into), and a wheel holds a copy of
# it (pyproject.toml, [tool.setuptools.package-data]); so one path serves an editable install and
# a wheel alike.
SHIPPED_DIR = Path(__file__).with_name("shipped")


def separators_dir() -> Path:
    """The folder of shipped separator assets, `<name>/` each: $MSGPP_SEPARATORS_DIR when set,
    else msgpp/separators/shipped/ (the top-level `separators/` of a checkout)."""
    if os.environ.get(ENV_SEPARATORS_DIR):
        return Path(os.environ[ENV_SEPARATORS_DIR])
    return SHIPPED_DIR.resolve()  # through the link: paths in messages name separators/<name>/


def shipped_folder(name: str) -> Path:
    folder = separators_dir() / name
    if not folder.is_dir():
        raise MsgppError(
            f"no shipped weights for separator {name!r} (looked in {folder}); pass weights=<folder> "
            f"(--weights) or set {ENV_SEPARATORS_DIR}"
        )
    return folder


def looks_like_path(location: str) -> bool:
    """A weights argument with a path separator or a file suffix is a path, never an upstream name."""
    return (
        os.sep in location
        or "/" in location
        or location.startswith(".")
        or Path(location).suffix in (".th", ".yaml", ".pth", ".json")
    )


def read_checksums(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUMS_NAME
    if not path.is_file():
        return {}
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise MsgppError(f"{path}:{number}: not a sha256sum line")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def verify_files(files: Iterable[Path]) -> dict[str, str]:
    """Check every file against its folder's SHA256SUMS and the hash in its own name, if any.

    Returns {file name: sha256}. Raises MsgppError naming the first file that does not match.
    """
    hashes: dict[str, str] = {}
    sums_by_folder: dict[Path, dict[str, str]] = {}
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise MsgppError(f"{path}: no such weights file")
        digest = sha256_file(path)
        sums = sums_by_folder.setdefault(path.parent, read_checksums(path.parent))
        expected = sums.get(path.name)
        if expected is None and (match := _HASH_SUFFIX.search(path.stem)):
            expected = match.group("sha")
        if expected is not None and not digest.startswith(expected):
            raise MsgppError(
                f"{path}: checksum mismatch (expected {expected[:12]}…, file has {digest[:12]}…); "
                "the file is corrupt or was replaced"
            )
        if expected is None:
            log.warning("%s: no checksum to verify it against (no %s, no hash in its name)", path, CHECKSUMS_NAME)
        hashes[path.name] = digest
    return hashes


def fingerprint(hashes: dict[str, str], extra: str = "") -> str:
    """One sha256 over the files' (name, sha256) pairs, plus any text that changes the output."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}\0{hashes[name]}\n".encode())
    digest.update(extra.encode())
    return digest.hexdigest()


def write_checksums(folder: Path, files: Iterable[Path]) -> Path:
    """(Re)write SHA256SUMS for `files`, keeping the entries of other files already listed."""
    sums = read_checksums(folder)
    for path in files:
        sums[Path(path).name] = sha256_file(path)
    text = "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))
    return atomic_write_bytes(folder / CHECKSUMS_NAME, text.encode())


def torch_bytes(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def safe_torch_load(path: Path, allowed: Iterable[type] = ()):
    """torch.load with weights_only=True; `allowed` names the classes a package may reference
    (demucs packages store the model class itself). Errors become one-line MsgppErrors."""
    import torch

    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad or foreign pickle
        raise MsgppError(f"{path}: not a readable weights file ({error_text(error, 300)})") from None
