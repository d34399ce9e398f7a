"""Validation media: audio (input, enhanced, target) and spectrograms of fixed clips, and the
per-separator metric table, sent to whichever logger the run uses.

- WandbLogger: `log_audio`, `log_image`, `log_table` (offline runs keep them under
  `wandb/offline-run-*/files/media/`).
- TensorBoardLogger: `add_audio`, `add_image`.
- anything else (CSVLogger): wav and png files under `<log_dir>/media/step-<N>/`, and the table
  as `metrics_table.csv` beside them.
The clips are the same at every validation (MSGDataModule.fixed_clips), so runs and steps compare.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


def spectrogram_image(signals: dict[str, np.ndarray], sample_rate: int, n_fft: int = 1024) -> np.ndarray:
    """One RGB image (height, width, 3) uint8: a log-magnitude spectrogram panel per signal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(signals), figsize=(4 * len(signals), 3), sharey=True, squeeze=False)
    window = torch.hann_window(n_fft)
    for axis, (title, signal) in zip(axes[0], signals.items(), strict=True):
        spectrum = torch.stft(
            torch.as_tensor(signal, dtype=torch.float32).reshape(-1),
            n_fft,
            n_fft // 4,
            window=window,
            return_complex=True,
        ).abs()
        decibels = 20 * torch.log10(spectrum.clamp_min(1e-5))
        seconds = signal.size / sample_rate
        axis.imshow(
            decibels.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-80,
            vmax=float(decibels.max()),
            extent=(0, seconds, 0, sample_rate / 2000),
        )
        axis.set_title(title)
        axis.set_xlabel("s")
    axes[0][0].set_ylabel("kHz")
    figure.tight_layout()
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return image


class ValidationMediaLogger(L.Callback):
    """After each validation: audio and spectrograms of `clips` fixed validation clips, and the
    per-separator metric table. Rank zero only."""

    def __init__(self, clips: int = 3):
        super().__init__()
        self.clips = clips

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.logger is None:
            return
        datamodule = trainer.datamodule
        clips = datamodule.fixed_clips(self.clips) if hasattr(datamodule, "fixed_clips") else []
        sample_rate = int(pl_module.generator.sample_rate)
        step = trainer.global_step
        media = []
        with torch.no_grad():
            for number, clip in enumerate(clips):
                estimate = clip["estimate"][None].to(pl_module.device)
                enhanced = pl_module.generator(estimate)[0, 0].float().cpu().numpy()
                signals = {
                    "input": clip["estimate"][0].numpy(),
                    "enhanced": enhanced,
                    "target": clip["target"][0].numpy(),
                }
                media.append((f"clip{number}", clip.get("name", f"clip {number}"), signals))
        table = list(getattr(pl_module, "val_table", []))
        self.send(trainer.logger, media, table, sample_rate, step)

    def send(self, logger, media: list, table: list[dict], sample_rate: int, step: int) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

        if isinstance(logger, WandbLogger):
            for key, name, signals in media:
                logger.log_audio(
                    key=f"audio/{key}",
                    audios=[_playable(s) for s in signals.values()],
                    step=step,
                    caption=[f"{kind}: {name}" for kind in signals],
                    sample_rate=[sample_rate] * len(signals),
                )
                logger.log_image(
                    key=f"spectrogram/{key}",
                    images=[spectrogram_image(signals, sample_rate)],
                    step=step,
                    caption=[name],
                )
            if table:
                columns = list(table[0])
                logger.log_table(
                    key="val/metrics", columns=columns, data=[[row[c] for c in columns] for row in table], step=step
                )
        elif isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            for key, _, signals in media:
                for kind, signal in signals.items():
                    writer.add_audio(
                        f"audio/{key}/{kind}", torch.from_numpy(_playable(signal))[None], step, sample_rate
                    )
                writer.add_image(f"spectrogram/{key}", spectrogram_image(signals, sample_rate), step, dataformats="HWC")
        else:
            self.write_files(Path(logger.log_dir) / "media" / f"step-{step}", media, table, sample_rate)

    @staticmethod
    def write_files(folder: Path, media: list, table: list[dict], sample_rate: int) -> None:
        from msgpp.audio import save_audio

        folder.mkdir(parents=True, exist_ok=True)
        for key, _name, signals in media:
            for kind, signal in signals.items():
                save_audio(folder / f"{key}-{kind}.wav", _playable(signal)[None], sample_rate, subtype="FLOAT")
            import matplotlib.image

            matplotlib.image.imsave(folder / f"{key}-spectrogram.png", spectrogram_image(signals, sample_rate))
        if table:
            with open(folder / "metrics_table.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows(table)


def _playable(signal: np.ndarray) -> np.ndarray:
    """Float32 audio; scaled down (never clipped) when a clip exceeds full scale, so players
    don't distort it. Training clips are peak-normalised inputs, so outputs can exceed 1."""
    signal = np.asarray(signal, dtype=np.float32).reshape(-1)
    peak = float(np.abs(signal).max()) if signal.size else 0.0
    return signal / peak if peak > 1.0 else signal


class TrainingThroughput(L.Callback):
    """Training examples (one-second clips at the default window) per second of training-step
    time, over all devices; validation and data loading excluded. Logged as
    `perf/examples_per_second` and summarised when training ends."""

    def __init__(self):
        super().__init__()
        self.examples, self.seconds, self._started = 0, 0.0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        import time

        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        if self._started is None:
            return
        self.seconds += time.perf_counter() - self._started
        self.examples += int(batch["estimate"].shape[0]) * trainer.world_size
        if self.seconds > 0:
            pl_module.log("perf/examples_per_second", self.examples / self.seconds, on_step=True, rank_zero_only=True)

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0

    @rank_zero_only
    def on_train_end(self, trainer, pl_module) -> None:
        if self.seconds:
            log.info(
                "training throughput: %.2f examples/s (%d examples in %.0f s of training steps)",
                self.examples_per_second,
                self.examples,
                self.seconds,
            )
