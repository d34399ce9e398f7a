"""The paper's figures, redrawn from our numbers (matplotlib, Agg backend, PNG files).

- `metric_bars`: per source, raw vs +MSG per separator with bootstrap CIs (Fig. 4, SI-SDR, F1)
- `rolloff_histograms`: per separator, the per-frame rolloff error distribution (Fig. 5)
- `spectrogram_with_rolloff`: ground truth / raw / +MSG spectrograms with rolloff lines (Fig. 3)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from msgpp.evaluation import metrics
from msgpp.files import atomic_path

RAW_COLOR = "#d95f02"
MSG_COLOR = "#1b9e77"
TRUTH_COLOR = "#ffffff"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | os.PathLike) -> Path:
    """Write a PNG atomically."""
    with atomic_path(path, suffix=".tmp.png") as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return Path(path)


def metric_bars(cells, ylabel: str, title: str, path, value: str = "mean") -> Path:
    """Grouped bars: one panel per source, one group per separator, raw and +MSG with 95 % CIs."""
    plt = _pyplot()
    sources = list(dict.fromkeys(c.source for c in cells))
    separators = list(dict.fromkeys(c.separator for c in cells))
    figure, axes = plt.subplots(1, max(len(sources), 1), figsize=(3.6 * max(len(sources), 1), 3.4), squeeze=False)
    width = 0.38
    for axis, source in zip(axes[0], sources, strict=False):  # no source: the one empty axis stays
        positions = np.arange(len(separators))
        for offset, variant, color, label in (
            (-width / 2, "raw", RAW_COLOR, "separator"),
            (width / 2, "msg", MSG_COLOR, "+ MSG"),
        ):
            means, lows, highs = [], [], []
            for separator in separators:
                cell = next((c for c in cells if c.source == source and c.separator == separator), None)
                estimate = getattr(cell, variant) if cell else None
                if estimate is None or estimate.n == 0:
                    means.append(np.nan), lows.append(0.0), highs.append(0.0)
                    continue
                means.append(estimate.mean)
                lows.append(max(estimate.mean - estimate.low, 0.0))
                highs.append(max(estimate.high - estimate.mean, 0.0))
            axis.bar(positions + offset, means, width, yerr=[lows, highs], color=color, label=label, capsize=3)
        axis.set_xticks(positions, separators, rotation=20, ha="right")
        axis.set_title(source)
        axis.axhline(0, color="black", linewidth=0.6)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(loc="best", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def rolloff_histograms(
    distributions: dict[str, dict[str, np.ndarray]], source: str, path, limit: float | None = None, cells=None
) -> Path:
    """Fig. 5: one panel per separator, histograms of per-frame rolloff error (cents), raw and +MSG.

    Values beyond ±`limit` are drawn in the outermost bins so nothing silently disappears; the
    default limit covers 99 % of the frames (1200 to 7200 cents, a multiple of 600). With
    `cells` (summary.metric_cells of "rolloff_cents") the legend shows the mean over songs and its
    95 % interval; otherwise the mean over frames.
    """
    plt = _pyplot()
    separators = list(distributions)
    figure, axes = plt.subplots(
        1, max(len(separators), 1), figsize=(3.6 * max(len(separators), 1), 3.0), squeeze=False, sharey=True
    )
    if limit is None:
        pooled = [np.abs(v) for d in distributions.values() for v in d.values() if len(v)]
        reach = float(np.percentile(np.concatenate(pooled), 99)) if pooled else 1200.0
        limit = float(np.clip(np.ceil(reach / 600.0) * 600.0, 1200.0, 7200.0))
    bins = np.linspace(-limit, limit, 61)
    for axis, separator in zip(axes[0], separators, strict=False):  # no separator: the one empty axis stays
        for variant, color, label in (("raw", RAW_COLOR, "separator"), ("msg", MSG_COLOR, "+ MSG")):
            values = distributions[separator].get(variant)
            if values is None or len(values) == 0:
                continue
            clipped = np.clip(values, -limit, limit)
            cell = next((c for c in cells or [] if c.separator == separator and c.source == source), None)
            estimate = getattr(cell, variant, None) if cell else None
            text = (
                f"song mean {estimate.mean:+.0f} [{estimate.low:+.0f}, {estimate.high:+.0f}]"
                if estimate is not None and estimate.n
                else f"frame mean {np.mean(values):+.0f}"
            )
            axis.hist(clipped, bins=bins, density=True, alpha=0.55, color=color, label=f"{label}: {text}")
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_title(separator)
        axis.set_xlabel("rolloff error (cents)")
        axis.legend(fontsize=7)
    axes[0][0].set_ylabel("density of frames")
    figure.suptitle(f"{source}: per-frame spectral-rolloff error (estimate − ground truth)")
    figure.tight_layout()
    return _save(figure, path)


def spectrogram_with_rolloff(signals: dict[str, np.ndarray], sample_rate: int, path, title: str = "") -> Path:
    """Fig. 3: spectrograms (16 kHz mono) with each signal's 98 % rolloff (solid) and the ground
    truth's (dashed white). `signals` maps a label to audio; "ground truth" must be one of them."""
    import librosa

    plt = _pyplot()
    labels = list(signals)
    truth = signals["ground truth"]
    # Frames the metric drops (quiet ground truth) are not drawn.
    audible = metrics.frame_rms_dbfs(truth) >= metrics.SILENCE_DBFS
    truth_rolloff = np.where(audible, metrics.spectral_rolloff(truth, sample_rate), np.nan)
    figure, axes = plt.subplots(1, len(labels), figsize=(4.0 * len(labels), 3.2), squeeze=False, sharey=True)
    for axis, label in zip(axes[0], labels, strict=True):
        audio = signals[label]
        spectrum = np.abs(librosa.stft(audio, n_fft=metrics.ROLLOFF_N_FFT, hop_length=metrics.ROLLOFF_HOP))
        decibels = librosa.amplitude_to_db(spectrum, ref=np.max(spectrum) if spectrum.max() > 0 else 1.0, top_db=80)
        times = np.arange(decibels.shape[1]) * metrics.ROLLOFF_HOP / sample_rate
        frequencies = np.linspace(0, sample_rate / 2, decibels.shape[0])
        axis.pcolormesh(times, frequencies, decibels, shading="auto", cmap="magma", vmin=-80, vmax=0)
        rolloff = metrics.spectral_rolloff(audio, sample_rate)[: len(audible)]
        rolloff = np.where(audible[: len(rolloff)] & (rolloff > 0), rolloff, np.nan)
        axis.plot(times[: len(rolloff)], rolloff, color="#4fc3f7", linewidth=1.2, label=f"{label} rolloff")
        if label != "ground truth":
            axis.plot(
                times[: len(truth_rolloff)],
                truth_rolloff,
                color=TRUTH_COLOR,
                linewidth=1.0,
                linestyle="--",
                label="truth rolloff",
            )
        axis.set_yscale("log")
        axis.set_ylim(30, sample_rate / 2)
        axis.set_title(label)
        axis.set_xlabel("time (s)")
        axis.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("frequency (Hz)")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)
