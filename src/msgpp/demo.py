"""`msgpp demo`: the main job on the embedded benchmark, start to finish.

generate data → separate the test songs with the shipped separators → enhance them with the
shipped MSG weights and evaluate raw vs enhanced → HTML report. Every stage is cached on disk, so
a second run only redoes what changed. The demo calls the stages' functions; each step prints the
command that runs the same stage on its own.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from msgpp.errors import MsgppError


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the whole pipeline on the embedded benchmark")
    parser.add_argument("--root", default="data/musdb-embedded", help="benchmark folder (made if missing)")
    parser.add_argument("--cache", default="cache/estimates", help="estimate cache folder")
    parser.add_argument("--out", default="outputs", help="where the report goes")
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed")
    parser.add_argument("--preset", default="default", choices=["tiny", "default"], help="benchmark size")
    parser.add_argument("--separators", help="comma-separated separator names (default: every built-in one)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from msgpp.separators.registry import BUILTIN

    separators = args.separators or ",".join(sorted(BUILTIN))
    report = Path(args.out) / "report"
    steps = [
        (
            "make the embedded benchmark",
            f"data --root {args.root} --preset {args.preset} --seed {args.seed}",
            lambda: make_benchmark(args.root, args.preset, args.seed),
        ),
        (
            "separate the test songs",
            f"separate --root {args.root} --separators {separators} --subset test --cache {args.cache}",
            lambda: separate_test_songs(args.root, separators, args.cache),
        ),
        (
            "enhance and evaluate",
            f"evaluate --root {args.root} --cache {args.cache} --out {report} --separators {separators} --mono16k",
            lambda: enhance_and_evaluate(args.root, args.cache, report, separators),
        ),
    ]
    started = time.monotonic()
    for number, (title, command, stage) in enumerate(steps, 1):
        print(f"\n== demo step {number}/{len(steps)}: {title} (msgpp {command})", flush=True)
        try:
            stage()
        except MsgppError as error:
            print(f"msgpp: error: {error}", file=sys.stderr)
            print(f"msgpp demo: step {number} ({title}) failed with status 2")
            return 2
    minutes = (time.monotonic() - started) / 60
    print(f"\nmsgpp demo: done in {minutes:.1f} min. Report: {report}/index.html")
    return 0


def make_benchmark(root, preset: str, seed: int) -> None:
    from msgpp.data.benchmark import generate_benchmark

    manifest = generate_benchmark(Path(root), preset=preset, seed=seed)
    tracks = manifest["tracks"]
    print(
        f"{root}: {len(tracks['train'])} train + {len(tracks['test'])} test songs (preset {manifest['preset']}, "
        f"seed {manifest['seed']})"
    )


def separate_test_songs(root, separators: str, cache) -> None:
    from msgpp.separators.fill_cache import fill_cache
    from msgpp.separators.registry import parse_names

    fill_cache(Path(root), parse_names(separators), Path(cache), subsets=("test",))


def enhance_and_evaluate(root, cache, out: Path, separators: str) -> None:
    """Every shipped enhancer on the 16 kHz mono downmix (the paper's protocol), then the report."""
    import json

    from msgpp.evaluation.evaluate import evaluate, resolve_enhancers
    from msgpp.evaluation.report import build_report
    from msgpp.separators.registry import parse_names

    enhancers = resolve_enhancers(None)  # every shipped one
    if not enhancers:
        print("msgpp evaluate: no enhancer shipped: raw estimates only")
    result = evaluate(root, cache, out, enhancers=enhancers, separators=parse_names(separators), enhance_mono16k=True)
    print(
        f"msgpp evaluate: {result.computed_rows} row(s) computed, {result.reused_rows} reused → {out / 'results.csv'}"
    )
    page = build_report(out, result.table, json.loads((out / "run.json").read_text()), seed=0, excerpts=4)
    print(f"msgpp evaluate: report → {page}")
