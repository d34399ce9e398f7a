"""The score table of a separator (`msgpp separators score`, the model card): per source, on a
subset's songs,

  - SI-SDR of the estimate and of the mixture itself (both against the true source), and the
    improvement: > 0 dB means the separator truly separates;
  - the mean spectral-rolloff error in cents (the paper's metric: 16 kHz mono, peak-normalised,
    silent frames dropped) and its sign: + the estimate has too much high-frequency energy
    (typical of waveform separators), − upper partials are missing (spectrogram separators).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from msgpp.separators.base import Separator
from msgpp.separators.tracks import list_tracks


def score_separator(
    separator: Separator, root: str | Path, subset: str = "test", limit: int | None = None, progress: bool = True
) -> dict:
    """{"tracks": n, "sources": {source: {si_sdr, si_sdr_mixture, improvement, rolloff_cents}}}."""
    from msgpp.audio import load_audio
    from msgpp.errors import check_number
    from msgpp.evaluation.metrics import prepare, rolloff_error, si_sdr

    if limit is not None:
        limit = check_number("limit", limit, minimum=1, integer=True)
    tracks = list_tracks(root, (subset,))[:limit]
    rows: dict[str, dict[str, list[float]]] = {
        s: {"si_sdr": [], "si_sdr_mixture": [], "rolloff": []} for s in separator.sources
    }
    for track in tqdm(tracks, desc=f"scoring {separator.name}", unit="track", disable=not progress):
        mixture, rate = load_audio(track.mixture)
        estimates = separator.separate(mixture, rate)
        for source, estimate in estimates.items():
            path = track.mixture.parent / f"{source}.wav"
            if not path.is_file():
                continue
            truth, _ = load_audio(path)
            rows[source]["si_sdr"].append(si_sdr(estimate.reshape(-1), truth.reshape(-1)))
            rows[source]["si_sdr_mixture"].append(si_sdr(mixture.reshape(-1), truth.reshape(-1)))
            error = rolloff_error(prepare(estimate, rate), prepare(truth, rate))
            if error.kept_frames:
                rows[source]["rolloff"].append(error.mean)
    result = {}
    for source, values in rows.items():
        estimate, mixture = _mean(values["si_sdr"]), _mean(values["si_sdr_mixture"])
        result[source] = {
            "si_sdr": estimate,
            "si_sdr_mixture": mixture,
            "improvement": estimate - mixture,
            "rolloff_cents": _mean(values["rolloff"]),
        }
    return {"subset": subset, "tracks": len(tracks), "sources": result}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def format_table(scores: dict) -> str:
    """A markdown table of `score_separator`'s result."""
    lines = [
        "| source | SI-SDR estimate (dB) | SI-SDR mixture (dB) | improvement (dB) | rolloff error (cents) | sign |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for source, row in scores["sources"].items():
        sign = "+" if row["rolloff_cents"] > 0 else "−" if row["rolloff_cents"] < 0 else "0"
        lines.append(
            f"| {source} | {row['si_sdr']:.2f} | {row['si_sdr_mixture']:.2f} | {row['improvement']:+.2f} | "
            f"{row['rolloff_cents']:+.0f} | {sign} |"
        )
    return "\n".join(lines)
