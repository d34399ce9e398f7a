"""msgpp's own separator trainer, and the training recipe of the demucs and open-unmix separators.

`msgpp separators train NAME` runs the recipe the separator's class names (`Separator.trainer`):
`train_small_architecture` here (demucs_v2, hdemucs_v3, openunmix), `wavenet.train` and
`spleeter.train` (spleeter's own trainer). Not to be confused with msgpp.training, which trains
the enhancer.

msgpp's trainer fits small configurations of the real architectures on CPU in minutes: random
stereo segments of the training songs, with demucs' usual augmentations (each source from a
random song with probability `remix`, random gain per source, channel swap, polarity flip); the
mixture is the sum of the sources. The loss is the family's own (`Separator.training_loss`).
Everything is seeded: the same seed and step count give the same weights on CPU. A recipe ends
with `publish`: weights, scores and MODEL_CARD.md built beside the output folder, then swapped in.
"""

from __future__ import annotations

import json
import shlex
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

    def __init__(
        self,
        track_folders: list[Path],
        sources: tuple[str, ...],
        segment: int,
        length: int,
        seed: int,
        remix: float,
        sample_rate: int,
    ):
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
        data, _ = sf.read(
            str(self.folders[song] / f"{source}.wav"), start=start, frames=self.segment, dtype="float32", always_2d=True
        )
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
        train_tracks(root),
        separator.sources,
        segment,
        options.steps * options.batch_size,
        options.seed,
        options.remix,
        separator.sample_rate,
    )
    if hasattr(separator, "set_input_statistics"):
        fit_input_statistics(separator, dataset)
    separator.train()
    loader = DataLoader(
        dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.workers, drop_last=True
    )
    losses: list[float] = []  # for the model card: first and last averages

    from lightning.pytorch.callbacks import Callback

    class Record(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    from msgpp.separators.predict_loop import quiet_lightning

    started = time.monotonic()
    with quiet_lightning():
        trainer = Trainer(
            accelerator="auto",
            devices=1,
            max_epochs=1,
            max_steps=options.steps,
            max_time=timedelta(minutes=options.max_minutes) if options.max_minutes else None,
            gradient_clip_val=options.clip,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            callbacks=[Record()],
            deterministic=True,
            default_root_dir=str(root),
        )
        trainer.fit(SeparatorTraining(separator, options.lr), train_dataloaders=loader)
    separator.cpu().eval()
    values = losses
    window = max(1, min(50, len(values) // 5 or 1))
    return {
        "steps": len(values),
        "minutes": round((time.monotonic() - started) / 60, 2),
        "batch_size": options.batch_size,
        "segment_seconds": options.segment_seconds,
        "lr": options.lr,
        "seed": options.seed,
        "remix": options.remix,
        "training_songs": len(dataset.folders),
        "loss_first": float(np.mean(values[:window])) if values else None,
        "loss_last": float(np.mean(values[-window:])) if values else None,
    }


# -- recipes ---------------------------------------------------------------------------------------
def train_small_architecture(
    name: str,
    root,
    out,
    *,
    steps: int = 2000,
    max_minutes: float | None = 10.0,
    batch_size: int = 4,
    segment_seconds: float = 1.0,
    lr: float = 1e-3,
    seed: int = 0,
    arch: dict | None = None,
    threads: int | None = None,
    score_tracks: int | None = None,
    progress: bool = True,
) -> dict:
    """Train the separator `name`'s small architecture (its class's `small_architecture`, updated
    by `arch`) with msgpp's trainer on <root>/train; write its weights, SHA256SUMS and
    MODEL_CARD.md (scored on <root>/test) to `out`. `threads`: torch CPU threads (None: as set).
    Returns {"weights", "weights_id", "training", "scores"}."""
    from msgpp.separators.registry import separator_class

    klass = separator_class(name)
    root, out = Path(root), Path(out)
    if threads is not None:
        torch.set_num_threads(threads)
    architecture = {**klass.small_architecture, **(arch or {})}
    torch.manual_seed(seed)  # the initial weights
    try:
        separator = klass.build(architecture)
    except Exception as error:  # noqa: BLE001 - any bad override: a model class raises what it likes
        raise MsgppError(f"--arch: cannot build {name} with these arguments ({error})") from None
    options = TrainingOptions(
        steps=steps, max_minutes=max_minutes, batch_size=batch_size, segment_seconds=segment_seconds, lr=lr, seed=seed
    )
    facts = train_separator(separator, root, options, progress=progress)
    facts["data"] = _data_facts(root)
    facts["threads"] = torch.get_num_threads()
    command = (
        f"msgpp separators train {name} --root {shlex.quote(str(root))} --steps {steps} "
        f"--max-minutes {max_minutes or 0:g} --batch-size {batch_size} --segment {segment_seconds:g} "
        f"--lr {lr:g} --seed {seed} --threads {facts['threads']}"
        + (f" --arch {shlex.quote(json.dumps(arch))}" if arch else "")
    )
    return publish(separator, out, root, architecture, facts, command, score_tracks=score_tracks, progress=progress)


def publish(
    separator: Separator,
    out,
    root,
    architecture: dict,
    facts: dict,
    command: str,
    *,
    score_tracks: int | None = None,
    progress: bool = True,
    notes=None,
) -> dict:
    """Write a trained separator's weights into a staging folder beside `out`, score them on
    <root>/test, write MODEL_CARD.md (then `notes(card)`, a family's additions), and swap the
    folder in, so `out` is never half-written."""
    from msgpp.files import staging_folder, swap_in
    from msgpp.separators.model_card import write_model_card
    from msgpp.separators.score_table import score_separator

    staging = staging_folder(out)
    info = separator.save_weights(staging, training=facts)
    scores = score_separator(type(separator).load(staging), root, "test", limit=score_tracks, progress=progress)
    card = write_model_card(staging, separator, architecture, info, facts, scores, command)
    if notes is not None:
        notes(card)
    swap_in(staging, out)
    return {"weights": str(out), "weights_id": info.id, "training": facts, "scores": scores["sources"]}


def _data_facts(root: Path) -> dict:
    """The benchmark's identity for the model card: its root and, from its manifest, seed, preset
    and version."""
    facts = {"root": str(root)}
    manifest = Path(root) / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            facts.update({key: data[key] for key in ("seed", "preset", "version") if key in data})
        except ValueError:
            pass
    return facts
