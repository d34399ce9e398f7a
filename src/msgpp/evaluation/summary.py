"""From the tidy table to the paper's numbers: means over songs with seeded bootstrap CIs.

Each cell (separator × source × variant) averages one value per song; its 95 % interval is the
percentile bootstrap over songs. "msg − raw" differences are paired by song. The sign check
tests the paper's claim that waveform separators' rolloff errors skew positive and spectrogram
separators' negative.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from msgpp.constants import SOURCES
from msgpp.evaluation.families import expected_sign, family
from msgpp.evaluation.results import VARIANTS

N_BOOTSTRAP = 2000
LEVEL = 0.95


@dataclass
class Estimate:
    """A mean over songs with its bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 2) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "–"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_mean(values, seed: int = 0, n_boot: int = N_BOOTSTRAP, level: float = LEVEL) -> Estimate:
    """Mean and percentile-bootstrap interval of `values` (one per song); NaN/inf are dropped."""
    data = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(data.mean())
    if data.size == 1:
        return Estimate(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return Estimate(mean, float(low), float(high), int(data.size))


def cell_seed(seed: int, *names: str) -> int:
    """A stable per-cell seed: the same table and seed give the same intervals in any order."""
    return (seed * 1_000_003 + zlib.crc32("/".join(names).encode())) % (2**32)


def current_rows(table, run_info: dict) -> list[dict]:
    """Rows of this run only: the separators' current weights, the current enhancers and metrics."""
    weights = {s: info["weights_id"] for s, info in run_info["separators"].items()}
    enhancer_ids = {s: info["id"] for s, info in run_info.get("enhancers", {}).items()}
    tracks = set(run_info.get("tracks", []))
    rows = []
    for row in table.select(metrics_id=run_info["metrics_id"]):
        if weights.get(row["separator"]) != row["weights_id"] or (tracks and row["track"] not in tracks):
            continue
        if row["variant"] == "msg" and enhancer_ids.get(row["source"]) != row["enhancer_id"]:
            continue
        rows.append(row)
    return rows


def ordered_sources(rows) -> list[str]:
    present = {row["source"] for row in rows}
    return [s for s in ("bass", "drums", "vocals", "other") if s in present] + sorted(present - set(SOURCES))


def ordered_separators(rows) -> list[str]:
    order = {"waveform": 0, "hybrid": 1, "spectrogram": 2, "unknown": 3}
    present = {row["separator"] for row in rows}
    return sorted(present, key=lambda s: (order.get(family(s), 3), s))


@dataclass
class Cell:
    separator: str
    source: str
    raw: Estimate
    msg: Estimate | None
    delta: Estimate | None  # msg − raw, paired by song


def metric_cells(rows, metric: str, seed: int = 0) -> list[Cell]:
    """One Cell per separator × source for `metric` (a results column)."""
    cells = []
    for separator in ordered_separators(rows):
        for source in ordered_sources(rows):
            by_variant = {
                variant: {
                    r["track"]: r[metric]
                    for r in rows
                    if r["separator"] == separator and r["source"] == source and r["variant"] == variant
                }
                for variant in VARIANTS
            }
            if not by_variant["raw"] and not by_variant["msg"]:
                continue
            raw = bootstrap_mean(by_variant["raw"].values(), cell_seed(seed, metric, separator, source, "raw"))
            msg = delta = None
            if by_variant["msg"]:
                msg = bootstrap_mean(by_variant["msg"].values(), cell_seed(seed, metric, separator, source, "msg"))
                paired = [
                    by_variant["msg"][t] - by_variant["raw"][t] for t in by_variant["msg"] if t in by_variant["raw"]
                ]
                delta = bootstrap_mean(paired, cell_seed(seed, metric, separator, source, "delta"))
            cells.append(Cell(separator, source, raw, msg, delta))
    return cells


@dataclass
class SignCheck:
    separator: str
    family: str
    source: str  # a source, or "all" (per-song mean over sources)
    expected: int
    estimate: Estimate

    @property
    def verdict(self) -> str:
        if self.estimate.n == 0:
            return "no data"
        if self.expected == 0:
            return "no prediction"
        if self.estimate.low > 0:
            observed = +1
        elif self.estimate.high < 0:
            observed = -1
        else:
            return "inconclusive"
        return "agrees" if observed == self.expected else "contradicts"


def sign_checks(rows, seed: int = 0) -> list[SignCheck]:
    """The paper's family claim on the raw estimates' signed rolloff error, per source and pooled."""
    checks = []
    raw = [r for r in rows if r["variant"] == "raw"]
    for separator in ordered_separators(raw):
        mine = [r for r in raw if r["separator"] == separator]
        for source in ordered_sources(mine) + ["all"]:
            if source == "all":
                per_song: dict[str, list[float]] = {}
                for r in mine:
                    if np.isfinite(r["rolloff_cents"]):
                        per_song.setdefault(r["track"], []).append(r["rolloff_cents"])
                values = [float(np.mean(v)) for v in per_song.values()]
            else:
                values = [r["rolloff_cents"] for r in mine if r["source"] == source]
            checks.append(
                SignCheck(
                    separator,
                    family(separator),
                    source,
                    expected_sign(separator),
                    bootstrap_mean(values, cell_seed(seed, "sign", separator, source)),
                )
            )
    return checks
