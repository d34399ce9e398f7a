"""`msgpp data`: make the embedded benchmark, or check one against its manifest."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="make the embedded multitrack benchmark (MUSDB18-HQ layout), or verify one",
        description=(
            "Render a seeded set of songs with FluidSynth into <root>/{train,test}/<track>/"
            "{mixture,drums,bass,other,vocals}.wav and write <root>/manifest.json last. "
            "Songs already there with matching checksums are kept, so an interrupted run resumes."
        ),
    )
    parser.add_argument("--root", required=True, help="output folder (empty, new, or a partial run of the same set)")
    parser.add_argument(
        "--preset",
        default="default",
        help="tiny (2+2 songs of 6 s), small (20+6 of 12 s) or "
        "default (100 train + 20 test songs of 20 s); default: %(default)s",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files); default: %(default)s")
    parser.add_argument(
        "--soundfont",
        default=None,
        help="General MIDI .sf2/.sf3 file (default: $MSGPP_SOUNDFONT or the system's FluidR3_GM.sf2)",
    )
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check an existing set against its manifest; exit 1 if a file is missing or differs",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from msgpp.data.benchmark import generate_benchmark, read_manifest, verify_benchmark

    root = Path(args.root)
    if args.verify:
        manifest = read_manifest(root)
        bad = verify_benchmark(root)
        total = len(manifest["files"])
        if bad:
            for relative in bad[:20]:
                print(f"differs or missing: {relative}")
            if len(bad) > 20:
                print(f"... and {len(bad) - 20} more")
            print(f"{root}: {len(bad)} of {total} files do not match the manifest")
            return 1
        print(f"{root}: all {total} files match the manifest (preset {manifest['preset']}, seed {manifest['seed']})")
        return 0
    manifest = generate_benchmark(
        root,
        preset=args.preset,
        seed=args.seed,
        soundfont=args.soundfont,
        workers=args.workers,
        progress=not args.quiet,
    )
    size = sum((root / rel).stat().st_size for rel in manifest["files"])
    tracks = manifest["tracks"]
    print(
        f"{root}: {len(tracks['train'])} train + {len(tracks['test'])} test songs, "
        f"{len(manifest['files'])} files, {size / 1e9:.2f} GB (preset {manifest['preset']}, seed {manifest['seed']}, "
        f"soundfont {manifest['soundfont']['name']})"
    )
    return 0
