"""`msgpp train` (LightningCLI: YAML configs in configs/, any option overridable) and
`msgpp export` (a checkpoint → the small inference file the enhancer loads).

    msgpp train --config configs/small/vocals.yaml
    msgpp train --config configs/small/vocals.yaml --trainer.max_steps 200 --data.batch_size 4
    msgpp train --config configs/small/vocals.yaml --ckpt_path last        # resume after a kill
    msgpp train --config configs/paper/bass.yaml --trainer.devices 4        # DDP on 4 GPUs
    msgpp export runs/small/vocals --out weights/          # the best-validated checkpoint of the run
    msgpp export runs/small/vocals --last --out weights/   # the run's last.ckpt

Logging (`--logger_backend`): "auto" (default) uses Weights & Biases, offline when no API key is
configured (WANDB_API_KEY or a wandb entry in ~/.netrc), so it never waits on the network; with
WANDB_MODE=disabled it falls back to TensorBoard when installed, else CSV. "wandb", "tensorboard",
"csv" force one; "none" logs nothing. A `trainer.logger` in the YAML wins over all of this.
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOGGER_BACKENDS = ("auto", "wandb", "tensorboard", "csv", "none")


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train an MSG enhancer (LightningCLI; `msgpp train --help` lists every option)",
        description="Train an MSG enhancer with LightningCLI. Every option after `train` goes to it.",
        add_help=False,  # --help goes to LightningCLI, which knows the options
        prefix_chars="+",  # so that argparse hands every --option through untouched
    )
    train.add_argument("cli_args", nargs=argparse.REMAINDER)
    train.set_defaults(func=run_train)

    export = subparsers.add_parser(
        "export", help="write a training checkpoint's generator as an inference weights file",
        description="Write msg-<source>-<sha8>.pt (config, generator weights, loss weights, versions, "
                    "validation measures) from a `msgpp train` checkpoint. Given a run folder, a "
                    "checkpoint folder or last.ckpt, it exports the checkpoint with the best validation "
                    "score (docs/training.md, \"Model selection\").",
    )
    export.add_argument("checkpoint", help="a run folder, a checkpoint folder, or a .ckpt file written by `msgpp train` "
                                           "(last.ckpt: the best of it and its sibling checkpoints)")
    export.add_argument("--out", required=True, help="folder for the weights file")
    export.add_argument("--name", default=None, help="file stem (default: msg-<source>)")
    export.add_argument("--last", action="store_true", help="export last.ckpt instead of the best-validated checkpoint")
    export.add_argument("--score-missing", action="store_true",
                        help="measure the checkpoints that have no stored validation score on the run's "
                             "validation songs (loads the run's data; see --root / --cache)")
    export.add_argument("--root", default=None, help="with --score-missing: the dataset folder (default: the run's data.root)")
    export.add_argument("--cache", default=None, help="with --score-missing: the estimate cache (default: the run's data.cache)")
    export.set_defaults(func=run_export)


# -- train --------------------------------------------------------------------------------------


def run_train(args) -> int:
    import warnings

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


def build_cli(cli_args: list[str]):
    """The LightningCLI for `msgpp train`, parsed and instantiated (not run); None after --help."""
    from msgpp.training.cli import MSGTrainCLI

    try:
        return MSGTrainCLI(args=list(cli_args))
    except SystemExit as exit_:
        if exit_.code in (0, None):
            return None
        from msgpp.errors import MsgppError

        raise MsgppError("train: invalid arguments (see the message above, or `msgpp train --help`)") from None


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def choose_logger(backend: str, save_dir: str, name: str, project: str = "msgpp"):
    """A Lightning logger for `backend` (see the module doc); None for "none"."""
    from lightning.pytorch.loggers import CSVLogger

    if backend not in LOGGER_BACKENDS:
        from msgpp.errors import MsgppError

        raise MsgppError(f"--logger_backend {backend!r}: choose one of {', '.join(LOGGER_BACKENDS)}")
    if backend == "none":
        return None
    wandb_mode = os.environ.get("WANDB_MODE", "").lower()
    if backend == "auto":
        backend = "wandb" if wandb_mode != "disabled" else ("tensorboard" if _tensorboard_available() else "csv")
    if backend == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        offline = wandb_mode in ("offline", "dryrun") or not has_wandb_credentials()
        if offline:
            log.info("wandb: no API key found, logging offline under %s/wandb (sync later with `wandb sync`)", save_dir)
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        return WandbLogger(project=project, name=name, save_dir=save_dir, offline=offline)
    if backend == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=save_dir, name=name)
    return CSVLogger(save_dir=save_dir, name=name)


def _tensorboard_available() -> bool:
    from importlib.util import find_spec

    return find_spec("tensorboard") is not None or find_spec("tensorboardX") is not None


# -- export -------------------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict:
    """A `msgpp train` checkpoint, read with weights_only=True; MsgppError when it is not one.
    `mmap` maps the tensors instead of reading them (cheap when only a few are used)."""
    import torch

    from msgpp.errors import MsgppError

    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises many types for a bad pickle
        raise MsgppError(f"{path}: not a readable checkpoint ({str(error).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or "msgpp" not in checkpoint or "state_dict" not in checkpoint:
        raise MsgppError(f"{path}: not a checkpoint written by `msgpp train` (no msgpp section)")
    return checkpoint


def generator_state(checkpoint: dict) -> dict:
    """The generator's own state dict (what Generator loads) from a training checkpoint."""
    prefix = "generator."
    return {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}


def validation_records(checkpoint: dict) -> list[dict]:
    """The whole-song validation records a checkpoint carries (its latest and its history) that
    have a fingerprint and a finite score."""
    import math

    facts = checkpoint.get("msgpp") or {}
    records = [*(facts.get("validation_history") or []), facts.get("validation")]
    return [record for record in records if isinstance(record, dict) and record.get("fingerprint")
            and isinstance(record.get("score"), (int, float)) and math.isfinite(record["score"])]


def export_checkpoint(checkpoint_path: str | os.PathLike, out: str | os.PathLike, name: str | None = None,
                      validation: dict | None = None) -> Path:
    """Write the generator of a training checkpoint as an inference file; returns its path.

    `validation`: the whole-song validation record of these weights (see choose_checkpoint); by
    default the checkpoint's own record for its weights, when it has one. It is written to the
    file's `training["validation"]`, with `training["do_no_harm"]` (selection.do_no_harm).
    """
    from msgpp.hub import save_inference_file
    from msgpp.training import selection

    checkpoint = load_checkpoint(checkpoint_path)
    facts = checkpoint["msgpp"]
    state_dict = generator_state(checkpoint)
    if validation is None:
        fingerprint = selection.generator_fingerprint(state_dict)
        validation = next((r for r in validation_records(checkpoint) if r["fingerprint"] == fingerprint), None)
    hyper = checkpoint.get("hyper_parameters", {})
    data = checkpoint.get("datamodule_hyper_parameters", {})
    training = {
        "batches": int(facts.get("batches_done", 0)),
        "global_step": int(checkpoint.get("global_step", 0)),
        "epoch": int(checkpoint.get("epoch", 0)),
        "balance_frozen": bool(facts.get("balance_frozen", False)),
        "discriminator_config": facts.get("discriminator_config", {}),
        "lr": hyper.get("lr"),
        "separators": list(data.get("separators", [])),
        "held_out": list(data.get("held_out", [])),
        "data_seed": data.get("seed"),
        "batch_size": data.get("batch_size"),
        "checkpoint": Path(checkpoint_path).name,
        "trained_with": facts.get("versions", {}),
    }
    if validation is not None:
        training["validation"] = {key: validation[key] for key in ("score", "rows", "batches", "fingerprint")
                                  if key in validation}
        training["do_no_harm"] = selection.do_no_harm(validation["rows"])
    return save_inference_file(
        out, name or f"msg-{facts['source']}", source=facts["source"], sample_rate=facts["sample_rate"],
        generator_config=facts["generator_config"], state_dict=state_dict,
        loss_weights=facts.get("loss_weights"), training=training,
    )


@dataclass
class Candidate:
    """One checkpoint considered by `choose_checkpoint`."""

    path: Path
    source: str
    batches: int
    fingerprint: str
    record: dict | None = None  # the validation record of its weights, when one was found


def find_checkpoints(path: str | os.PathLike) -> list[Path]:
    """The .ckpt files `msgpp export` chooses among: every one under a folder (a run folder or its
    checkpoints/), or a file and its sibling checkpoints."""
    from msgpp.errors import MsgppError

    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("*.ckpt"))
        if not found:
            raise MsgppError(f"{path}: no .ckpt checkpoint in this folder or below")
        return found
    if not path.is_file():
        raise MsgppError(f"{path}: no such checkpoint")
    return sorted({path, *path.parent.glob("*.ckpt")})


def scan_checkpoints(paths: list[Path]) -> list[Candidate]:
    """Read each checkpoint's source, batch count and weights fingerprint, and give every one the
    validation record whose fingerprint matches its weights, wherever that record is stored: a
    periodic checkpoint saved just before a validation gets its score from a later checkpoint's
    history."""
    from msgpp.errors import MsgppError
    from msgpp.training import selection

    candidates, records = [], {}
    for path in paths:
        checkpoint = load_checkpoint(path, mmap=True)
        facts = checkpoint["msgpp"]
        for record in validation_records(checkpoint):
            records[record["fingerprint"]] = record
        candidates.append(Candidate(path, str(facts.get("source")), int(facts.get("batches_done", 0)),
                                    selection.generator_fingerprint(generator_state(checkpoint))))
        del checkpoint
    sources = sorted({candidate.source for candidate in candidates})
    if len(sources) > 1:
        raise MsgppError(f"checkpoints of several sources ({', '.join(sources)}) among {len(paths)} checkpoints; "
                         f"name one run's folder or checkpoint")
    for candidate in candidates:
        candidate.record = records.get(candidate.fingerprint)
    return candidates


def score_candidates(candidates: list[Candidate], root: str | None = None, cache: str | None = None) -> None:
    """Measure the candidates without a record on their run's validation songs (rebuilt from the
    data settings stored in the checkpoint; `root` / `cache` override its paths)."""
    from msgpp.errors import MsgppError
    from msgpp.models.generator import Generator
    from msgpp.training import selection
    from msgpp.training.datamodule import MSGDataModule

    missing = [candidate for candidate in candidates if candidate.record is None]
    if not missing:
        return
    first = load_checkpoint(missing[0].path, mmap=True)
    settings = dict(first.get("datamodule_hyper_parameters") or {})
    if not settings:
        raise MsgppError(f"{missing[0].path}: holds no data settings; cannot rebuild its validation songs")
    settings.update({key: value for key, value in (("root", root), ("cache", cache)) if value is not None})
    songs_cap = (first.get("hyper_parameters") or {}).get("val_songs")
    del first
    datamodule = MSGDataModule(**settings)
    datamodule.setup("fit")
    if datamodule.val_set is None or not datamodule.val_set.data.tracks:
        raise MsgppError("the run has no validation songs (data.val_fraction 0); nothing to score the checkpoints on")
    data, separators = datamodule.val_set.data, datamodule.val_separators
    songs = list(range(len(data.tracks)))[:songs_cap]
    raw_cache: dict = {}
    for candidate in missing:
        checkpoint = load_checkpoint(candidate.path)
        generator = Generator(**checkpoint["msgpp"]["generator_config"])
        generator.load_state_dict(generator_state(checkpoint))
        del checkpoint
        rows = selection.measure_songs(generator, data, separators, songs, sample_rate=datamodule.sample_rate,
                                       raw_cache=raw_cache)
        candidate.record = {"batches": candidate.batches, "score": selection.selection_score(rows), "rows": rows,
                            "fingerprint": candidate.fingerprint}
        log.info("scored %s: %+.4f on %d validation songs", candidate.path, candidate.record["score"], len(songs))


def choose_checkpoint(path: str | os.PathLike, last: bool = False, score_missing: bool = False,
                      root: str | None = None, cache: str | None = None) -> tuple[Path, dict | None]:
    """(checkpoint to export, its validation record or None).

    - a folder, or a file named last.ckpt: among all (the folder's, or the file and its siblings),
      the checkpoint with the highest validation score among those that pass the do-no-harm check
      (selection.do_no_harm), or among all when none passes; ties go to the later one;
    - `last`: the folder's last.ckpt (or the file given);
    - any other file: that file.
    Checkpoints whose weights were never validated are left out (logged), unless `score_missing`
    measures them; MsgppError when none is left.
    """
    import math

    from msgpp.errors import MsgppError
    from msgpp.training import selection

    path = Path(path)
    paths = find_checkpoints(path)
    candidates = scan_checkpoints(paths)
    if last or (path.is_file() and path.name != "last.ckpt"):
        if path.is_file():
            wanted = path
        else:
            lasts = [p for p in paths if p.name == "last.ckpt"]
            if len(lasts) != 1:
                raise MsgppError(f"{path}: {'no' if not lasts else len(lasts)} last.ckpt in this folder or below; "
                                 f"name the checkpoint file")
            wanted = lasts[0]
        chosen = next(c for c in candidates if c.path == wanted)
        if chosen.record is None and score_missing:
            score_candidates([chosen], root, cache)
        return chosen.path, chosen.record
    if score_missing:
        score_candidates(candidates, root, cache)
    scored = [c for c in candidates if c.record is not None and math.isfinite(c.record["score"])]
    unscored = [c for c in candidates if c not in scored]
    if unscored:
        log.info("%d of %d checkpoints have no validation score for their weights and are not considered "
                 "(--score-missing measures them): %s", len(unscored), len(candidates),
                 ", ".join(c.path.name for c in unscored))
    if not scored:
        raise MsgppError(f"{path}: none of its {len(candidates)} checkpoint(s) has a validation score for its weights "
                         f"(run without validation songs, or before model selection existed); export one with "
                         f"--last or by naming its .ckpt file, or measure them with --score-missing")
    for candidate in sorted(scored, key=lambda c: c.batches):
        harm = len(selection.do_no_harm(candidate.record["rows"]))
        log.info("  %-40s batch %6d  score %+.4f  %s", candidate.path.name, candidate.batches,
                 candidate.record["score"], f"{harm} do-no-harm finding(s)" if harm else "does no harm")
    # Do no harm first: a checkpoint that is worse than its input for one separator loses to a
    # lower-scoring one that is not (a high mean can hide one separator it damages).
    harmless = [c for c in scored if not selection.do_no_harm(c.record["rows"])]
    if not harmless:
        log.info("no checkpoint passes the do-no-harm check; choosing by score alone")
    best = max(harmless or scored, key=lambda c: (c.record["score"], c.batches))
    return best.path, best.record


def run_export(args) -> int:
    import sys

    from msgpp.hub import check_file_stem
    from msgpp.training import selection

    if args.name is not None:  # before any checkpoint is read: --name is a plain file name
        check_file_stem(args.name)

    chosen, record = choose_checkpoint(args.checkpoint, last=args.last, score_missing=args.score_missing,
                                       root=args.root, cache=args.cache)
    if record is None:
        print(f"exporting {chosen} (no validation score stored for its weights)", file=sys.stderr)
    else:
        print(f"exporting {chosen} (batch {record['batches']}): validation score {record['score']:+.4f}", file=sys.stderr)
    path = export_checkpoint(chosen, args.out, args.name, validation=record)
    reasons = selection.do_no_harm(record["rows"]) if record is not None else []
    if reasons:
        banner = "WARNING: do no harm:"
        lines = [f"{chosen.name} is WORSE than returning its input unchanged on the validation songs:",
                 *(f"  - {reason}" for reason in reasons),
                 "the file was written anyway; check the run (docs/training.md, \"Model selection\") before using it"]
        print("\n".join(f"{banner} {line}" for line in lines), file=sys.stderr)
    print(path)
    return 0
