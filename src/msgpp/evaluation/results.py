"""The tidy results table: one row per track × separator × source × variant, in a CSV file.

A row's key names everything its numbers depend on: the track, the separator and its weights id,
the source, the variant ("raw" estimate or "msg"-enhanced), the enhancer's id (its weights'
sha256 prefix; empty for raw) and the metrics' parameter id. A rerun keeps every row whose key is
unchanged and computes only the rest. Per-frame rolloff errors (Fig. 5) live beside the table as
.npy files named by the same key.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from pathlib import Path

import numpy as np

from msgpp.errors import MsgppError
from msgpp.evaluation import metrics
from msgpp.files import atomic_path, atomic_write_text

KEY_COLUMNS = ("track", "separator", "weights_id", "source", "variant", "enhancer_id", "metrics_id")
VALUE_COLUMNS = (
    "family",
    "duration_s",
    "rolloff_cents",
    "rolloff_abs_cents",
    "rolloff_frames",
    "onset_f1",
    "onset_tp",
    "onset_fp",
    "onset_fn",
    "si_sdr",
    "sdr",
    "sir",
    "isr",
    "sar",
    "mrstft",
)
COLUMNS = KEY_COLUMNS + VALUE_COLUMNS
_TEXT = {"track", "separator", "weights_id", "source", "variant", "enhancer_id", "metrics_id", "family"}
VARIANTS = ("raw", "msg")  # a row's variant: the separator's estimate, or it enhanced by MSG


def metrics_id() -> str:
    """A short hash of every metric parameter: changing one invalidates the cached rows."""
    params = (
        metrics.ROLLOFF_PERCENT,
        metrics.ROLLOFF_N_FFT,
        metrics.ROLLOFF_HOP,
        metrics.SILENCE_DBFS,
        metrics.ONSET_HOP,
        metrics.ONSET_THRESHOLD,
        "16k-mono-peak",
        "v2-mrstft",
    )
    return hashlib.sha256(repr(params).encode()).hexdigest()[:8]


def row_key(row: dict) -> tuple:
    return tuple(str(row.get(column, "")) for column in KEY_COLUMNS)


class ResultTable:
    """Rows keyed by `row_key`, read from and written to one CSV file (atomically)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: dict[tuple, dict] = {}
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, newline="") as handle:
                reader = csv.DictReader(handle)
                missing = [c for c in KEY_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise MsgppError(f"{self.path}: not an msgpp results table (missing columns {', '.join(missing)})")
                for raw in reader:
                    row = {column: _parse(column, raw.get(column, "")) for column in COLUMNS}
                    self.rows[row_key(row)] = row
        except (OSError, csv.Error, UnicodeDecodeError) as error:
            raise MsgppError(f"{self.path}: cannot read results table ({error})") from None

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: tuple) -> bool:
        return key in self.rows

    def get(self, key: tuple) -> dict | None:
        return self.rows.get(key)

    def put(self, row: dict) -> None:
        self.rows[row_key(row)] = {column: row.get(column, _empty(column)) for column in COLUMNS}

    def select(self, **where) -> list[dict]:
        """Rows whose columns equal the given values (a tuple/list/set value means 'any of')."""

        def matches(row):
            for column, wanted in where.items():
                if isinstance(wanted, (tuple, list, set, frozenset)):
                    if row[column] not in wanted:
                        return False
                elif row[column] != wanted:
                    return False
            return True

        return sorted((row for row in self.rows.values() if matches(row)), key=row_key)

    def save(self) -> Path:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for key in sorted(self.rows):
            writer.writerow({column: _format(self.rows[key][column]) for column in COLUMNS})
        atomic_write_text(self.path, buffer.getvalue())
        return self.path


def frames_path(folder: Path, row: dict) -> Path:
    """Where one row's per-frame rolloff errors are stored."""
    name = f"{row['source']}.{row['variant']}" + (f".{row['enhancer_id']}" if row["enhancer_id"] else "") + ".npy"
    return Path(folder) / row["metrics_id"] / row["separator"] / row["weights_id"] / row["track"] / name


def save_frames(folder: Path, row: dict, cents: np.ndarray) -> None:
    with atomic_path(frames_path(folder, row)) as temporary, open(temporary, "wb") as handle:
        np.save(handle, np.asarray(cents, dtype=np.float32))


def load_frames(folder: Path, row: dict) -> np.ndarray | None:
    path = frames_path(folder, row)
    return np.load(path) if path.is_file() else None


def _empty(column: str):
    return "" if column in _TEXT else float("nan")


def _parse(column: str, text: str):
    if column in _TEXT:
        return text or ""
    if text in ("", "nan", None):
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise MsgppError(f"results table: column {column!r} holds {text!r}, not a number") from None


def _format(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value) if math.isinf(value) else f"{value:.6g}"
    return str(value)
