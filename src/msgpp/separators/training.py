"""Training a separator on a MUSDB18-HQ-layout folder (`msgpp separators train NAME`).

Small configurations of the real architectures, trained on CPU in minutes: random stereo
segments of the training songs, with demucs' usual augmentations (each source from a random
song with probability `remix`, random gain per source, channel swap, polarity flip); the mixture
is the sum of the sources. The loss is the family's own (`Separator.training_loss`). Everything
is seeded: the same seed and step count give the same weights on CPU.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, Dataset

from msgpp.errors import MsgppError
from msgpp.separators.base import Separator


@dataclass
class TrainingOptions:
    steps: int = 2000
    max_minutes: float | None = 10.0
    batch_size: int = 4
    segment_seconds: float = 1.0
    lr: float = 1e-3
    seed: int = 0
    remix: float = 0.5  # probability that each source comes from a random song
    workers: int = 0
    clip: float = 5.0


class SourceSegments(Dataset):
    """Item i: (mixture (C, N), sources (S, C, N)) from a generator seeded by (seed, i)."""

    def __init__(self, track_folders: list[Path], sources: tuple[str, ...], segment: int, length: int,
                 seed: int, remix: float, sample_rate: int):
        self.sources, self.segment, self.length, self.seed, self.remix = sources, segment, length, seed, remix
        self.folders, self.frames = [], []
        for folder in track_folders:
            frames = []
            for source in sources:
                path = folder / f"{source}.wav"
                if not path.is_file():
                    raise MsgppError(f"{folder}: no {source}.wav (training needs every source)")
                info = sf.info(str(path))
                if info.samplerate != sample_rate:
                    raise MsgppError(f"{path}: {info.samplerate} Hz; this separator trains at {sample_rate} Hz")
                frames.append(info.frames)
            if min(frames) >= segment:
                self.folders.append(folder)
                self.frames.append(min(frames))
        if not self.folders:
            raise MsgppError(f"no training song is longer than one segment ({segment} samples)")

    def __len__(self) -> int:
        return self.length

    def _read(self, song: int, source: str, rng: np.random.Generator) -> np.ndarray:
        start = int(rng.integers(0, self.frames[song] - self.segment + 1))
        data, _ = sf.read(str(self.folders[song] / f"{source}.wav"), start=start, frames=self.segment,
                          dtype="float32", always_2d=True)
        audio = data.T
        if audio.shape[0] == 1:
            audio = np.repeat(audio, 2, axis=0)
        return audio[:2]

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        song = int(rng.integers(len(self.folders)))
        stems = []
        for source in self.sources:
            chosen = int(rng.integers(len(self.folders))) if rng.random() < self.remix else song
            audio = self._read(chosen, source, rng) * rng.uniform(0.5, 1.25)
            if rng.random() < 0.5:
                audio = audio[::-1]
            stems.append(audio)
        targets = np.stack(stems).astype(np.float32)
        if rng.random() < 0.5:
            targets = -targets
        return torch.from_numpy(targets.sum(axis=0)), torch.from_numpy(targets)


class SeparatorTraining(LightningModule):
    def __init__(self, separator: Separator, lr: float):
        super().__init__()
        self.separator, self.lr = separator, lr

    def training_step(self, batch, batch_idx):
        mixture, targets = batch
        loss = self.separator.training_loss(mixture, targets)
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.separator.parameters(), lr=self.lr)


def train_tracks(root: Path) -> list[Path]:
    from msgpp.separators.tracks import list_tracks

    return [track.mixture.parent for track in list_tracks(root, ("train",))]


def fit_input_statistics(separator: Separator, dataset: SourceSegments, examples: int = 64) -> None:
    """Open-Unmix's input scaler from the training mixtures' magnitudes (as its trainer does)."""
    magnitudes = []
    with torch.no_grad():
        for index in range(min(examples, len(dataset))):
            mixture, _ = dataset[index]
            spec = separator.magnitudes(mixture[None])  # (1, C, bins, frames)
            magnitudes.append(spec[0].permute(0, 2, 1).reshape(-1, spec.shape[2]))
    stacked = torch.cat(magnitudes)
    separator.set_input_statistics(stacked.mean(0), stacked.std(0))


def train_separator(separator: Separator, root: Path, options: TrainingOptions, progress: bool = True) -> dict:
    """Train `separator` in place; returns facts for the model card (steps, minutes, losses)."""
    seed_everything(options.seed, workers=True, verbose=False)
    segment = int(round(options.segment_seconds * separator.sample_rate))
    dataset = SourceSegments(
        train_tracks(root), separator.sources, segment, options.steps * options.batch_size,
        options.seed, options.remix, separator.sample_rate,
    )
    if hasattr(separator, "set_input_statistics"):
        fit_input_statistics(separator, dataset)
    separator.train()
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.workers,
                        drop_last=True)
    losses: list[float] = []  # for the model card: first and last averages

    from lightning.pytorch.callbacks import Callback

    class Record(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    from msgpp.separators.predict import quiet_lightning

    started = time.monotonic()
    with quiet_lightning():
        trainer = Trainer(
            accelerator="auto", devices=1, max_epochs=1, max_steps=options.steps,
            max_time=timedelta(minutes=options.max_minutes) if options.max_minutes else None,
            gradient_clip_val=options.clip, logger=False, enable_checkpointing=False,
            enable_model_summary=False, enable_progress_bar=progress, callbacks=[Record()],
            deterministic=True, default_root_dir=str(root),
        )
        trainer.fit(SeparatorTraining(separator, options.lr), train_dataloaders=loader)
    separator.cpu().eval()
    values = losses
    window = max(1, min(50, len(values) // 5 or 1))
    return {
        "steps": len(values), "minutes": round((time.monotonic() - started) / 60, 2),
        "batch_size": options.batch_size, "segment_seconds": options.segment_seconds, "lr": options.lr,
        "seed": options.seed, "remix": options.remix, "training_songs": len(dataset.folders),
        "loss_first": float(np.mean(values[:window])) if values else None,
        "loss_last": float(np.mean(values[-window:])) if values else None,
    }
