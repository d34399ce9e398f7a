"""MSG's LightningModule: one generator, one set of discriminators, two Adam optimisers.

One training batch, top to bottom (docs/training.md, "What one batch does"):
  1. G forward: enhanced = G(estimate).
  2. D step on the *detached* fake: LSGAN(D(target) → 1, D(enhanced) → 0).
  3. G loss against the *updated* D: adversarial + deep feature matching + multi-resolution STFT
     reconstruction, weighted by the LossBalancer (equalised over the first `balance_steps`
     batches, then frozen), then the G step. G's gradient is clipped explicitly (AutoClip: the
     `g_clip_percentile`-th percentile of the recent gradient norms, as in the reference, or a
     fixed norm); D is not clipped.

Lightning's `global_step` counts *optimiser* steps, so it advances by 2 per batch here:
`Trainer(max_steps=N)` trains N / 2 batches, and `ModelCheckpoint(every_n_train_steps=N)` saves
every N / 2 batches. `batches_done` is the number of batches.

Mixed precision comes from the Trainer's `precision` (the losses run in float32 regardless).
Clipping happens in `on_before_optimizer_step`, which Lightning calls after the AMP grad scaler
has unscaled the gradients, so the norms are true norms under "16-mixed" too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import nn

from msgpp.constants import MSG_SAMPLE_RATE
from msgpp.losses import (
    LossBalancer,
    MultiResolutionSTFTLoss,
    OnsetEnvelopeLoss,
    discriminator_lsgan_loss,
    feature_matching_loss,
    generator_lsgan_loss,
)
from msgpp.models.discriminators import build_discriminators
from msgpp.models.generator import build_generator

GENERATOR_TERMS = ("adversarial", "feature_matching", "reconstruction")
LR_SCHEDULES = ("constant", "cosine")


class AutoClip(nn.Module):
    """Clip to a percentile of the gradient-norm history (Seetharaman et al. 2020, used by MSG).

    The history is a ring buffer (a module buffer, so it is checkpointed with the model).
    """

    def __init__(self, percentile: float = 10.0, history: int = 1000):
        super().__init__()
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        self.percentile = percentile
        self.register_buffer("norms", torch.zeros(history, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, parameters: Sequence[torch.Tensor]) -> tuple[float, float]:
        """Clip the gradients in place; returns (norm before clipping, clip value used)."""
        gradients = [p.grad for p in parameters if p.grad is not None]
        if not gradients:
            return 0.0, 0.0
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in gradients]))
        if torch.isfinite(norm):
            self.norms[int(self.count) % self.norms.numel()] = norm.double()
            self.count += 1
        filled = self.norms[: min(int(self.count), self.norms.numel())]
        if filled.numel() == 0:
            return float(norm), float("inf")
        limit = float(torch.quantile(filled, self.percentile / 100.0))
        torch.nn.utils.clip_grad_norm_(parameters, max_norm=limit)
        return float(norm), limit


def load_generator_weights(generator: nn.Module, path: str) -> None:
    """Start `generator` from an enhancer weights file; a mismatched architecture is one line."""
    from msgpp.enhance.weights_file import load_inference_file
    from msgpp.errors import MsgppError

    package = load_inference_file(path)
    if package["generator_config"] != generator.config:
        differences = {
            key: (package["generator_config"].get(key), value)
            for key, value in generator.config.items()
            if package["generator_config"].get(key) != value
        }
        shown = ", ".join(f"{key}: file {a!r}, run {b!r}" for key, (a, b) in sorted(differences.items()))
        raise MsgppError(f"model.init_generator {path}: its generator differs from model.generator ({shown})")
    generator.load_state_dict(package["state_dict"])


class MSGModule(L.LightningModule):
    """Trains an MSG generator for one source.

    Args:
        source: the source class (written into exported weights).
        generator: a generator preset ("paper", "small") or a dict of Generator arguments.
        discriminators: a discriminator preset ("paper", "small") or a dict of Discriminators arguments.
        sample_rate: the generator's rate; linked to data.sample_rate by `msgpp train`.
        lr, betas: Adam settings, the same for G and D (paper: 2e-4, (0.5, 0.9)).
        balance_steps: batches over which the loss weights are estimated before freezing (paper: 1000).
        balance_decay: the running estimate's EMA decay (0 = last batch only, like the reference).
        stft_loss: MultiResolutionSTFTLoss arguments (defaults: the reference's resolutions).
        g_clip_percentile: AutoClip percentile for G's gradient; None turns AutoClip off.
        g_clip_history: how many recent gradient norms AutoClip keeps.
        g_clip_norm: a fixed max norm for G instead of AutoClip (used when set).
        val_songs: at each validation, how many validation songs are measured whole for model
            selection (msgpp.training.selection); None = all of them.
        init_generator: an enhancer weights file (`msgpp export`'s output, e.g. a shipped
            msg-bass-….pt) whose generator weights the run starts from (fine-tuning); its
            generator configuration must match `generator`. The discriminators start fresh.
            A run resumed with `--ckpt_path` takes the checkpoint's weights instead.
        onset_loss: add a fourth generator term (beyond the paper): L1 between the onset-strength
            envelopes of G(estimate) and the ground truth (msgpp.losses.OnsetEnvelopeLoss), balanced
            like the others.
        lr_schedule: "constant" (the paper's) or "cosine" (beyond the paper): both learning rates
            follow lr · ½(1 + cos(π · batches / total batches)), reaching 0 at `trainer.max_steps`.
            Set from the batch count at every batch, so a resumed run continues the curve.
    """

    def __init__(
        self,
        source: str = "vocals",
        generator: str | dict = "small",
        discriminators: str | dict = "small",
        sample_rate: int = MSG_SAMPLE_RATE,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        balance_steps: int = 1000,
        balance_decay: float = 0.99,
        stft_loss: dict | None = None,
        g_clip_percentile: float | None = 10.0,
        g_clip_history: int = 1000,
        g_clip_norm: float | None = None,
        val_songs: int | None = None,
        init_generator: str | None = None,
        lr_schedule: str = "constant",
        onset_loss: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.source = source
        self.generator = build_generator(generator, sample_rate=sample_rate)
        if init_generator:
            load_generator_weights(self.generator, init_generator)
        self.discriminators = build_discriminators(discriminators)
        self.reconstruction = MultiResolutionSTFTLoss(**(stft_loss or {}))
        self.onset = OnsetEnvelopeLoss(sample_rate) if onset_loss else None
        self.terms = GENERATOR_TERMS + (("onset",) if onset_loss else ())
        self.balancer = LossBalancer(self.terms, warmup_steps=balance_steps, decay=balance_decay)
        self.autoclip = (
            AutoClip(g_clip_percentile, g_clip_history) if g_clip_percentile and g_clip_norm is None else None
        )
        self.g_clip_norm = g_clip_norm
        self._val_sums: torch.Tensor | None = None
        self.val_table: list[dict] = []  # per-separator validation metrics, read by the media logger
        if val_songs is not None and val_songs < 1:
            from msgpp.errors import MsgppError

            raise MsgppError(f"model.val_songs must be a positive number of songs or null (all), got {val_songs}")
        self.val_songs = val_songs
        if lr_schedule not in LR_SCHEDULES:
            from msgpp.errors import MsgppError

            raise MsgppError(f"model.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
        self.validations: list[dict] = []  # whole-song validation records, oldest first (checkpointed)
        self._raw_measures: dict = {}  # the raw estimates' measures do not change between validations

    @property
    def batches_done(self) -> int:
        """Training batches completed (each is one D step and one G step)."""
        return self.trainer.global_step // 2 if self._trainer is not None else 0

    def forward(self, estimate: torch.Tensor) -> torch.Tensor:
        return self.generator(estimate)

    def on_train_start(self) -> None:
        # A resumed run restores each optimizer's state, learning rate included; the configured
        # model.lr wins, so a run can be continued at a lower rate (`--ckpt_path` + `--model.lr`).
        self._set_learning_rate()

    def learning_rate(self) -> float:
        """The learning rate for the next batch under `lr_schedule`."""
        lr = self.hparams.lr
        if self.hparams.lr_schedule == "constant" or self._trainer is None:
            return lr
        total = self.trainer.max_steps // 2 if self.trainer.max_steps and self.trainer.max_steps > 0 else 0
        if total <= 0:
            return lr
        return lr * 0.5 * (1 + math.cos(math.pi * min(self.batches_done, total) / total))

    def _set_learning_rate(self) -> None:
        lr = self.learning_rate()
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def configure_optimizers(self):
        lr, betas = self.hparams.lr, tuple(self.hparams.betas)
        optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        optimizer_d = torch.optim.Adam(self.discriminators.parameters(), lr=lr, betas=betas)
        return [optimizer_g, optimizer_d]

    # -- training ----------------------------------------------------------------------------

    def generator_terms(self, enhanced: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        fake = self.discriminators(enhanced)
        with torch.no_grad():
            real = self.discriminators(target)
        terms = {
            "adversarial": generator_lsgan_loss(fake),
            "feature_matching": feature_matching_loss(real, fake),
            "reconstruction": self.reconstruction(enhanced, target),
        }
        if self.onset is not None:
            terms["onset"] = self.onset(enhanced, target)
        return terms

    def update_balance(self, terms: dict[str, torch.Tensor]) -> None:
        if self.balancer.frozen:
            return
        values = torch.stack([terms[name].detach().float() for name in self.terms])
        if self._trainer is not None and self.trainer.world_size > 1:
            values = self.trainer.strategy.reduce(values, reduce_op="mean")  # every rank, same weights
        self.balancer.update(dict(zip(self.terms, values, strict=True)))

    def training_step(self, batch: dict, batch_idx: int) -> None:
        optimizer_g, optimizer_d = self.optimizers()
        if self.hparams.lr_schedule != "constant":
            self._set_learning_rate()
        estimate, target = batch["estimate"], batch["target"]
        enhanced = self.generator(estimate)

        self.toggle_optimizer(optimizer_d)
        d_loss = discriminator_lsgan_loss(self.discriminators(target), self.discriminators(enhanced.detach()))
        optimizer_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        optimizer_d.step()
        self.untoggle_optimizer(optimizer_d)

        self.toggle_optimizer(optimizer_g)
        terms = self.generator_terms(enhanced, target)
        self.update_balance(terms)
        g_loss = self.balancer(terms)
        optimizer_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        optimizer_g.step()
        self.untoggle_optimizer(optimizer_g)

        logs = {"train/d_loss": d_loss.detach(), "train/g_loss": g_loss.detach()}
        logs.update({f"train/{name}": value.detach() for name, value in terms.items()})
        logs.update({f"weights/{name}": weight for name, weight in self.balancer.weights.items()})
        logs["weights/frozen"] = float(self.balancer.frozen)
        logs["train/lr"] = float(optimizer_g.param_groups[0]["lr"])
        self.log_dict(logs, on_step=True, on_epoch=False, prog_bar=False, batch_size=estimate.shape[0])
        self.log("g", g_loss.detach(), prog_bar=True, on_step=True, batch_size=estimate.shape[0])
        self.log("d", d_loss.detach(), prog_bar=True, on_step=True, batch_size=estimate.shape[0])

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if optimizer is not self._generator_optimizer():
            return
        parameters = [p for p in self.generator.parameters()]
        if self.g_clip_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm=self.g_clip_norm)
            self.log("train/g_grad_norm", norm.detach(), on_step=True)
        elif self.autoclip is not None:
            norm, limit = self.autoclip(parameters)
            self.log_dict({"train/g_grad_norm": norm, "train/g_clip_value": limit}, on_step=True)

    def _generator_optimizer(self) -> torch.optim.Optimizer:
        optimizer = self.trainer.optimizers[0]
        return getattr(optimizer, "optimizer", optimizer)

    # -- validation --------------------------------------------------------------------------

    def distances(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-example multi-resolution STFT distance, (batch,)."""
        return torch.stack(
            [self.reconstruction(estimate[i : i + 1], target[i : i + 1]) for i in range(estimate.shape[0])]
        )

    def on_validation_epoch_start(self) -> None:
        separators = self._val_separators()
        # rows: separators; columns: count, Σ raw distance, Σ enhanced distance
        self._val_sums = torch.zeros(len(separators), 3, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        estimate, target, separator = batch["estimate"], batch["target"], batch["separator"]
        enhanced = self.generator(estimate)
        raw, improved = self.distances(estimate, target), self.distances(enhanced, target)
        for column, values in ((1, raw), (2, improved)):
            self._val_sums[:, column].index_add_(0, separator, values.double())
        self._val_sums[:, 0].index_add_(0, separator, torch.ones_like(raw, dtype=torch.float64))

    def on_validation_epoch_end(self) -> None:
        self.measure_validation_songs()
        sums = self._val_sums
        if sums is None or sums[:, 0].sum() == 0:
            return
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        self.val_table = []
        for name, (count, raw, enhanced) in zip(self._val_separators(), sums.tolist(), strict=True):
            if count:
                self.val_table.append(
                    {
                        "separator": name,
                        "windows": int(count),
                        "mrstft_raw": raw / count,
                        "mrstft_enhanced": enhanced / count,
                        "change": (enhanced - raw) / count,
                    }
                )
                self.log(f"val/mrstft_enhanced/{name}", enhanced / count, sync_dist=False, rank_zero_only=True)
                self.log(f"val/mrstft_raw/{name}", raw / count, sync_dist=False, rank_zero_only=True)
        count, raw, enhanced = sums.sum(0).tolist()
        self.log("val/mrstft_raw", raw / count, sync_dist=False)
        self.log("val/mrstft_enhanced", enhanced / count, prog_bar=True, sync_dist=False)
        self.log("val/mrstft_change", (enhanced - raw) / count, sync_dist=False)

    def _val_separators(self) -> list[str]:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return list(getattr(datamodule, "val_separators", None) or ["all"])

    def measure_validation_songs(self) -> dict | None:
        """Model selection (msgpp.training.selection): the paper's measures on whole validation
        songs, raw vs enhanced, per separator, and the selection score. Logs `val/score` and
        `val/<measure>_{raw,enhanced}/<separator>`, appends to `<log dir>/validation_measures.csv`
        and keeps the record for the checkpoints. Under DDP each rank measures its share of the
        songs and all ranks get every value. None (nothing done) without validation songs."""
        import numpy as np

        from msgpp.training import selection

        trainer = self.trainer
        datamodule = getattr(trainer, "datamodule", None)
        data = getattr(getattr(datamodule, "val_set", None), "data", None)
        if trainer.sanity_checking or data is None or not data.tracks:
            return None
        separators = [name for name in self._val_separators() if name in data.estimates]
        songs = list(range(len(data.tracks)))[: self.val_songs]
        values = selection.song_measures(
            self.generator,
            data,
            separators,
            songs[trainer.global_rank :: trainer.world_size],
            sample_rate=self.generator.sample_rate,
            raw_cache=self._raw_measures,
        )
        if trainer.world_size > 1:
            share = -(-len(songs) // trainer.world_size)  # NaN-padded to the same size on every rank
            padded = np.full((share, *values.shape[1:]), np.nan)
            padded[: len(values)] = values
            gathered = self.all_gather(torch.from_numpy(padded).to(self.device))
            values = gathered.reshape(-1, *values.shape[1:]).cpu().numpy()
        rows = selection.rows_from_measures(values, separators)
        record = {
            "batches": self.batches_done,
            "score": selection.selection_score(rows),
            "rows": rows,
            "fingerprint": selection.generator_fingerprint(self.generator.state_dict()),
        }
        self.validations.append(record)
        logs = {"val/score": record["score"]}
        for row in rows:
            for measure in selection.MEASURES:
                for kind in ("raw", "enhanced"):
                    logs[f"val/{measure}_{kind}/{row['separator']}"] = row[f"{measure}_{kind}"]
        self.log_dict(logs, sync_dist=False)
        folder = trainer.log_dir or trainer.default_root_dir  # every rank calls log_dir (it broadcasts)
        if trainer.is_global_zero:
            selection.append_measures_csv(Path(folder) / "validation_measures.csv", record)
        return record

    # -- checkpoints -------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        from msgpp.enhance.weights_file import versions

        # Everything export needs, as plain data (the state dict holds the weights).
        checkpoint["msgpp"] = {
            "source": self.source,
            "sample_rate": self.generator.sample_rate,
            "generator_config": dict(self.generator.config),
            "discriminator_config": dict(self.discriminators.config),
            "loss_weights": self.balancer.weights,
            "balance_frozen": self.balancer.frozen,
            "batches_done": self.batches_done,
            "versions": versions(),
            # model selection: the latest whole-song validation and every earlier one; each record's
            # fingerprint names the generator weights it measured (`msgpp export` matches them)
            "validation": self.validations[-1] if self.validations else None,
            "validation_history": list(self.validations),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.validations = list((checkpoint.get("msgpp") or {}).get("validation_history") or [])
