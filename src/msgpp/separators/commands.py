"""`msgpp separate` (the dataset mode; the song mode is msgpp.stems_commands) and
`msgpp separators {list,train,score}`.

`separators train NAME` is the one spelling for every family: the separator's class names its
recipe (`Separator.trainer`), whose keyword defaults are the options' defaults. The old spellings
(`msgpp spleeter train`, `msgpp wavenet-train`) are aliases for one release, registered by the
families' own command modules with `add_train_alias`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from msgpp.constants import SUBSETS
from msgpp.errors import MsgppError, check_number, number_type, set_torch_threads

SUBTYPE_CHOICES = {"PCM_16": "PCM_16", "pcm16": "PCM_16", "float": "FLOAT", "FLOAT": "FLOAT"}
TRAIN_DESCRIPTION = (
    "Train a small configuration of a separator on <root>/train with its family's recipe (msgpp's trainer for "
    "demucs_v2, hdemucs_v3, openunmix and wavenet; spleeter's own trainer for spleeter), score it on <root>/test "
    "and write its weights, SHA256SUMS and MODEL_CARD.md. Options left out take the family's defaults; an option "
    "the family does not use is an error."
)


def register(subparsers) -> None:
    _register_separate(subparsers)
    group = subparsers.add_parser("separators", help="list, train or score separators")
    actions = group.add_subparsers(dest="separators_command", metavar="<action>", required=True)
    listing = actions.add_parser("list", help="registered separators (built-in and entry points)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=run_list)

    train = actions.add_parser(
        "train", help="train a small configuration of a separator on a dataset", description=TRAIN_DESCRIPTION
    )
    train.add_argument("name", help="separator name, e.g. demucs_v2")
    add_train_arguments(train)
    train.set_defaults(func=run_train_separator)

    score = actions.add_parser("score", help="SI-SDR improvement and rolloff error of a separator on a subset")
    score.add_argument("name")
    score.add_argument("--root", required=True, type=Path)
    score.add_argument("--subset", choices=SUBSETS, default="test")
    score.add_argument("--weights", help="weights location (default: the shipped ones)")
    score.add_argument("--limit", type=number_type("--limit", minimum=1, integer=True), help="at most this many songs")
    score.add_argument("--threads", type=number_type("--threads", minimum=1, integer=True))
    score.set_defaults(func=run_score)

    download = subparsers.add_parser(
        "download",
        help="download published weights ahead of time: the MSG authors' generators (paper-bass, ...) "
        "and the separators' released models (hdemucs_mmi, repro_mdx_a_time_only, umxhq, 4stems, 2stems)",
        description="Download published weights into their caches so that they load offline afterwards: the MSG "
        "authors' generators from the Hugging Face hub (converted into msgpp's weights cache; HF_ENDPOINT, "
        "HF_HUB_CACHE and HF_HUB_OFFLINE apply) and the separators' released models from their upstreams "
        "(docs/downloads.md).",
    )
    download.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="paper-bass, paper-drums, paper-vocals, hdemucs_mmi, repro_mdx_a_time_only, umxhq, 4stems, 2stems, or all",
    )
    download.add_argument("--force", action="store_true", help="download (and convert) again even when cached")
    download.set_defaults(func=run_download)


def _register_separate(subparsers) -> None:
    separate = subparsers.add_parser(
        "separate",
        help="separate songs into stems (INPUT...), or a dataset into the estimate cache (--root)",
        description="Two modes. Songs: `msgpp separate INPUT... --out DIR [--enhance]` separates audio files "
        "(or folders, searched recursively) into stem files, optionally enhanced by MSG "
        "(docs/stems.md). Dataset: `msgpp separate --root DIR --separators A,B` separates every "
        "song of a MUSDB18-HQ-layout folder with each separator and stores the estimates in the "
        "cache (<cache>/<separator>/<weights id>/<subset>/<track>/<source>.wav); done tracks are "
        "skipped, so an interrupted run resumes.",
    )
    separate.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        metavar="INPUT",
        help="songs: audio files or folders (searched recursively); omit for the dataset mode",
    )
    separate.add_argument("--root", type=Path, help="dataset mode: root with <root>/{train,test}/<track>/mixture.wav")
    separate.add_argument(
        "--separators", help="dataset mode: comma-separated names, e.g. demucs_v2,hdemucs_v3,openunmix"
    )
    separate.add_argument("--subset", choices=SUBSETS, help="dataset mode: one subset only (default: both)")
    separate.add_argument(
        "--cache",
        type=Path,
        default=Path("cache/estimates"),
        help="dataset mode: estimate cache folder (default: %(default)s)",
    )
    separate.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="weights for one separator (a local folder/file, or an upstream name when online); repeatable. "
        "Songs: the --separator's weights, NAME= optional",
    )
    separate.add_argument(
        "--force",
        action="store_true",
        help="dataset mode: recompute tracks that are already cached; songs: overwrite existing outputs",
    )
    separate.add_argument(
        "--format",
        help="dataset mode: sample format of the estimates, PCM_16 (default) or float (PCM_16 files "
        "that would clip are written as float); songs: output format wav, flac, ogg, mp3 or "
        "aiff (default: the input's when wav, flac or aiff, else wav)",
    )
    separate.add_argument(
        "--accelerator",
        default="auto",
        help="dataset mode: Lightning accelerator: auto, cpu, gpu (default: %(default)s)",
    )
    separate.add_argument(
        "--devices", default="auto", help="dataset mode: Lightning devices: auto, or a count (several GPUs run DDP)"
    )
    separate.add_argument(
        "--threads",
        type=number_type("--threads", minimum=1, integer=True),
        help="torch CPU threads (default: torch's own choice)",
    )
    separate.add_argument(
        "--workers",
        type=number_type("--workers", minimum=0, integer=True),
        help="dataset mode: DataLoader workers that read the mixtures (default 0)",
    )
    from msgpp.stems_commands import add_arguments

    add_arguments(separate)
    separate.set_defaults(func=run_separate)


# -- msgpp separate -----------------------------------------------------------------------------
def run_separate(args) -> int:
    if args.inputs:
        if args.root is not None:
            raise MsgppError("give either INPUT files (songs to stems) or --root (a dataset into the cache), not both")
        from msgpp.stems_commands import run

        return run(args)
    if args.root is None:
        raise MsgppError(
            "nothing to separate: give audio files or folders (msgpp separate song.mp3 --out stems/), "
            "or a dataset with --root and --separators"
        )
    _check_dataset_mode(args)
    from msgpp.separators.fill_cache import fill_cache
    from msgpp.separators.registry import parse_names

    names = parse_names(args.separators)
    weights = _parse_weights(args.weights, names)
    set_torch_threads(args.threads)
    fill_cache(
        args.root,
        names,
        args.cache,
        subsets=(args.subset,) if args.subset else SUBSETS,
        weights=weights,
        force=args.force,
        subtype=SUBTYPE_CHOICES[args.format or "PCM_16"],
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        workers=args.workers or 0,
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
            raise MsgppError(
                f"--{name.replace('_', '-')} belongs to the song mode (msgpp separate INPUT... --out DIR), "
                "not to --root"
            )


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


# -- msgpp separators list -----------------------------------------------------------------------
def run_list(args) -> int:
    """Each separator with the status of its weights (shipped or not), and under it each released
    model it can load by name: downloaded, or downloadable (msgpp.separators.released)."""
    from msgpp.separators import released
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
        rows.append(
            {
                "name": name,
                "family": klass.family,
                "sample_rate": klass.default_sample_rate,
                "sources": list(klass.default_sources),
                "origin": "built-in" if name in BUILTIN else "entry point",
                "status": "shipped" if shipped.is_dir() else "no shipped weights",
                "shipped_weights": str(shipped) if shipped.is_dir() else None,
                "description": klass.description,
                "released": [
                    {
                        "weights": weights,
                        "status": "downloaded" if released.is_downloaded(weights) else "downloadable",
                        "where": str(released.where(weights)),
                        "from": released.files(weights)[0].url,
                        "about": released.RELEASED[weights].about,
                    }
                    for weights in released.for_separator(name)
                ],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<14} unavailable: {row['error']}")
            continue
        print(
            f"{row['name']:<14} {row['family']:<12} {row['sample_rate']:>6} Hz  {','.join(row['sources']):<24} "
            f"{row['origin']:<12} {row['status']:<19} {row['description']}"
        )
        for weights in row["released"]:
            shown = weights["where"] if weights["status"] == "downloaded" else weights["from"]
            print(f"  weights={weights['weights']:<24} {weights['status']:<13} {weights['about']}; {shown}")
    return 0


# -- msgpp download ----------------------------------------------------------------------------------
def run_download(args) -> int:
    """`msgpp download NAME...`: the MSG authors' generators (paper-bass, ...) and the separators'
    released models (hdemucs_mmi, repro_mdx_a_time_only, umxhq, 4stems, 2stems); `all`: every one."""
    from msgpp.enhance import published
    from msgpp.separators import released

    known = [*published.PUBLISHED, *released.RELEASED]
    names = known if args.names == ["all"] else args.names
    for name in names:
        if name not in known:
            raise MsgppError(f"unknown published name {name!r}; choose from {', '.join(known)} (or all)")
    for name in dict.fromkeys(names):
        if name in published.PUBLISHED:
            print(f"{name}: {published.ensure(name, force=args.force)}")
        else:
            paths = released.ensure(name, force=args.force)
            print(f"{name}: {', '.join(str(path) for path in paths)}")
    return 0


# -- msgpp separators train ----------------------------------------------------------------------
# Options whose defaults are the family's (its recipe's keyword defaults): argparse default None.
FAMILY_OPTIONS = (
    "steps",
    "max_minutes",
    "batch_size",
    "segment_seconds",
    "lr",
    "seed",
    "score_tracks",
    "arch",
    "preset",
    "init",
    "songs",
    "work",
)


def add_train_arguments(parser) -> None:
    """The options of `msgpp separators train` (and of its old spellings)."""
    parser.add_argument("--root", required=True, type=Path, help="dataset root with train/ and test/ (for scoring)")
    parser.add_argument("--out", type=Path, help="weights folder to write (default: the shipped separators/<name>/)")
    parser.add_argument(
        "--steps",
        type=number_type("--steps", minimum=1, integer=True),
        help="training steps (default: the family's: 2000; spleeter 100000)",
    )
    parser.add_argument(
        "--max-minutes",
        type=number_type("--max-minutes", minimum=0),
        help="stop after this wall time; 0: no limit (default: the family's: 10; wavenet, spleeter 7)",
    )
    parser.add_argument(
        "--batch-size", type=number_type("--batch-size", minimum=1, integer=True), help="examples per step (default: 4)"
    )
    parser.add_argument(
        "--segment",
        dest="segment_seconds",
        metavar="SECONDS",
        type=number_type("--segment", above=0),
        help="training segment in seconds (default: the family's: 1; wavenet 0.5)",
    )
    parser.add_argument("--lr", type=number_type("--lr", above=0), help="learning rate (default: 0.001)")
    parser.add_argument("--seed", type=int, help="random seed (default: the family's: 0; spleeter 3)")
    parser.add_argument(
        "--threads",
        type=number_type("--threads", minimum=1, integer=True),
        default=1,
        help="CPU threads (default: %(default)s; more threads than free cores run far slower)",
    )
    parser.add_argument(
        "--score-tracks",
        type=number_type("--score-tracks", minimum=1, integer=True),
        help="score on at most this many test songs (default: all)",
    )
    family = parser.add_argument_group("family options (an error for a family that has no use for them)")
    family.add_argument(
        "--arch",
        help="demucs_v2, hdemucs_v3, openunmix: JSON overrides of the small architecture, e.g. '{\"channels\": 24}'",
    )
    family.add_argument("--preset", help="wavenet: small | multi-instrument | singing-voice (default: small)")
    family.add_argument("--init", type=Path, help="wavenet: continue from these weights instead of a random start")
    family.add_argument(
        "--songs",
        type=number_type("--songs", minimum=1, integer=True),
        help="spleeter: train on the first N training songs (default: all)",
    )
    family.add_argument(
        "--work", type=Path, help="spleeter: keep checkpoints and spectrogram cache here; a rerun resumes"
    )


def run_train_separator(args) -> int:
    """Train the separator `args.name` with its family's recipe; print the result as JSON."""
    import inspect
    from importlib import import_module

    from msgpp.separators.registry import separator_class
    from msgpp.separators.weights import separators_dir

    klass = separator_class(args.name)
    if not klass.trainer:
        raise MsgppError(f"separator {args.name!r} has no trainable preset in msgpp")
    module_name, _, function_name = klass.trainer.partition(":")
    recipe = getattr(import_module(module_name), function_name)
    accepted = inspect.signature(recipe).parameters
    options = {name: getattr(args, name) for name in FAMILY_OPTIONS if getattr(args, name, None) is not None}
    unused = [name for name in options if name not in accepted]
    if unused:
        flags = ", ".join(
            "--segment" if name == "segment_seconds" else "--" + name.replace("_", "-") for name in unused
        )
        raise MsgppError(f"{flags}: not an option for {args.name} (msgpp separators train --help)")
    if "arch" in options:
        options["arch"] = _json_object("--arch", options["arch"])
    if "name" in accepted:
        options["name"] = args.name
    if "threads" in accepted:  # torch's for msgpp's trainer (set here too), TensorFlow's for spleeter's
        options["threads"] = args.threads
    set_torch_threads(args.threads)
    result = recipe(root=args.root, out=args.out or separators_dir() / args.name, **options)
    print(json.dumps(result, indent=2))
    return 0


def add_train_alias(subparsers, old: str, name: str, summary: str) -> None:
    """`old`, an old spelling of `msgpp separators train NAME`, kept for one release: the same
    options; it says the new spelling on stderr (one line), then trains."""
    parser = subparsers.add_parser(old, help=f"{summary} (old spelling of `msgpp separators train {name}`)")
    add_train_arguments(parser)
    spelling = parser.prog.removeprefix("msgpp ")  # "spleeter train", "wavenet-train"

    def run_old_spelling(args) -> int:
        print(
            f"msgpp: `msgpp {spelling}` is now `msgpp separators train {name}`; the old spelling goes in the "
            "next release",
            file=sys.stderr,
        )
        return run_train_separator(args)

    parser.set_defaults(func=run_old_spelling, name=name)


def _json_object(flag: str, text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise MsgppError(f"{flag} {text!r}: expected a JSON object")
    return value


# -- msgpp separators score ----------------------------------------------------------------------
def run_score(args) -> int:
    from msgpp.separators.registry import get
    from msgpp.separators.score_table import format_table, score_separator

    set_torch_threads(args.threads)
    separator = get(args.name, weights=args.weights)
    scores = score_separator(separator, args.root, args.subset, limit=args.limit)
    print(format_table(scores))
    return 0
