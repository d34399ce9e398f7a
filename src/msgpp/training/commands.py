"""`msgpp train` (LightningCLI: YAML configs in configs/, any option overridable) and
`msgpp export` (a checkpoint → the small inference file the enhancer loads).

    msgpp train --config configs/small/vocals.yaml
    msgpp train --config configs/small/vocals.yaml --trainer.max_steps 200 --data.batch_size 4
    msgpp train --config configs/small/vocals.yaml --ckpt_path last        # resume after a kill
    msgpp train --config configs/paper/bass.yaml --trainer.devices 4        # DDP on 4 GPUs
    msgpp export runs/small/vocals/checkpoints/last.ckpt --out weights/

Logging (`--logger_backend`): "auto" (default) uses Weights & Biases, offline when no API key is
configured (WANDB_API_KEY or a wandb entry in ~/.netrc), so it never waits on the network; with
WANDB_MODE=disabled it falls back to TensorBoard when installed, else CSV. "wandb", "tensorboard",
"csv" force one; "none" logs nothing. A `trainer.logger` in the YAML wins over all of this.
"""
from __future__ import annotations

import argparse
import logging
import os
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
        description="Write msg-<source>-<sha8>.pt (config, generator weights, loss weights, versions) "
                    "from a `msgpp train` checkpoint.",
    )
    export.add_argument("checkpoint", help="a .ckpt file written by `msgpp train`")
    export.add_argument("--out", required=True, help="folder for the weights file")
    export.add_argument("--name", default=None, help="file stem (default: msg-<source>)")
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


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A `msgpp train` checkpoint, read with weights_only=True; MsgppError when it is not one."""
    import torch

    from msgpp.errors import MsgppError

    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad pickle
        raise MsgppError(f"{path}: not a readable checkpoint ({str(error).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or "msgpp" not in checkpoint or "state_dict" not in checkpoint:
        raise MsgppError(f"{path}: not a checkpoint written by `msgpp train` (no msgpp section)")
    return checkpoint


def export_checkpoint(checkpoint_path: str | os.PathLike, out: str | os.PathLike, name: str | None = None) -> Path:
    """Write the generator of a training checkpoint as an inference file; returns its path."""
    from msgpp.hub import save_inference_file

    checkpoint = load_checkpoint(checkpoint_path)
    facts = checkpoint["msgpp"]
    prefix = "generator."  # the module's generator; its own keys are what Generator loads
    state_dict = {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items()
                  if key.startswith(prefix)}
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
    return save_inference_file(
        out, name or f"msg-{facts['source']}", source=facts["source"], sample_rate=facts["sample_rate"],
        generator_config=facts["generator_config"], state_dict=state_dict,
        loss_weights=facts.get("loss_weights"), training=training,
    )


def run_export(args) -> int:
    path = export_checkpoint(args.checkpoint, args.out, args.name)
    print(path)
    return 0
