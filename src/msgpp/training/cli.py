"""The LightningCLI behind `msgpp train`: MSGModule + MSGDataModule, configured by YAML.

What it adds to a plain LightningCLI:
- `data.source` and `data.sample_rate` feed `model.source` / `model.sample_rate` (one setting each);
- `{source}` in `trainer.default_root_dir` and in a callback's `dirpath` is `data.source`, so one
  preset file names every source's run folder (`runs/small/{source}` → runs/small/bass);
  `{run}` in a callback's `dirpath` is that run folder, so a config that only moves the run
  (`trainer.default_root_dir: runs/small/drums-onset`) moves its checkpoints with it;
- the shipped configs compose (configs/base.yaml, a preset, a source's file: docs/training.md); a
  source's file given alone (`--config configs/small/bass.yaml`) brings the base and its preset
  in front of it; a misordered or partial composition is refused in one line, not trained on
  defaults;
- `--ckpt_path PATH|last` resumes a killed run;
- `--logger_backend` picks the logger (below);
- `trainer.precision: null` means "the best mixed precision the device supports": bf16-mixed
  on GPUs that have bf16, 16-mixed on older GPUs, 32-true on CPU;
- the saved config.yaml is overwritten on resume instead of refusing to start.

Logging (`--logger_backend`): "auto" (default) uses Weights & Biases, offline when no API key is
configured (WANDB_API_KEY or a wandb entry in ~/.netrc), so it never waits on the network; with
WANDB_MODE=disabled it falls back to TensorBoard when installed, else CSV. "wandb", "tensorboard",
"csv" force one; "none" logs nothing. A `trainer.logger` in the YAML wins over all of this.

The command (`msgpp train`, `msgpp export`) is commands.py; this module is the Lightning side.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from msgpp.errors import MsgppError
from msgpp.training.datamodule import MSGDataModule
from msgpp.training.module import MSGModule

log = logging.getLogger(__name__)

LOGGER_BACKENDS = ("auto", "wandb", "tensorboard", "csv", "none")


def build_cli(cli_args: list[str]):
    """The LightningCLI for `msgpp train`, parsed and instantiated (not run); None after --help.
    A usage mistake is one line (jsonargparse's own error, without its 70-line usage block)."""
    import contextlib
    import io
    import sys

    captured = io.StringIO()  # jsonargparse writes its usage block and error to stderr, then exits
    try:
        with contextlib.redirect_stderr(captured):
            cli = MSGTrainCLI(args=list(cli_args))
    except SystemExit as exit_:
        if exit_.code in (0, None):
            sys.stderr.write(captured.getvalue())
            return None
        lines = captured.getvalue().splitlines()
        starts = [number for number, line in enumerate(lines) if line.strip().startswith("error:")]
        # the error line and its indented continuation lines, as one line
        reason = " ".join(" ".join(lines[starts[-1] :]).split()[1:])[:400] if starts else "invalid arguments"
        raise MsgppError(f"train: {reason} (see `msgpp train --help`)") from None
    sys.stderr.write(captured.getvalue())
    return cli


def best_precision() -> str:
    import torch

    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


class MSGTrainCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None):
        import warnings

        with warnings.catch_warnings():
            # `msgpp train ARGS` hands ARGS over explicitly while sys.argv also holds them.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            self._construct(args)

    def _construct(self, args: list[str] | None) -> None:
        super().__init__(
            MSGModule,
            MSGDataModule,
            args=args,
            run=False,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "msgpp train", "description": "Train an MSG enhancer for one source."},
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.source", "model.source")
        parser.link_arguments("data.sample_rate", "model.sample_rate")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="resume from this checkpoint, or 'last' for the run's last.ckpt",
        )
        parser.add_argument(
            "--logger_backend",
            type=str,
            default="auto",
            help="auto | wandb | tensorboard | csv | none (ignored when trainer.logger is set)",
        )
        parser.add_argument(
            "--run_name", type=str | None, default=None, help="the logger's run name (default: <source>)"
        )

    def parse_arguments(self, parser, args) -> None:
        args = compose_shipped(list(args)) if args is not None else None
        check_composition(config_files(args or []))  # before --print_config answers
        super().parse_arguments(parser, args)
        ckpt_path = self.config.get("ckpt_path")
        if ckpt_path not in (None, "last"):
            _check_checkpoint(ckpt_path)

    def before_instantiate_classes(self) -> None:
        fill_run_folders(self.config)  # the saved config.yaml names the real folders
        trainer = self.config.trainer
        if trainer.get("precision") is None:
            trainer.precision = best_precision()

    def instantiate_trainer(self, **kwargs):
        configured = self.config_init.trainer.get("logger")
        if configured in (None, True):
            root = self.config_init.trainer.get("default_root_dir") or "runs"
            name = self.config_init.get("run_name") or self.config_init.data.source
            kwargs["logger"] = choose_logger(self.config_init.get("logger_backend", "auto"), root, name) or False
        return super().instantiate_trainer(**kwargs)


# -- configs ------------------------------------------------------------------------------------


def fill_run_folders(config) -> None:
    """Put data.source for `{source}` in trainer.default_root_dir and in every callback's
    init_args.dirpath, and the run folder (trainer.default_root_dir, Lightning's "." when unset)
    for `{run}` in the latter (in place; a parsed config or the same as plain dicts)."""
    source = str(config["data"]["source"])
    trainer = config["trainer"]
    if isinstance(trainer.get("default_root_dir"), (str, os.PathLike)):
        trainer["default_root_dir"] = os.fspath(trainer["default_root_dir"]).replace("{source}", source)
    run = os.fspath(trainer.get("default_root_dir") or ".")
    for callback in trainer.get("callbacks") or []:
        init_args = callback.get("init_args") if hasattr(callback, "get") else None
        if init_args is not None and isinstance(init_args.get("dirpath"), (str, os.PathLike)):
            init_args["dirpath"] = os.fspath(init_args["dirpath"]).replace("{source}", source).replace("{run}", run)


def config_files(args: list) -> list[Path]:
    """The files given with --config, in order (a --config holding YAML text is not a file)."""
    files = []
    for number, arg in enumerate(map(str, args)):
        if arg == "--config" and number + 1 < len(args):
            value = str(args[number + 1])
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        else:
            continue
        if Path(value).is_file():
            files.append(Path(value))
    return files


def _bases(path: Path) -> list[Path]:
    """What a shipped config builds on: a source's file (configs/<preset>/<source>.yaml) the base
    and its preset, a preset (configs/<preset>.yaml) the base; anything else nothing."""
    path = path.resolve()
    if (path.parent.parent / "base.yaml").is_file() and path.parent.with_suffix(".yaml").is_file():
        return [path.parent.parent / "base.yaml", path.parent.with_suffix(".yaml")]
    if (path.parent / "base.yaml").is_file() and path.with_suffix("").is_dir():
        return [path.parent / "base.yaml"]
    return []


def compose_shipped(args: list) -> list:
    """The short spelling: `--config configs/small/bass.yaml` given with none of the files it
    builds on means base + preset + it; the missing --config options are put in front of it (and
    logged). A partial or misordered composition is left to check_composition to refuse."""
    for number, arg in enumerate(map(str, args)):
        if arg != "--config" or number + 1 >= len(args) or not Path(str(args[number + 1])).is_file():
            continue
        bases = _bases(Path(str(args[number + 1])))
        given = {path.resolve() for path in config_files(args)}
        if bases and not given.intersection(bases):
            added = [item for base in bases for item in ("--config", _shown(base))]
            log.info("composing the shipped configs: msgpp train %s --config %s", " ".join(added), args[number + 1])
            return [*args[:number], *added, *args[number:]]
    return args


def check_composition(files: list[Path]) -> None:
    """The shipped configs compose: configs/base.yaml, then a preset (configs/<preset>.yaml), then a
    source's file (configs/<preset>/<source>.yaml), each overriding the one before. A preset or a
    source's file given without what it builds on (as `--config configs/small/bass.yaml` alone was
    spelled before) would train on defaults: refuse that in one line, with the full spelling."""
    given = [path.resolve() for path in files]
    for number, path in enumerate(given):
        needed, before = _bases(path), given[:number]
        if not needed:
            continue
        # the base first; a source's file also needs a preset after it: the shipped one or a
        # variant of it (scripts/ablation.sh)
        complete = needed[0] in before and (len(needed) == 1 or any(file != needed[0] for file in before))
        if not complete:
            spelling = " ".join(f"--config {_shown(file)}" for file in [*needed, path])
            raise MsgppError(
                f"--config {_shown(path)} builds on {' and '.join(map(_shown, needed))}: "
                f"give them first: msgpp train {spelling} (or make train PRESET=... SOURCE=...)"
            )


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- loggers ------------------------------------------------------------------------------------


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


# -- resuming -----------------------------------------------------------------------------------


def _check_checkpoint(location: str) -> None:
    """Refuse, with one line and before anything is seeded or built, a --ckpt_path that is not a
    `msgpp train` checkpoint: missing, random bytes, or a pickle that weights_only refuses."""
    import zipfile

    from msgpp.training.checkpoints import load_checkpoint

    path = Path(location)
    if not path.is_file():
        raise MsgppError(f"--ckpt_path {location}: no such checkpoint (or 'last' for the run's last.ckpt)")
    if not zipfile.is_zipfile(path):
        raise MsgppError(f"--ckpt_path {location}: not a checkpoint written by `msgpp train` (not a torch archive)")
    load_checkpoint(path, mmap=True)  # weights_only: a refused pickle is one line too
