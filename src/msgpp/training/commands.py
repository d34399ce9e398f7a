r"""`msgpp train` (LightningCLI: YAML configs in configs/, any option overridable) and
`msgpp export` (a checkpoint → the small inference file the enhancer loads).

    make train SOURCE=vocals PRESET=small                                   # = the next line
    msgpp train --config configs/base.yaml --config configs/small.yaml --config configs/small/vocals.yaml
    msgpp train ...the same... --trainer.max_steps 200 --data.batch_size 4
    msgpp train ...the same... --ckpt_path last                             # resume after a kill
    msgpp train --config configs/base.yaml --config configs/paper.yaml --config configs/paper/bass.yaml \
        --trainer.devices 4
    msgpp export runs/small/vocals --out weights/          # the best-validated checkpoint of the run
    msgpp export runs/small/vocals --last --out weights/   # the run's last.ckpt

The command-line side only: the LightningCLI (run folders, precision, loggers, resuming) is
cli.py, reading, choosing and exporting checkpoints is checkpoints.py.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train an MSG enhancer (LightningCLI; `msgpp train --help` lists every option)",
        description="Train an MSG enhancer with LightningCLI. Every option after `train` goes to it.",
        add_help=False,  # --help goes to LightningCLI, which knows the options
        prefix_chars="+",  # so that argparse hands every --option through untouched
    )
    train.add_argument("cli_args", nargs=argparse.REMAINDER)
    train.set_defaults(func=run_train_enhancer)

    export = subparsers.add_parser(
        "export",
        help="write a training checkpoint's generator as an inference weights file",
        description="Write msg-<source>-<sha8>.pt (config, generator weights, loss weights, versions, "
        "validation measures) from a `msgpp train` checkpoint. Given a run folder, a "
        "checkpoint folder or last.ckpt, it exports the checkpoint with the best validation "
        'score (docs/training.md, "Model selection").',
    )
    export.add_argument(
        "checkpoint",
        help="a run folder, a checkpoint folder, or a .ckpt file written by `msgpp train` "
        "(last.ckpt: the best of it and its sibling checkpoints)",
    )
    export.add_argument("--out", required=True, help="folder for the weights file")
    export.add_argument("--name", default=None, help="file stem (default: msg-<source>)")
    export.add_argument("--last", action="store_true", help="export last.ckpt instead of the best-validated checkpoint")
    export.add_argument(
        "--score-missing",
        action="store_true",
        help="measure the checkpoints that have no stored validation score on the run's "
        "validation songs (loads the run's data; see --root / --cache)",
    )
    export.add_argument(
        "--average",
        type=int,
        default=1,
        metavar="K",
        help="also try the mean of the chosen checkpoint's generator and the K-1 checkpoints "
        "before it, measured on the validation songs; the average is exported when it "
        'scores higher and does no more harm (docs/training.md, "Weight averaging")',
    )
    export.add_argument(
        "--interpolate",
        type=float,
        default=None,
        metavar="ALPHA",
        help="for a run that started from an enhancer file (model.init_generator): export "
        "(1 - ALPHA) x those starting weights + ALPHA x the trained ones (after --average, before "
        '--calibrate-level), measured on the validation songs (docs/training.md, "Interpolation with the start")',
    )
    export.add_argument(
        "--calibrate-level",
        choices=("input", "truth"),
        default=None,
        help="scale the generator's output so that its level matches, on the validation songs of "
        "the training separators, the input estimate's (input: the enhancer keeps the stem's "
        "level) or the ground truth's (truth); one gain, folded into the last layer "
        '(docs/training.md, "Level calibration")',
    )
    export.add_argument(
        "--root",
        default=None,
        help="for the options that measure on the validation songs (--score-missing, --average, "
        "--interpolate, --calibrate-level): the dataset folder (default: the run's data.root)",
    )
    export.add_argument(
        "--cache",
        default=None,
        help="for the options that measure on the validation songs: the estimate cache (default: the run's data.cache)",
    )
    export.set_defaults(func=run_export)


# -- train --------------------------------------------------------------------------------------


def run_train_enhancer(args) -> int:
    import warnings

    from msgpp.training.cli import build_cli  # Lightning: imported when training, not for `msgpp --help`

    # TrainingStream splits its work across DataLoader workers itself, so its length is exact.
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined")
    cli = build_cli(args.cli_args)
    if cli is None:  # --help / --print_config: LightningCLI already answered
        return 0
    trainer = cli.trainer
    trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    if trainer.state.status != "finished":
        return 130  # interrupted: the last periodic checkpoint stands
    # A run that stops on max_steps / max_time between periodic checkpoints would lose its last
    # batches; "last" is rewritten with the final state (resuming from it continues the run).
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "save_last", False) and callback.dirpath:
            path = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
            trainer.save_checkpoint(path, weights_only=False)  # optimisers too: resumable
            log.info("final checkpoint: %s  (export it with `msgpp export %s --out DIR`)", path, path)
    return 0


# -- export -------------------------------------------------------------------------------------


def run_export(args) -> int:
    import functools
    import sys

    from msgpp.enhance.weights_file import check_file_stem
    from msgpp.errors import MsgppError
    from msgpp.training import selection
    from msgpp.training.checkpoints import (
        ValidationSongs,
        calibrate_level,
        check_interpolation_weight,
        choose_checkpoint,
        export_checkpoint,
        find_checkpoints,
        interpolate_with_start,
        load_checkpoint,
        try_average,
    )

    if args.name is not None:  # before any checkpoint is read: --name is a plain file name
        check_file_stem(args.name)

    if args.average < 1:
        raise MsgppError(f"--average must be a number of checkpoints ≥ 1, got {args.average}")
    if args.interpolate is not None:
        check_interpolation_weight(args.interpolate)  # before any checkpoint is read
    # The run's validation songs, loaded at most once (~25 s), for whichever of --score-missing,
    # --average, --interpolate and --calibrate-level needs them; every checkpoint of a run holds its data settings.
    validation_songs = functools.cache(
        lambda: ValidationSongs(find_checkpoints(args.checkpoint)[0], args.root, args.cache)
    )
    chosen, record = choose_checkpoint(
        args.checkpoint, last=args.last, validation_songs=validation_songs if args.score_missing else None
    )
    if args.calibrate_level:  # refuse a generator it cannot scale before any song is measured
        from msgpp.training.calibration import check_foldable

        check_foldable(load_checkpoint(chosen, mmap=True)["msgpp"]["generator_config"])
    averaged, state_dict, gain_db, interpolated = None, None, None, None
    if args.average > 1:
        averaged, state_dict, record = try_average(args.checkpoint, chosen, record, args.average, validation_songs)
    if args.interpolate is not None:
        state_dict, record, interpolated = interpolate_with_start(
            chosen, state_dict, record, args.interpolate, validation_songs
        )
        print(
            f"interpolated with the run's start {interpolated['start']}: {1 - args.interpolate:.2f} x start + "
            f"{args.interpolate:.2f} x trained, validation score {record['score']:+.4f}",
            file=sys.stderr,
        )
    if args.calibrate_level:
        state_dict, record, gain_db = calibrate_level(
            chosen, state_dict, record, validation_songs(), args.calibrate_level
        )
        print(f"level calibration ({args.calibrate_level}): output gain {gain_db:+.2f} dB", file=sys.stderr)
    if averaged:
        print(
            f"exporting the mean of {len(averaged)} checkpoints ({', '.join(p.name for p in averaged)}): "
            f"validation score {record['score']:+.4f}",
            file=sys.stderr,
        )
    elif record is None:
        print(f"exporting {chosen} (no validation score stored for its weights)", file=sys.stderr)
    else:
        print(
            f"exporting {chosen} (batch {record['batches']}): validation score {record['score']:+.4f}",
            file=sys.stderr,
        )
    path = export_checkpoint(
        chosen,
        args.out,
        args.name,
        validation=record,
        averaged=averaged,
        state_dict=state_dict,
        level_gain_db=gain_db,
        interpolated=interpolated,
    )
    reasons = selection.do_no_harm(record["rows"]) if record is not None else []
    if reasons:
        banner = "WARNING: do no harm:"
        exported = f"the mean of {', '.join(p.name for p in averaged)}" if averaged else chosen.name
        if interpolated:
            exported += f" interpolated with {interpolated['start']}"
        lines = [
            f"{exported} is WORSE than returning its input unchanged on the validation songs:",
            *(f"  - {reason}" for reason in reasons),
            'the file was written anyway; check the run (docs/training.md, "Model selection") before using it',
        ]
        print("\n".join(f"{banner} {line}" for line in lines), file=sys.stderr)
    print(path)
    return 0
