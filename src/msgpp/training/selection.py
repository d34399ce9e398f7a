"""Model selection: the paper's measures on whole validation songs, one score, and "do no harm".

For every separator, over whole validation songs (not 1-s windows), the raw estimate and the
enhanced estimate are compared with the ground truth on four measures:

    song_mrstft        multi-resolution STFT distance (msgpp.losses, default resolutions); lower is better
    rolloff_abs_cents  mean |spectral-rolloff error| in cents (metrics.rolloff_error); lower is better
    onset_f1           onset-strength F1 (metrics.onset_f1); higher is better
    si_sdr             SI-SDR in dB (metrics.si_sdr), clipped to ±100 dB per song; higher is better

Each signal is peak-normalised on its own (metrics.prepare), like `msgpp evaluate`; the generator
sees the peak-normalised estimate, as in training. A row per separator holds the mean over songs
of each measure, `<measure>_raw` and `<measure>_enhanced` (NaN songs, e.g. a silent ground truth,
are left out of a mean).

The selection score (higher is better; 0 = exactly as good as returning the input):

    per separator:  ¼ · [ (M_raw − M_enh) / M_raw                      relative MR-STFT gain
                        + (R_raw − R_enh) / max(R_raw, 100 cents)       relative rolloff gain
                        + (F_enh − F_raw)                               onset-F1 gain
                        + (S_enh − S_raw) / 10 dB ]                     SI-SDR gain per 10 dB
    score = mean over separators

A term whose measure is NaN is left out of its separator's mean. The 100-cent floor keeps a
separator whose rolloff is already within a semitone from dominating with a large relative
change. Adding noise makes every term negative; returning the ground truth makes every term
positive.

`do_no_harm` lists the reasons a model is worse than returning its input (see its doc).
`generator_fingerprint` identifies a generator's weights, so that a score recorded at validation
can be matched to the checkpoint holding those weights.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msgpp.constants import MSG_SAMPLE_RATE
from msgpp.evaluation import metrics

MEASURES = ("song_mrstft", "rolloff_abs_cents", "onset_f1", "si_sdr")
ROLLOFF_FLOOR_CENTS = 100.0
SI_SDR_SCALE_DB = 10.0
SI_SDR_LIMIT_DB = 100.0
# do no harm: how much worse (enhanced vs raw) a separator may get before it is reported
MRSTFT_TOLERANCE = 0.001  # relative
ONSET_TOLERANCE = 0.02
SI_SDR_TOLERANCE_DB = 1.0
ROLLOFF_TOLERANCE_CENTS = 50.0


# -- measures -----------------------------------------------------------------------------------


def _song_values(candidate: np.ndarray, target: np.ndarray, sample_rate: int) -> np.ndarray:
    """The MEASURES of one prepared (peak-normalised, 1-D) candidate against its prepared target."""
    estimate, truth = metrics.align(candidate, target)
    if estimate.size == 0:
        return np.full(len(MEASURES), np.nan)
    mrstft = metrics.mrstft_distance(estimate, truth)
    rolloff = metrics.rolloff_error(estimate, truth, sample_rate=sample_rate).mean_abs
    onsets = metrics.onset_f1(estimate, truth, sample_rate=sample_rate).f1
    sdr = metrics.si_sdr(estimate, truth)
    sdr = float(np.clip(sdr, -SI_SDR_LIMIT_DB, SI_SDR_LIMIT_DB)) if not math.isnan(sdr) else sdr
    return np.array([mrstft, rolloff, onsets, sdr], dtype=np.float64)


def _enhance(generator: nn.Module, audio: np.ndarray) -> np.ndarray:
    parameter = next(iter(generator.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    output = generator(torch.from_numpy(audio)[None, None].to(device=device, dtype=dtype))
    return output.reshape(-1).float().cpu().numpy()[: audio.size]


def song_measures(
    generator: nn.Module,
    data,
    separators: Sequence[str],
    songs: Iterable[int] | None = None,
    sample_rate: int | None = None,
    raw_cache: dict | None = None,
) -> np.ndarray:
    """Per-song measures, (songs, separators, len(MEASURES), 2): [..., 0] raw, [..., 1] enhanced.

    `data` is a SourceSet (msgpp.training.datamodule); `songs` picks song numbers (default all);
    `sample_rate` is the data's rate (default the generator's `sample_rate`, else 16 kHz).
    `raw_cache` (a dict kept by the caller) saves recomputing the raw measures, which do not
    depend on the generator. The generator runs in eval mode under no_grad; its mode is restored.
    """
    songs = list(range(len(data.tracks)) if songs is None else songs)
    rate = int(sample_rate or getattr(generator, "sample_rate", None) or MSG_SAMPLE_RATE)
    values = np.full((len(songs), len(separators), len(MEASURES), 2), np.nan)
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            for row, song in enumerate(songs):
                target = metrics.prepare(data.targets[song], rate, target_rate=rate)
                for column, separator in enumerate(separators):
                    estimate = metrics.prepare(data.estimates[separator][song], rate, target_rate=rate)
                    key = (separator, data.tracks[song], estimate.size, rate)
                    raw = raw_cache.get(key) if raw_cache is not None else None
                    if raw is None:
                        raw = _song_values(estimate, target, rate)
                        if raw_cache is not None:
                            raw_cache[key] = raw
                    enhanced = metrics.prepare(_enhance(generator, estimate), rate, target_rate=rate)
                    values[row, column, :, 0] = raw
                    values[row, column, :, 1] = _song_values(enhanced, target, rate)
    finally:
        generator.train(was_training)
    return values


def rows_from_measures(values: np.ndarray, separators: Sequence[str]) -> list[dict]:
    """One row per separator from `song_measures` output: songs, `<measure>_raw`, `<measure>_enhanced`
    (means over the songs whose value is defined; songs padded with NaN count for nothing)."""
    rows = []
    for column, separator in enumerate(separators):
        per_song = values[:, column]
        row: dict = {"separator": separator, "songs": int(np.sum(~np.all(np.isnan(per_song), axis=(1, 2))))}
        for number, measure in enumerate(MEASURES):
            for kind, name in ((0, "raw"), (1, "enhanced")):
                row[f"{measure}_{name}"] = _nanmean(per_song[:, number, kind])
        rows.append(row)
    return rows


def measure_songs(
    generator: nn.Module,
    data,
    separators: Sequence[str],
    songs: Iterable[int] | None = None,
    sample_rate: int | None = None,
    raw_cache: dict | None = None,
) -> list[dict]:
    """Raw vs enhanced, whole songs, one row per separator (see the module doc and `song_measures`)."""
    return rows_from_measures(song_measures(generator, data, separators, songs, sample_rate, raw_cache), separators)


# -- the score and the do-no-harm check ---------------------------------------------------------


def separator_score(row: dict) -> float:
    """The score of one separator's row (the bracket in the module doc); NaN when nothing is defined."""
    terms = []
    mrstft_raw, mrstft_enhanced = row["song_mrstft_raw"], row["song_mrstft_enhanced"]
    terms.append((mrstft_raw - mrstft_enhanced) / max(mrstft_raw, 1e-8))
    rolloff_raw, rolloff_enhanced = row["rolloff_abs_cents_raw"], row["rolloff_abs_cents_enhanced"]
    terms.append((rolloff_raw - rolloff_enhanced) / max(rolloff_raw, ROLLOFF_FLOOR_CENTS))
    terms.append(row["onset_f1_enhanced"] - row["onset_f1_raw"])
    terms.append((row["si_sdr_enhanced"] - row["si_sdr_raw"]) / SI_SDR_SCALE_DB)
    return _nanmean(np.array(terms, dtype=np.float64))


def selection_score(rows: Sequence[dict]) -> float:
    """The selection score: the mean of `separator_score` over the rows (higher is better, 0 =
    as good as returning the input, negative = worse). NaN when no row has a defined score."""
    return _nanmean(np.array([separator_score(row) for row in rows], dtype=np.float64))


def do_no_harm(rows: Sequence[dict]) -> list[str]:
    """Why the model is worse than returning its input unchanged; empty when it is not.

    Reported: a selection score ≤ 0 (no better than the input on balance), and per separator an
    MR-STFT distance higher than the raw estimate's (by more than 0.1 %), an onset F1 lower by
    more than 0.02, an SI-SDR lower by more than 1 dB, a |rolloff error| higher by more than
    50 cents.
    """
    reasons = []
    score = selection_score(rows)
    if not rows or math.isnan(score):
        return ["no validation measure is defined (no songs, or only silent ground truth)"]
    if score <= 0:
        reasons.append(
            f"selection score {score:+.4f} ≤ 0: on balance the output is no closer to the ground truth than the input"
        )
    for row in rows:
        name = row["separator"]
        raw, enhanced = row["song_mrstft_raw"], row["song_mrstft_enhanced"]
        if enhanced > raw * (1 + MRSTFT_TOLERANCE):
            reasons.append(
                f"{name}: MR-STFT distance {raw:.4f} → {enhanced:.4f} "
                f"({100 * (enhanced - raw) / max(raw, 1e-8):+.1f} %), further from the ground truth"
            )
        raw, enhanced = row["onset_f1_raw"], row["onset_f1_enhanced"]
        if enhanced < raw - ONSET_TOLERANCE:
            reasons.append(f"{name}: onset F1 {raw:.3f} → {enhanced:.3f} ({enhanced - raw:+.3f})")
        raw, enhanced = row["si_sdr_raw"], row["si_sdr_enhanced"]
        if enhanced < raw - SI_SDR_TOLERANCE_DB:
            reasons.append(f"{name}: SI-SDR {raw:.2f} dB → {enhanced:.2f} dB ({enhanced - raw:+.2f} dB)")
        raw, enhanced = row["rolloff_abs_cents_raw"], row["rolloff_abs_cents_enhanced"]
        if enhanced > raw + ROLLOFF_TOLERANCE_CENTS:
            reasons.append(f"{name}: |rolloff error| {raw:.0f} → {enhanced:.0f} cents ({enhanced - raw:+.0f} cents)")
    return reasons


# -- records --------------------------------------------------------------------------------------


def generator_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """A short hash of a generator's weights (names, shapes, dtypes and bytes), the same for the
    module's `generator.state_dict()` and the generator part of a checkpoint."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def csv_rows(record: dict) -> list[dict]:
    """A validation record ({"batches", "score", "rows", ...}) as flat rows for validation_measures.csv."""
    return [
        {
            "batch": record["batches"],
            "separator": row["separator"],
            "songs": row["songs"],
            **{f"{measure}_{kind}": row[f"{measure}_{kind}"] for measure in MEASURES for kind in ("raw", "enhanced")},
            "separator_score": separator_score(row),
            "score": record["score"],
        }
        for row in record["rows"]
    ]


def append_measures_csv(path: str | Path, record: dict) -> None:
    """Append a validation record to a CSV log (header written when the file is new). An append,
    not an atomic rewrite: it is a log that grows by a few lines per validation."""
    rows = csv_rows(record)
    if not rows:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
        handle.flush()


# -- helpers --------------------------------------------------------------------------------------


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")
