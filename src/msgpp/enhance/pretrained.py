"""Enhancers found by name: the shipped ones (package data in msgpp/pretrained, `msg-<source>-<sha8>.pt`)
and the MSG authors' published ones (msgpp.enhance.published), or else a path to a weights file.

    resolve_pretrained("bass")          # shipped
    resolve_pretrained("paper-bass")    # published: downloaded and converted on first use
    resolve_pretrained("my/msg-bass-1a2b3c4d.pt")
"""

from __future__ import annotations

import os
from pathlib import Path

from msgpp.enhance import published
from msgpp.enhance.weights_file import HASHED_NAME
from msgpp.errors import MsgppError

PRETRAINED_DIR = Path(__file__).parents[1] / "pretrained"


def pretrained_names() -> dict[str, Path]:
    """{name: path} of the shipped enhancer weights (msg-<name>-<sha8>.pt in msgpp/pretrained)."""
    names = {}
    for path in sorted(PRETRAINED_DIR.glob("msg-*.pt")):
        match = HASHED_NAME.match(path.name)
        if match:
            names[match.group("stem").removeprefix("msg-")] = path
    return names


def resolve_pretrained(name_or_path: str | os.PathLike) -> Path:
    """A shipped name ("bass"), a published one ("paper-bass": the authors' generator, downloaded
    and converted on first use, see msgpp.enhance.published) or a path to an inference file."""
    path = Path(name_or_path)
    if path.suffix == ".pt" or path.exists():
        if not path.is_file():
            raise MsgppError(f"{path}: no such weights file")
        return path
    names = pretrained_names()
    if str(name_or_path) in published.PUBLISHED:  # the authors' generators: downloaded and converted once
        return published.ensure(str(name_or_path))
    if str(name_or_path) not in names:
        shipped = ", ".join(sorted(names)) or "none"
        raise MsgppError(
            f"unknown enhancer {str(name_or_path)!r}: not a file, not a shipped name (shipped: {shipped}) "
            f"and not a published one ({', '.join(published.PUBLISHED)})"
        )
    return names[str(name_or_path)]
