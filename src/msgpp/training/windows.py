"""The salient-window index: where in each track a training window may start.

A window is kept when the *ground truth* is audible in it (RMS above a threshold, −60 dBFS in
the paper's reference code): windows of silence teach the generator nothing and let the
discriminators win on trivia.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def salient_starts(target: np.ndarray, window: int, hop: int, threshold_db: float = -60.0) -> np.ndarray:
    """Start samples of the windows of `target` (samples,) whose RMS exceeds `threshold_db` dBFS.

    Windows run every `hop` samples; a trailing part shorter than `window` is not used.
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got {window} and {hop}")
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    if target.size < window:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, target.size - window + 1, hop, dtype=np.int64)
    # Window energies from one cumulative sum: O(samples), not O(windows × window).
    cumulative = np.concatenate([[0.0], np.cumsum(target**2)])
    power = (cumulative[starts + window] - cumulative[starts]) / window
    threshold = 10.0 ** (threshold_db / 10.0)
    return starts[power > threshold]


@dataclass(frozen=True)
class WindowIndex:
    """All salient windows of a set of tracks: parallel arrays (track number, start sample)."""

    tracks: np.ndarray
    starts: np.ndarray
    window: int

    def __len__(self) -> int:
        return int(self.starts.size)

    @classmethod
    def build(cls, targets: list[np.ndarray], window: int, hop: int, threshold_db: float = -60.0) -> WindowIndex:
        tracks, starts = [], []
        for number, target in enumerate(targets):
            found = salient_starts(target, window, hop, threshold_db)
            tracks.append(np.full(found.size, number, dtype=np.int64))
            starts.append(found)
        return cls(
            tracks=np.concatenate(tracks) if tracks else np.zeros(0, dtype=np.int64),
            starts=np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64),
            window=window,
        )
