"""Separating tracks into the estimate cache as a Lightning predict loop (used by fill_cache.py).

One prediction step separates one track; a BasePredictionWriter writes its estimates to the
cache as soon as the step ends, so a killed run loses at most the track in flight (and leaves no
half-written file: every write is atomic and meta.json comes last). Tracks already complete in the
cache are not even handed to the loop, so a rerun skips them. Each track is locked from before it
is separated until its meta.json is written (cache.track_lock): a second `msgpp separate` into
the same cache waits for the track the first one is writing, then finds it done and skips it, so
two runs neither interleave their files nor separate a track twice. The same code spreads the tracks
over several GPUs with DDP (Lightning gives each rank its own tracks when predicting); on CPU it
runs one process with all the cores torch is given.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, TQDMProgressBar
from torch.utils.data import Dataset

from msgpp.errors import MsgppError
from msgpp.files import sha256_file
from msgpp.separators import cache
from msgpp.separators.base import Separator
from msgpp.separators.tracks import TrackRef


class MixtureDataset(Dataset):
    """Loads one track's mixture per item (in the DataLoader's workers when there are some)."""

    def __init__(self, tracks: list[TrackRef]):
        self.tracks = tracks

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, index: int) -> dict:
        from msgpp.audio import load_audio

        track = self.tracks[index]
        audio, sample_rate = load_audio(track.mixture)
        return {"index": index, "mixture": audio, "sample_rate": sample_rate}


def _single(items: list[dict]) -> dict:
    """Batches of one track: the mixtures have different lengths."""
    return items[0]


class SeparationTask(LightningModule):
    """Wraps a Separator so Lightning can place it on a device and run predict steps. `claim(index)`
    (EstimateWriter.claim) locks a track before it is separated; False skips it."""

    def __init__(self, separator: Separator, claim=None):
        super().__init__()
        self.separator = separator
        self.claim = claim

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if self.claim is not None and not self.claim(batch["index"]):
            return {"index": batch["index"], "skipped": True}
        estimates = self.separator.separate(batch["mixture"], batch["sample_rate"])
        return {"index": batch["index"], "sample_rate": batch["sample_rate"], "estimates": estimates}


class EstimateWriter(BasePredictionWriter):
    """Writes each track's estimates to <cache>/<separator>/<weights id>/<subset>/<track>/."""

    def __init__(
        self, cache_root: Path, separator: Separator, tracks: list[TrackRef], subtype: str, force: bool = False
    ):
        super().__init__(write_interval="batch")
        self.cache_root, self.separator, self.tracks, self.subtype = cache_root, separator, tracks, subtype
        self.force = force
        self.locks: dict[int, object] = {}  # track index → its held FileLock, until written
        self.done_elsewhere = 0  # tracks another run wrote while this one waited or worked
        self.waited = False

    def folder(self, index: int) -> Path:
        return cache.track_folder(self.cache_root, self.separator.name, self.separator.weights_id, self.tracks[index])

    def claim(self, index: int) -> bool:
        """Lock a track before it is separated (waiting while another run writes it); False when
        it turns out complete by then (another run wrote it), so it is skipped."""
        folder = self.folder(index)
        try:
            lock = cache.track_lock(folder)
        except OSError as error:
            raise MsgppError(f"{folder}: cannot write estimates ({error.strerror or error})") from None
        if not lock.acquire(wait=False):
            if not self.waited:
                print(f"{folder}: another `msgpp separate` is writing this track; waiting for it", file=sys.stderr)
                self.waited = True
            lock.acquire()
        if not self.force and cache.up_to_date(folder, self.tracks[index]):
            lock.release()
            self.done_elsewhere += 1
            return False
        self.locks[index] = lock
        return True

    def release_all(self) -> None:
        for lock in self.locks.values():
            lock.release()
        self.locks.clear()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if prediction.get("skipped"):
            return
        try:
            self._write(prediction)
        finally:
            lock = self.locks.pop(prediction["index"], None)
            if lock is not None:
                lock.release()

    def _write(self, prediction: dict) -> None:
        import msgpp

        track = self.tracks[prediction["index"]]
        folder = self.folder(prediction["index"])
        meta = {
            "separator": self.separator.name,
            "family": self.separator.family,
            "weights": cache.portable_location(self.separator.weights.location),
            "weights_sha256": self.separator.weights.sha256,
            cache.MIXTURE_KEY: sha256_file(track.mixture),
            "model_sample_rate": self.separator.sample_rate,
            "subset": track.subset,
            "track": track.name,
            "msgpp_version": msgpp.__version__,
        }
        try:
            cache.write_track(folder, prediction["estimates"], prediction["sample_rate"], meta, self.subtype)
        except OSError as error:  # mkdir / unlink; save_audio reports its own errors as MsgppError
            raise MsgppError(f"{folder}: cannot write estimates ({error.strerror or error})") from None


class TrackProgressBar(TQDMProgressBar):
    """Lightning's bar, one step per track, labelled with the separator."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    @property
    def predict_description(self) -> str:
        return self.label

    def init_predict_tqdm(self):
        bar = super().init_predict_tqdm()
        bar.unit = "track"
        return bar

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        super().on_predict_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        self.predict_progress_bar.set_description(self.label)  # not "<label> DataLoader 0"


def separate_tracks(
    separator: Separator,
    tracks: list[TrackRef],
    cache_root: str | os.PathLike,
    *,
    force: bool = False,
    subtype: str = "PCM_16",
    accelerator: str = "auto",
    devices: int | str = "auto",
    workers: int = 0,
    progress: bool = True,
) -> dict:
    """Separate every pending track with an already loaded separator; returns counts."""
    cache_root = Path(cache_root)
    todo = cache.pending_tracks(cache_root, separator.name, separator.weights_id, tracks, force)
    summary = {
        "separator": separator.name,
        "weights_id": separator.weights_id,
        "tracks": len(tracks),
        "separated": len(todo),
        "skipped": len(tracks) - len(todo),
    }
    if not todo:
        return summary
    loader = torch.utils.data.DataLoader(
        MixtureDataset(todo),
        batch_size=1,
        shuffle=False,
        num_workers=workers,
        collate_fn=_single,
    )
    writer = EstimateWriter(cache_root, separator, todo, subtype, force)
    callbacks = [writer]
    if progress:
        callbacks.append(TrackProgressBar(f"{separator.name}"))
    with quiet_lightning():  # one track per batch and no workers are by design; tips are noise
        trainer = Trainer(
            accelerator=accelerator,
            devices=devices,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            callbacks=callbacks,
            default_root_dir=str(cache_root),
        )
        try:
            trainer.predict(SeparationTask(separator, writer.claim), dataloaders=loader, return_predictions=False)
        except SystemExit:
            # Lightning turns Ctrl-C into a silent exit(1); the command reports it as an interruption.
            if trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            writer.release_all()  # a track whose separation failed: its lock goes with this run
    summary["separated"] -= writer.done_elsewhere
    summary["skipped"] += writer.done_elsewhere
    summary["rank"] = trainer.global_rank  # under DDP every process returns here; rank 0 reports
    return summary


class quiet_lightning:
    """Lightning's start-up tips and device notes are noise for a command-line user."""

    def __enter__(self):
        self.logger = logging.getLogger("lightning.pytorch")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*treespec.*")

    def __exit__(self, *exc):
        self.warnings.__exit__(*exc)
        self.logger.setLevel(self.level)
