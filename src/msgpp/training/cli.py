"""The LightningCLI behind `msgpp train`: MSGModule + MSGDataModule, configured by YAML.

What it adds to a plain LightningCLI:
- `data.source` and `data.sample_rate` feed `model.source` / `model.sample_rate` (one setting each);
- `--ckpt_path PATH|last` resumes a killed run;
- `--logger_backend` picks W&B (offline without an API key) / TensorBoard / CSV (commands.py);
- `trainer.precision: null` means "the best mixed precision the device supports": bf16-mixed
  on GPUs that have bf16, 16-mixed on older GPUs, 32-true on CPU;
- the saved config.yaml is overwritten on resume instead of refusing to start.
"""
from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from msgpp.training.datamodule import MSGDataModule
from msgpp.training.module import MSGModule


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
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="resume from this checkpoint, or 'last' for the run's last.ckpt")
        parser.add_argument("--logger_backend", type=str, default="auto",
                            help="auto | wandb | tensorboard | csv | none (ignored when trainer.logger is set)")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="the logger's run name (default: <source>)")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        ckpt_path = self.config.get("ckpt_path")
        if ckpt_path not in (None, "last"):
            _check_checkpoint(ckpt_path)

    def before_instantiate_classes(self) -> None:
        trainer = self.config.trainer
        if trainer.get("precision") is None:
            trainer.precision = best_precision()

    def instantiate_trainer(self, **kwargs):
        from msgpp.training.commands import choose_logger

        configured = self.config_init.trainer.get("logger")
        if configured in (None, True):
            root = self.config_init.trainer.get("default_root_dir") or "runs"
            name = self.config_init.get("run_name") or self.config_init.data.source
            kwargs["logger"] = choose_logger(self.config_init.get("logger_backend", "auto"), root, name) or False
        return super().instantiate_trainer(**kwargs)


def _check_checkpoint(location: str) -> None:
    """Refuse, with one line and before anything is seeded or built, a --ckpt_path that is not a
    `msgpp train` checkpoint: missing, random bytes, or a pickle that weights_only refuses."""
    import zipfile
    from pathlib import Path

    from msgpp.errors import MsgppError
    from msgpp.training.commands import load_checkpoint

    path = Path(location)
    if not path.is_file():
        raise MsgppError(f"--ckpt_path {location}: no such checkpoint (or 'last' for the run's last.ckpt)")
    if not zipfile.is_zipfile(path):
        raise MsgppError(f"--ckpt_path {location}: not a checkpoint written by `msgpp train` (not a torch archive)")
    load_checkpoint(path, mmap=True)  # weights_only: a refused pickle is one line too
