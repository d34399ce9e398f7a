"""`msgpp separate` and `msgpp separators {list,train,score}`."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from msgpp.errors import MsgppError, check_number, number_type

SUBTYPE_CHOICES = {"PCM_16": "PCM_16", "pcm16": "PCM_16", "float": "FLOAT", "FLOAT": "FLOAT"}


def register(subparsers) -> None:
    separate = subparsers.add_parser(
        "separate", help="separate songs into stems (INPUT...), or a dataset into the estimate cache (--root)",
        description="Two modes. Songs: `msgpp separate INPUT... --out DIR [--enhance]` separates audio files "
                    "(or folders, searched recursively) into stem files, optionally enhanced by MSG "
                    "(docs/stems.md). Dataset: `msgpp separate --root DIR --separators A,B` separates every "
                    "song of a MUSDB18-HQ-layout folder with each separator and stores the estimates in the "
                    "cache (<cache>/<separator>/<weights id>/<subset>/<track>/<source>.wav); done tracks are "
                    "skipped, so an interrupted run resumes.",
    )
    separate.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                          help="songs: audio files or folders (searched recursively); omit for the dataset mode")
    separate.add_argument("--root", type=Path, help="dataset mode: root with <root>/{train,test}/<track>/mixture.wav")
    separate.add_argument("--separators", help="dataset mode: comma-separated names, e.g. demucs_v2,hdemucs_v3,openunmix")
    separate.add_argument("--subset", choices=("train", "test"), help="dataset mode: one subset only (default: both)")
    separate.add_argument("--cache", type=Path, default=Path("cache/estimates"), help="dataset mode: estimate cache folder (default: %(default)s)")
    separate.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                          help="weights for one separator (a local folder/file, or an upstream name when online); repeatable. "
                               "Songs: the --separator's weights, NAME= optional")
    separate.add_argument("--force", action="store_true",
                          help="dataset mode: recompute tracks that are already cached; songs: overwrite existing outputs")
    separate.add_argument("--format",
                          help="dataset mode: sample format of the estimates, PCM_16 (default) or float (PCM_16 files "
                               "that would clip are written as float); songs: output format wav, flac, ogg, mp3 or "
                               "aiff (default: the input's when wav, flac or aiff, else wav)")
    separate.add_argument("--accelerator", default="auto", help="dataset mode: Lightning accelerator: auto, cpu, gpu (default: %(default)s)")
    separate.add_argument("--devices", default="auto", help="dataset mode: Lightning devices: auto, or a count (several GPUs run DDP)")
    separate.add_argument("--threads", type=number_type("--threads", minimum=1, integer=True), help="torch CPU threads (default: torch's own choice)")
    separate.add_argument("--workers", type=number_type("--workers", minimum=0, integer=True), help="dataset mode: DataLoader workers that read the mixtures (default 0)")
    from msgpp.stems_commands import add_arguments

    add_arguments(separate)
    separate.set_defaults(func=run_separate)

    group = subparsers.add_parser("separators", help="list, train or score separators")
    commands = group.add_subparsers(dest="separators_command", metavar="<action>", required=True)

    listing = commands.add_parser("list", help="registered separators (built-in and entry points)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=run_list)

    train = commands.add_parser("train", help="train a small configuration of a separator on a dataset")
    train.add_argument("name", help="separator name, e.g. demucs_v2")
    train.add_argument("--root", required=True, type=Path, help="dataset root with train/ (and test/ for scoring)")
    train.add_argument("--out", type=Path, help="weights folder to write (default: the shipped separators/<name>/)")
    train.add_argument("--steps", type=number_type("--steps", minimum=1, integer=True), default=2000, help="optimiser steps (default: %(default)s)")
    train.add_argument("--max-minutes", type=number_type("--max-minutes", minimum=0), default=10.0, help="stop after this wall time; 0: no limit (default: %(default)s)")
    train.add_argument("--batch-size", type=number_type("--batch-size", minimum=1, integer=True), default=4)
    train.add_argument("--segment", type=number_type("--segment", above=0), default=1.0, help="training segment in seconds (default: %(default)s)")
    train.add_argument("--lr", type=number_type("--lr", above=0), default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=number_type("--threads", minimum=1, integer=True), default=1,
                       help="torch CPU threads (default: %(default)s; more threads than free cores run far slower)")
    train.add_argument("--arch", default="{}", help='JSON overrides of the architecture preset, e.g. \'{"channels": 24}\'')
    train.add_argument("--score-tracks", type=number_type("--score-tracks", minimum=1, integer=True), help="score on at most this many test songs (default: all)")
    train.set_defaults(func=run_train)

    score = commands.add_parser("score", help="SI-SDR improvement and rolloff error of a separator on a subset")
    score.add_argument("name")
    score.add_argument("--root", required=True, type=Path)
    score.add_argument("--subset", choices=("train", "test"), default="test")
    score.add_argument("--weights", help="weights location (default: the shipped ones)")
    score.add_argument("--limit", type=number_type("--limit", minimum=1, integer=True), help="at most this many songs")
    score.add_argument("--threads", type=number_type("--threads", minimum=1, integer=True))
    score.set_defaults(func=run_score)


# -- msgpp separate -----------------------------------------------------------------------------
def run_separate(args) -> int:
    if args.inputs:
        if args.root is not None:
            raise MsgppError("give either INPUT files (songs to stems) or --root (a dataset into the cache), not both")
        from msgpp.stems_commands import run

        return run(args)
    if args.root is None:
        raise MsgppError("nothing to separate: give audio files or folders (msgpp separate song.mp3 --out stems/), "
                         "or a dataset with --root and --separators")
    _check_dataset_mode(args)
    from msgpp.separators import cache
    from msgpp.separators.registry import parse_names, separator_class
    from msgpp.separators.tracks import SUBSETS, list_tracks

    names = parse_names(args.separators)
    weights = _parse_weights(args.weights, names)
    tracks = list_tracks(args.root, (args.subset,) if args.subset else SUBSETS)
    _check_writable(args.cache)
    _set_threads(args.threads)

    # Check every separator's weights before separating anything; fingerprints key the cache.
    infos = {name: separator_class(name).weights_info(weights.get(name)) for name in names}
    for name in names:
        started = time.monotonic()
        klass, info = separator_class(name), infos[name]
        # A fully cached separator needs no model and no Lightning.
        if not args.force and not cache.pending_tracks(args.cache, name, info.id, tracks):
            print(f"{name} (weights {info.id}): all {len(tracks)} tracks already cached", file=sys.stderr)
            continue
        from msgpp.separators.predict import separate_tracks

        separator = klass.load(weights=weights.get(name))  # loaded once for all tracks
        summary = separate_tracks(
            separator, tracks, args.cache, force=args.force, subtype=SUBTYPE_CHOICES[args.format or "PCM_16"],
            accelerator=args.accelerator, devices=_devices(args.devices), workers=args.workers or 0,
        )
        if summary.get("rank", 0) == 0:
            print(
                f"{name} (weights {summary['weights_id']}): {summary['separated']} separated, "
                f"{summary['skipped']} already cached, {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
    return 0


def _check_dataset_mode(args) -> None:
    """The dataset mode's own checks (argparse cannot make them: the song mode shares the parser)."""
    from msgpp.stems_commands import SONG_ONLY

    if not args.separators:
        raise MsgppError("--root needs --separators (comma-separated names, e.g. demucs_v2,openunmix)")
    if args.format is not None and args.format not in SUBTYPE_CHOICES:
        raise MsgppError(f"--format {args.format!r}: with --root choose one of {', '.join(sorted(SUBTYPE_CHOICES))}")
    _check_devices(args.accelerator, args.devices)
    if args.workers is not None:
        check_number("--workers", args.workers, minimum=0, integer=True)
    for name in SONG_ONLY:
        if getattr(args, name, None) not in (None, False, []):
            raise MsgppError(f"--{name.replace('_', '-')} belongs to the song mode (msgpp separate INPUT... --out DIR), "
                             "not to --root")


def _parse_weights(items: list[str], names: list[str]) -> dict[str, str]:
    weights = {}
    for item in items:
        name, sep, location = item.partition("=")
        if not sep or not location:
            raise MsgppError(f"--weights {item!r}: expected NAME=PATH")
        if name not in names:
            raise MsgppError(f"--weights {item!r}: {name!r} is not among --separators ({', '.join(names)})")
        weights[name] = location
    return weights


def _check_writable(folder: Path) -> None:
    from msgpp.atomic import output_folder

    output_folder(folder, "--cache")


ACCELERATORS = ("auto", "cpu", "gpu", "cuda")


def _check_devices(accelerator: str, devices: str) -> None:
    """Refuse, before any work, an accelerator that is not here or more devices than exist (Lightning
    would wait forever for the missing ranks)."""
    import torch

    if accelerator not in ACCELERATORS:
        raise MsgppError(f"--accelerator {accelerator!r}: choose one of {', '.join(ACCELERATORS)}")
    cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not cuda:
        raise MsgppError(f"--accelerator {accelerator}: no CUDA GPU is available here; use --accelerator cpu")
    if str(devices) == "auto":
        return
    if not str(devices).isdigit() or int(devices) < 1:
        raise MsgppError(f"--devices {devices!r}: expected auto or a positive count")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and cuda)
    available = torch.cuda.device_count() if on_gpu else 1
    if int(devices) > available:
        where = f"{available} GPU(s)" if on_gpu else "the CPU (one process; use --threads for more cores)"
        raise MsgppError(f"--devices {devices}: more devices than exist here ({where})")


def _devices(value: str):
    return int(value) if str(value).isdigit() else value


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        check_number("--threads", threads, minimum=1, integer=True)
        import torch

        torch.set_num_threads(threads)


# -- msgpp separators list -----------------------------------------------------------------------
def run_list(args) -> int:
    from msgpp.separators.registry import BUILTIN, names, separator_class
    from msgpp.separators.weights import separators_dir

    rows = []
    for name in names():
        try:
            klass = separator_class(name)
        except MsgppError as error:
            rows.append({"name": name, "error": str(error)})
            continue
        shipped = separators_dir() / name
        rows.append({
            "name": name, "family": klass.family, "sample_rate": klass.default_sample_rate,
            "sources": list(klass.default_sources), "origin": "built-in" if name in BUILTIN else "entry point",
            "shipped_weights": str(shipped) if shipped.is_dir() else None, "description": klass.description,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<14} unavailable: {row['error']}")
            continue
        weights = "shipped weights" if row["shipped_weights"] else "no shipped weights"
        print(f"{row['name']:<14} {row['family']:<12} {row['sample_rate']:>6} Hz  {','.join(row['sources']):<24} "
              f"{row['origin']:<12} {weights:<19} {row['description']}")
    return 0


# -- msgpp separators train ----------------------------------------------------------------------
def run_train(args) -> int:
    from msgpp.separators.registry import separator_class
    from msgpp.separators.weights import separators_dir

    klass = separator_class(args.name)
    if not hasattr(klass, "build") or args.name not in getattr(sys.modules[klass.__module__], "PRESETS", {}):
        raise MsgppError(f"separator {args.name!r} has no trainable preset in msgpp")
    try:
        overrides = json.loads(args.arch)
        assert isinstance(overrides, dict)
    except (ValueError, AssertionError):
        raise MsgppError(f"--arch {args.arch!r}: expected a JSON object") from None
    out = args.out or separators_dir() / args.name
    _set_threads(args.threads)

    from msgpp.separators.card import write_model_card
    from msgpp.separators.scorecard import score_separator
    from msgpp.separators.training import TrainingOptions, train_separator

    architecture = {**sys.modules[klass.__module__].PRESETS[args.name], **overrides}
    import torch

    torch.manual_seed(args.seed)  # the initial weights
    try:
        separator = klass.build(architecture)
    except Exception as error:  # noqa: BLE001 - any bad override: a model class raises what it likes
        raise MsgppError(f"--arch: cannot build {args.name} with these arguments ({error})") from None
    options = TrainingOptions(steps=args.steps, max_minutes=args.max_minutes, batch_size=args.batch_size,
                              segment_seconds=args.segment, lr=args.lr, seed=args.seed)
    facts = train_separator(separator, args.root, options)
    facts["data"] = _data_facts(args.root)
    facts["threads"] = torch.get_num_threads()

    # Write into a fresh folder beside `out`, then swap it in, so `out` is never half-written.
    staging = out.parent / f".{out.name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    info = separator.save_weights(staging, training=facts)
    scores = score_separator(klass.load(staging), args.root, "test", limit=args.score_tracks)
    command = (
        f"msgpp separators train {args.name} --root {shlex.quote(str(args.root))} --steps {args.steps} "
        f"--max-minutes {args.max_minutes:g} --batch-size {args.batch_size} --segment {args.segment:g} "
        f"--lr {args.lr:g} --seed {args.seed} --threads {args.threads}"
        + (f" --arch {shlex.quote(args.arch)}" if overrides else "")
    )
    write_model_card(staging, separator, architecture, info, facts, scores, command)
    _swap_in(staging, out)
    print(json.dumps({"weights": str(out), "weights_id": info.id, "training": facts, "scores": scores["sources"]}, indent=2))
    return 0


def _data_facts(root: Path) -> dict:
    facts = {"root": str(root)}
    manifest = Path(root) / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            facts.update({key: data[key] for key in ("seed", "preset", "version") if key in data})
        except ValueError:
            pass
    return facts


def _swap_in(staging: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


# -- msgpp separators score ----------------------------------------------------------------------
def run_score(args) -> int:
    from msgpp.separators.registry import get
    from msgpp.separators.scorecard import format_table, score_separator

    _set_threads(args.threads)
    separator = get(args.name, weights=args.weights)
    scores = score_separator(separator, args.root, args.subset, limit=args.limit)
    print(format_table(scores))
    return 0
