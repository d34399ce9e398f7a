"""Before/after tables of two `msgpp evaluate` runs, and the acceptance checks of issue 12.

Each run's results.csv holds, per song, separator and source, the raw estimate's measures and
those of the MSG-enhanced estimate. This prints, per measure, one markdown table: raw, MSG of
run A ("before") and MSG of run B ("after"), each change with its 95 % bootstrap interval
(paired by song, msgpp.evaluation.summary), then the checks:

- bass: mean |rolloff error| lower with MSG for every separator; onset F1 not lower (an interval
  that includes 0 counts as not lower) for >= 4 of 5, hdemucs_v3 among them;
- drums: onset F1 not lower for >= 4 of 5; mean |rolloff error| at most 10 cents above raw everywhere;
- vocals and other: MR-STFT distance lower for >= 4 of 5, no cell worse with an interval excluding 0;
- SI-SDR: mean change >= -1 dB in every cell.

    python scripts/compare_results.py outputs/before/results.csv outputs/report/results.csv
    python scripts/compare_results.py outputs/report/results.csv          # one run: its own checks
    python scripts/compare_results.py a/results.csv,b/results.csv c/results.csv,d/results.csv   # pooled runs
    python scripts/compare_results.py --summary outputs/report/results.csv   # the README's summary table
"""

from __future__ import annotations

import argparse
import sys

from msgpp.evaluation import summary
from msgpp.evaluation.results import ResultTable

MEASURES = {
    "onset_f1": ("onset F1", 3),
    "rolloff_abs_cents": ("mean |rolloff error| (cents)", 0),
    "mrstft": ("MR-STFT distance", 3),
    "si_sdr": ("SI-SDR (dB)", 2),
}


def load(paths: str) -> list[dict]:
    """The rows of the run(s) that wrote `paths` (comma-separated results.csv files, pooled: e.g.
    the test and train subsets of one data set). Each run.json beside its results.csv names the
    enhancers, the separators' weights and the metrics version that count."""
    import json
    from pathlib import Path

    rows = []
    for path in paths.split(","):
        run_info = json.loads((Path(path).parent / "run.json").read_text())
        rows.extend(summary.current_rows(ResultTable(path), run_info))
    return rows


def cells(rows: list[dict], metric: str) -> dict:
    return {(cell.source, cell.separator): cell for cell in summary.metric_cells(rows, metric)}


def _change(cell, digits: int) -> str:
    if cell is None or cell.msg is None:
        return "–"
    delta = cell.delta
    return f"{cell.msg.mean:.{digits}f} ({delta.mean:+.{digits}f} [{delta.low:+.{digits}f}, {delta.high:+.{digits}f}])"


def table(metric: str, after: dict, before: dict | None) -> str:
    label, digits = MEASURES[metric]
    head = (
        "| source | separator | raw | "
        + ("MSG before (Δ [95 % CI]) | " if before is not None else "")
        + "MSG now (Δ [95 % CI]) |"
    )
    lines = [f"**{label}**", "", head, "|" + "---|" * (head.count("|") - 1)]
    for (source, separator), cell in sorted(after.items()):
        row = f"| {source} | {separator} | {cell.raw.mean:.{digits}f} | "
        if before is not None:
            row += _change(before.get((source, separator)), digits) + " | "
        lines.append(row + _change(cell, digits) + " |")
    return "\n".join(lines)


def checks(rows: list[dict]) -> list[tuple[str, bool, str]]:
    onset, rolloff, distance, sisdr = (cells(rows, m) for m in ("onset_f1", "rolloff_abs_cents", "mrstft", "si_sdr"))
    results = []

    def of(source, table_):
        return {sep: c for (src, sep), c in table_.items() if src == source and c.delta is not None}

    bass_rolloff = of("bass", rolloff)
    lower = [s for s, c in bass_rolloff.items() if c.delta.mean < 0]
    results.append(
        (
            "bass: mean abs. rolloff error lower for every separator",
            len(lower) == len(bass_rolloff) > 0,
            f"{len(lower)}/{len(bass_rolloff)} lower",
        )
    )
    bass_onset = of("bass", onset)
    not_lower = [s for s, c in bass_onset.items() if c.delta.high >= 0]
    results.append(
        (
            "bass: onset F1 not lower for >= 4 of 5, hdemucs_v3 among them",
            len(not_lower) >= 4 and "hdemucs_v3" in not_lower,
            f"not lower: {', '.join(not_lower) or 'none'}",
        )
    )
    drums_onset = of("drums", onset)
    not_lower = [s for s, c in drums_onset.items() if c.delta.high >= 0]
    results.append(
        ("drums: onset F1 not lower for >= 4 of 5", len(not_lower) >= 4, f"not lower: {', '.join(not_lower) or 'none'}")
    )
    drums_rolloff = of("drums", rolloff)
    within = [s for s, c in drums_rolloff.items() if c.delta.mean <= 10]
    results.append(
        (
            "drums: mean abs. rolloff error at most 10 cents above raw everywhere",
            len(within) == len(drums_rolloff) > 0,
            ", ".join(f"{s} {c.delta.mean:+.0f}" for s, c in drums_rolloff.items()),
        )
    )
    for source in ("vocals", "other"):
        cells_ = of(source, distance)
        lower = [s for s, c in cells_.items() if c.delta.mean < 0]
        worse = [s for s, c in cells_.items() if c.delta.low > 0]
        results.append(
            (
                f"{source}: MR-STFT lower for >= 4 of 5, none worse with an interval excluding 0",
                len(lower) >= 4 and not worse,
                f"lower {len(lower)}/{len(cells_)}; worse: {', '.join(worse) or 'none'}",
            )
        )
    bad = [
        f"{src}/{sep} {c.delta.mean:+.2f}"
        for (src, sep), c in sisdr.items()
        if c.delta is not None and c.delta.mean < -1
    ]
    results.append(("SI-SDR: mean change >= -1 dB in every cell", not bad, ", ".join(bad) or "all cells"))
    return results


def summary_table(rows: list[dict]) -> str:
    """The README's table: per source and measure, how many separators' estimates got
    significantly better or worse (an interval excluding 0) and the change for hdemucs_v3."""
    better_when_lower = {"rolloff_abs_cents", "mrstft"}
    head = "| source | " + " | ".join(label.replace("|", "\\|") for label, _ in MEASURES.values()) + " |"
    lines = [head, "|" + "---|" * (len(MEASURES) + 1)]
    tables = {metric: cells(rows, metric) for metric in MEASURES}
    for source in sorted({src for table_ in tables.values() for src, _ in table_}):
        row = f"| {source} |"
        for metric, (_, digits) in MEASURES.items():
            found = {sep: c for (src, sep), c in tables[metric].items() if src == source and c.delta is not None}
            up = sum(c.delta.low > 0 for c in found.values())
            down = sum(c.delta.high < 0 for c in found.values())
            better, worse = (down, up) if metric in better_when_lower else (up, down)
            unseen = found.get("hdemucs_v3")
            tail = f" (hdemucs_v3 {unseen.delta.mean:+.{digits}f})" if unseen is not None else ""
            row += f" {better} better, {worse} worse{tail} |"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results.csv of one run (after) or two runs (before, after)")
    parser.add_argument("--summary", action="store_true", help="only the README's summary table of the last run")
    args = parser.parse_args(argv)
    if len(args.results) > 2:
        parser.error("give one or two results.csv files")
    runs = [load(path) for path in args.results]
    before, after = (runs[0], runs[1]) if len(runs) == 2 else (None, runs[0])
    if args.summary:
        print(summary_table(after))
        return 0
    for metric in MEASURES:
        print(table(metric, cells(after, metric), cells(before, metric) if before is not None else None), end="\n\n")
    print("| check | met | figures |\n|---|---|---|")
    for name, met, figures in checks(after):
        print(f"| {name} | {'yes' if met else 'NO'} | {figures} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
