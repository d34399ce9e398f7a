"""Plot a training run's whole-song validation measures over training, raw vs enhanced.

Reads the run's validation_measures.csv (written by `msgpp train` at every validation, see
docs/training.md "Model selection") and draws one panel per measure: each separator's raw
estimate (dashed, flat) and enhanced estimate (solid) against the batch count, plus the
selection score. The model cards show these figures.

    python scripts/plot_validation.py runs/small/bass --out docs/figures/validation-bass.png
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

MEASURES = {
    "song_mrstft": "MR-STFT distance (lower is better)",
    "rolloff_abs_cents": "|rolloff error|, cents (lower is better)",
    "onset_f1": "onset F1 (higher is better)",
    "si_sdr": "SI-SDR, dB (higher is better)",
}


def read_measures(run: Path) -> list[dict]:
    files = sorted(run.rglob("validation_measures.csv")) if run.is_dir() else [run]
    if not files:
        raise SystemExit(f"error: no validation_measures.csv under {run}")
    rows = []
    for file in files:
        with open(file, newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def plot(rows: list[dict], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msgpp.files import atomic_path

    series: dict = defaultdict(lambda: defaultdict(dict))  # separator → column → {batch: value}
    scores = {}
    for row in rows:
        batch = int(row["batch"])
        scores[batch] = float(row["score"])
        for column, value in row.items():
            if column.endswith(("_raw", "_enhanced")):
                series[row["separator"]][column][batch] = float(value)
    figure, axes = plt.subplots(1, len(MEASURES) + 1, figsize=(4 * (len(MEASURES) + 1), 3.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, (measure, label) in zip(axes[:-1], MEASURES.items(), strict=True):
        for number, (separator, columns) in enumerate(sorted(series.items())):
            colour = colours[number % len(colours)]
            for kind, style in (("raw", "--"), ("enhanced", "-")):
                points = sorted(columns.get(f"{measure}_{kind}", {}).items())
                if points:
                    axis.plot(
                        *zip(*points, strict=True),
                        style,
                        color=colour,
                        marker="." if kind == "enhanced" else None,
                        label=f"{separator} {kind}",
                    )
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("batches")
    axes[0].legend(fontsize=6, ncol=2)
    points = sorted(scores.items())
    axes[-1].plot(*zip(*points, strict=True), "k.-")
    axes[-1].axhline(0.0, color="grey", linewidth=0.8)
    axes[-1].set_title("selection score (0 = the input)", fontsize=9)
    axes[-1].set_xlabel("batches")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(out, suffix=".tmp.png") as temporary:  # never a half-written figure
        figure.savefig(temporary, dpi=80)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder (or a validation_measures.csv)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    rows = read_measures(args.run)
    plot(rows, args.title or f"{args.run}: whole-song validation, raw (dashed) vs enhanced (solid)", args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
