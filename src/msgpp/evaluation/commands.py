"""`msgpp evaluate` and `msgpp listening-test make|analyse`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from msgpp.errors import number_type


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score raw vs MSG-enhanced estimates against the ground truth; write the HTML report",
        description="For every test song, cached separator and source: raw estimate vs MSG-enhanced estimate vs "
        "ground truth (rolloff error, onset F1, SI-SDR, optionally museval SDR). Writes results.csv, the paper's "
        "tables and figures with bootstrap CIs, and <out>/index.html. Reruns compute only what changed.",
    )
    parser.add_argument(
        "--root",
        default=None,
        help="ground truth: the embedded benchmark, MUSDB18-HQ or MUSDB18 (default: $MUSDB_PATH)",
    )
    parser.add_argument("--cache", required=True, help="estimate cache of `msgpp separate`")
    parser.add_argument("--out", required=True, help="output folder (report, results.csv, enhanced audio)")
    parser.add_argument(
        "--enhancers",
        default=None,
        help="source=name-or-path pairs, comma-separated (e.g. bass=bass,vocals=runs/msg-vocals.pt); "
        "default: every shipped enhancer; 'none': raw estimates only",
    )
    parser.add_argument("--separators", default=None, help="comma-separated separators (default: all in the cache)")
    parser.add_argument("--sources", default=None, help="comma-separated sources (default: all)")
    parser.add_argument("--subset", default="test", help="dataset subset (default: test)")
    parser.add_argument(
        "--museval", action="store_true", help="also compute museval SDR/SIR/ISR/SAR (slow: ~6 s per 10 s of stereo)"
    )
    parser.add_argument(
        "--mono16k",
        action="store_true",
        help="enhance the 16 kHz mono downmix (the paper's protocol; several times faster than "
        "full-rate stereo; the report's excerpts are then 16 kHz mono)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap and excerpt-choice seed")
    parser.add_argument(
        "--excerpts",
        type=number_type("--excerpts", minimum=0, integer=True),
        default=4,
        help="audio excerpts with spectrograms in the report",
    )
    parser.add_argument("--no-report", action="store_true", help="only compute results.csv")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_evaluate)

    listening = subparsers.add_parser(
        "listening-test", help="make or analyse a two-alternative forced-choice listening test"
    )
    actions = listening.add_subparsers(dest="action", metavar="<make|analyse>")
    make = actions.add_parser("make", help="build the static test pages (7-s excerpts, randomised, seeded)")
    make.add_argument("--root", default=None, help="ground truth, as for evaluate (default: $MUSDB_PATH)")
    make.add_argument("--cache", required=True, help="estimate cache")
    make.add_argument(
        "--enhanced", required=True, help="the `msgpp evaluate` output folder (its enhanced/ audio is used)"
    )
    make.add_argument("--out", required=True, help="folder for the test pages")
    make.add_argument("--separators", default=None, help="comma-separated (default: those evaluated)")
    make.add_argument("--sources", default=None, help="comma-separated (default: those with an enhancer)")
    make.add_argument(
        "--seconds", type=number_type("--seconds", above=0), default=7.0, help="excerpt length (paper: 7)"
    )
    make.add_argument(
        "--pairs",
        type=number_type("--pairs", minimum=1, integer=True),
        default=25,
        help="pairs per listener (paper: 25)",
    )
    make.add_argument(
        "--listeners",
        type=number_type("--listeners", minimum=1, integer=True),
        default=30,
        help="listener sessions to prepare per test",
    )
    make.add_argument("--seed", type=int, default=0, help="seed for excerpts, order and sides")
    make.set_defaults(func=run_listening_make)
    analyse = actions.add_parser("analyse", help="binomial test per separator × source from exported answers")
    analyse.add_argument("kit", help="the test folder made by `listening-test make` (holds answer_key.json)")
    analyse.add_argument(
        "answers", nargs="+", help="answer files (.json exported by the page, or .csv) or folders of them"
    )
    analyse.add_argument("--out", default=None, help="where to write preferences.csv/.md/.png (default: <kit>/results)")
    analyse.add_argument(
        "--alpha", type=number_type("--alpha", above=0, below=1), default=0.05, help="significance level (default 0.05)"
    )
    analyse.set_defaults(func=run_listening_analyse)
    listening.set_defaults(func=lambda args: (listening.print_help(), 2)[1])


def run_evaluate(args) -> int:
    from msgpp.errors import MsgppError
    from msgpp.evaluation.evaluate import evaluate, parse_enhancer_option, resolve_enhancers
    from msgpp.evaluation.report import build_report

    started = time.monotonic()
    enhancers = resolve_enhancers(parse_enhancer_option(args.enhancers))
    if args.excerpts < 0:
        raise MsgppError("--excerpts must be ≥ 0")
    result = evaluate(
        args.root,
        args.cache,
        args.out,
        enhancers=enhancers,
        separators=_split(args.separators),
        sources=_sources(args.sources),
        subset=args.subset,
        museval=args.museval,
        enhance_mono16k=args.mono16k,
        progress=not args.quiet,
    )
    if not enhancers:
        print("msgpp evaluate: no enhancer (none shipped, or --enhancers none): raw estimates only")
    print(
        f"msgpp evaluate: {result.computed_rows} row(s) computed, {result.reused_rows} reused "
        f"→ {Path(args.out) / 'results.csv'}"
    )
    if not args.no_report:
        run_info = json.loads((Path(args.out) / "run.json").read_text())
        page = build_report(args.out, result.table, run_info, seed=args.seed, excerpts=args.excerpts)
        print(f"msgpp evaluate: report → {page}")
    print(f"msgpp evaluate: done in {time.monotonic() - started:.1f} s")
    return 0


def run_listening_make(args) -> int:
    from msgpp.evaluation.listening import make_kit

    page = make_kit(
        args.root,
        args.cache,
        args.enhanced,
        args.out,
        separators=_split(args.separators),
        sources=_sources(args.sources),
        seconds=args.seconds,
        pairs=args.pairs,
        listeners=args.listeners,
        seed=args.seed,
    )
    print(f"msgpp listening-test: open {page} in a browser (or serve the folder); answers are exported as JSON")
    return 0


def run_listening_analyse(args) -> int:
    from msgpp.evaluation.listening import analyse_answers

    table = analyse_answers(args.kit, args.answers, out=args.out, alpha=args.alpha)
    print(table)
    return 0


def _split(text: str | None) -> list[str] | None:
    return [item.strip() for item in text.split(",") if item.strip()] if text else None


def _sources(text: str | None) -> list[str] | None:
    from msgpp.constants import SOURCES
    from msgpp.errors import MsgppError

    sources = _split(text)
    for source in sources or []:
        if source not in SOURCES:
            raise MsgppError(f"--sources: unknown source {source!r} (sources: {', '.join(SOURCES)})")
    return sources
