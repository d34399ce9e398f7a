"""`msgpp separate INPUT...`: songs in, (enhanced) stems out — the command over msgpp.stems.

    msgpp separate song.mp3 --enhance --out stems/
    msgpp separate albums/ --separator openunmix --stems vocals,bass --enhance --filename "{stem}/{track}.{ext}"

The dataset mode (`msgpp separate --root ...`, msgpp.separators.commands) shares the subcommand:
positional INPUTs select this mode. Every input and output is checked before any model runs;
each song's stems are renamed into place together once all are complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msgpp.constants import BACKENDS, CLIP_POLICIES, OUTPUT_FORMATS, OUTPUT_SUBTYPES
from msgpp.errors import MsgppError, number_type, set_torch_threads

DEFAULT_FILENAME = "{track}/{stem}.{ext}"  # msgpp.stems.DEFAULT_FILENAME, without importing numpy here
# Options of the dataset mode that mean nothing here, and options of this mode that mean nothing there.
DATASET_ONLY = ("separators", "subset", "workers")
SONG_ONLY = (
    "out",
    "separator",
    "enhance",
    "enhancer",
    "stems",
    "keep_raw",
    "filename",
    "subtype",
    "clip",
    "device",
    "backend",
    "consistent",
    "block",
    "skip_existing",
    "quiet",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The song mode's options on the `separate` parser (INPUT is added by the caller)."""
    song = parser.add_argument_group("songs (msgpp separate INPUT... --out DIR)")
    song.add_argument("--out", type=Path, help="output folder (default: ./stems)")
    song.add_argument(
        "--separator", metavar="NAME", help="a registered separator (default: hdemucs_v3; msgpp separators list)"
    )
    song.add_argument(
        "--enhance", action="store_true", help="put each stem through the shipped MSG enhancer for its source"
    )
    song.add_argument(
        "--enhancer",
        action="append",
        default=[],
        metavar="SOURCE=NAME_OR_PATH",
        help="the enhancer for one source: a shipped name or a weights file (repeatable; with --enhance)",
    )
    song.add_argument("--stems", metavar="A,B", help="only these stems, e.g. bass,drums (default: all the separator's)")
    song.add_argument(
        "--keep-raw",
        action="store_true",
        help="also write the separator's stem, as {stem}=<stem>_raw, beside the enhanced one",
    )
    song.add_argument(
        "--consistent",
        action="store_true",
        help="share the residual mixture − Σ stems among the stems, by their energy per STFT bin, "
        "so the stems sum to the song (docs/stems.md)",
    )
    song.add_argument(
        "--filename",
        metavar="TEMPLATE",
        help="output path inside --out with {track}, {stem}, {ext} "
        f"(default: {DEFAULT_FILENAME.replace('%', '%%')})",
    )
    song.add_argument(
        "--subtype",
        choices=OUTPUT_SUBTYPES,
        help="sample format (default: the input's depth; FLAC and 16/24-bit inputs stay PCM)",
    )
    song.add_argument(
        "--clip",
        choices=CLIP_POLICIES,
        help="a PCM stem peak above full scale: stop with an error (default), hard-clip, "
        "or scale that stem to a 0.999 peak",
    )
    song.add_argument(
        "--skip-existing", action="store_true", help="skip a song whose outputs all exist (resume an interrupted batch)"
    )
    song.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    song.add_argument("--backend", choices=BACKENDS, help="the enhancers' backend (default: auto; see msgpp enhance)")
    song.add_argument(
        "--block",
        type=number_type("--block", above=0),
        metavar="SECONDS",
        help="seconds per separation block; memory grows with it (default: 30)",
    )
    song.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """The song mode: plan every input, then separate (and enhance) each, one progress bar."""
    from msgpp.enhance.jobs import files_bar
    from msgpp.stems import BLOCK_OVERLAP, BLOCK_SECONDS, DEFAULT_SEPARATOR, StemSplitter

    for name in DATASET_ONLY:
        if getattr(args, name, None):
            raise MsgppError(
                f"--{name.replace('_', '-')} belongs to the dataset mode (--root); "
                "with INPUT files use --separator NAME"
            )
    if args.format is not None and args.format not in OUTPUT_FORMATS:
        raise MsgppError(f"--format {args.format!r}: with INPUT files choose one of {', '.join(OUTPUT_FORMATS)}")
    set_torch_threads(args.threads)
    separator = args.separator or DEFAULT_SEPARATOR
    block = BLOCK_SECONDS if args.block is None else args.block
    if block <= 0:
        raise MsgppError(f"--block must be positive seconds, got {block}")
    out = args.out or Path("stems")
    songs = collect_inputs(args.inputs, out)
    splitter = StemSplitter(
        separator,
        enhance=args.enhance,
        stems=args.stems,
        consistent=args.consistent,
        keep_raw=args.keep_raw,
        enhancers=parse_enhancers(args.enhancer),
        weights=_weights(args.weights, separator),
        device=args.device,
        backend=args.backend or "auto",
        block=block,
        block_overlap=min(BLOCK_OVERLAP, block / 2),
    )
    jobs, claimed = [], {}
    for path, track in songs:
        job = splitter.plan(
            path,
            out,
            track=track,
            filename=args.filename or DEFAULT_FILENAME,
            file_format=args.format,
            subtype=args.subtype,
            clip=args.clip or "error",
            overwrite=args.force or args.skip_existing,
        )
        for name, spec in job.outputs.items():
            if spec.path in claimed:
                raise MsgppError(
                    f"{path} ({name}) and {claimed[spec.path]} would both be written to {spec.path}; "
                    "use {track} in --filename"
                )
            claimed[spec.path] = f"{path} ({name})"
        if args.skip_existing and not args.force:
            present = [spec.path for spec in job.outputs.values() if spec.path.exists()]
            if len(present) == len(job.outputs):
                print(f"{path}: all {len(present)} outputs exist, skipped", file=sys.stderr)
                continue
            if present:
                raise MsgppError(
                    f"{present[0]}: exists, but other outputs of {path} do not; pass --force to redo the song"
                )
        jobs.append(job)
    total = sum(job.seconds for job in jobs) * splitter.work_factor()
    with files_bar(total, args.quiet) as bar:
        for number, job in enumerate(jobs, 1):
            bar.set_description(f"[{number}/{len(jobs)}] {job.input.name}")
            written = splitter.run(job, progress=bar)
            for path in written.values():
                bar.write(str(path), file=sys.stdout)
    return 0


def collect_inputs(inputs: list[Path], out: Path) -> list[tuple[Path, str]]:
    """(file, track) for every audio file named or found (recursively) in a named folder. A
    folder's track is the file's path inside it without the extension, so its layout is
    mirrored; a file named twice (or named and inside a named folder) is done once; files
    under the output folder are never inputs."""
    from msgpp.stems import AUDIO_EXTENSIONS

    out_resolved = out.resolve()
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for given in inputs:
        if given.is_dir():
            files = sorted(
                path
                for path in given.rglob("*")
                if path.suffix.lower() in AUDIO_EXTENSIONS
                and path.is_file()
                and not any(part.startswith(".") for part in path.relative_to(given).parts)
                and not path.resolve().is_relative_to(out_resolved)
            )
            if not files:
                raise MsgppError(f"{given}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
            candidates = [(path, path.relative_to(given).with_suffix("").as_posix()) for path in files]
        elif given.exists():
            candidates = [(given, given.stem)]
        else:
            raise MsgppError(f"{given}: no such file or folder")
        for path, track in candidates:
            key = path.resolve()
            if key in seen:
                continue
            seen.add(key)
            found.append((path, track))
    return found


def parse_enhancers(items: list[str]) -> dict[str, str]:
    enhancers = {}
    for item in items:
        source, sep, location = item.partition("=")
        if not sep or not source or not location:
            raise MsgppError(f"--enhancer {item!r}: expected SOURCE=NAME_OR_PATH, e.g. bass=my/msg-bass-1a2b3c4d.pt")
        enhancers[source.strip()] = location
    return enhancers


def _weights(items: list[str], separator: str) -> str | None:
    location = None
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:  # a bare location is the one separator's
            name, path = separator, item
        if name != separator or not path:
            raise MsgppError(f"--weights {item!r}: expected {separator}=PATH (the --separator's weights)")
        location = path
    return location
