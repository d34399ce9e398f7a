"""`msgpp demo`: the main job on the embedded benchmark, start to finish.

generate data → separate the test songs with the shipped separators → enhance them with the
shipped MSG weights and evaluate raw vs enhanced → HTML report. Every stage is cached on disk, so
a second run only redoes what changed.
"""
from __future__ import annotations

import time

DEFAULT_SEPARATORS = "demucs_v2,hdemucs_v3,openunmix,spleeter,wavenet"


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the whole pipeline on the embedded benchmark")
    parser.add_argument("--root", default="data/musdb-embedded", help="benchmark folder (made if missing)")
    parser.add_argument("--cache", default="cache/estimates", help="estimate cache folder")
    parser.add_argument("--out", default="outputs", help="where the report goes")
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed")
    parser.add_argument("--preset", default="default", choices=["tiny", "default"], help="benchmark size")
    parser.add_argument("--separators", default=DEFAULT_SEPARATORS, help="comma-separated separator names")
    parser.set_defaults(func=run)


def run(args) -> int:
    from msgpp.cli import main

    steps = [
        ("make the embedded benchmark", ["data", "--root", args.root, "--preset", args.preset, "--seed", str(args.seed)]),
        ("separate the test songs", ["separate", "--root", args.root, "--separators", args.separators,
                                     "--subset", "test", "--cache", args.cache]),
        ("enhance and evaluate", ["evaluate", "--root", args.root, "--cache", args.cache, "--out", f"{args.out}/report",
                                  "--separators", args.separators, "--mono16k"]),
    ]
    started = time.monotonic()
    for number, (title, argv) in enumerate(steps, 1):
        print(f"\n== demo step {number}/{len(steps)}: {title} (msgpp {' '.join(argv)})", flush=True)
        status = main(argv)
        if status:
            print(f"msgpp demo: step {number} ({title}) failed with status {status}")
            return status
    minutes = (time.monotonic() - started) / 60
    print(f"\nmsgpp demo: done in {minutes:.1f} min. Report: {args.out}/report/index.html")
    return 0
