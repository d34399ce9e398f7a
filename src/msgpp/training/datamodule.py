"""MSG's training data: salient 1-s windows of (separator estimate, ground truth) for one source.

Data flow (docs/training.md, "Data"):
- ground truth: `<root>/<subset>/<track>/<source>.wav` (MUSDB18-HQ layout, the real one or the
  embedded benchmark); estimates: the estimate cache (msgpp.separators.cache.find_estimates) of
  every *training* separator. Held-out separators never reach the training stream.
- everything is resampled and mixed to mono once, at setup, and kept in memory (16 kHz mono is
  ~4 MB per 60 s of audio and separator);
- the training tracks are split by track into train / validation (seeded);
- the salient-window index (msgpp.training.windows) lists the windows whose ground truth is
  above −60 dBFS; the training pool is every (training separator × salient window);
- each example: the estimate window and its ground truth, both scaled by the estimate's peak
  gain (the generator sees peak-normalised input); with probability `swap_probability` the
  input is the ground truth itself (teaches identity on clean input).

Determinism: the training stream is a pure function of (seed, global position): position p of
the stream is item p mod N of a permutation drawn from (seed, p // N), and p's swap draw comes
from (seed, p). A run resumed from a mid-epoch checkpoint starts the stream where the killed run
stopped (the position comes from the number of optimisation batches done), so it sees exactly
the batches the uninterrupted run would have seen, whatever the worker count. Under DDP each rank
takes its own slice of every global batch.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from msgpp.audio import load_audio, resample, to_mono
from msgpp.constants import MSG_SAMPLE_RATE, SOURCES
from msgpp.errors import MsgppError
from msgpp.separators.cache import find_estimates
from msgpp.training.windows import WindowIndex

log = logging.getLogger(__name__)


@dataclass
class SourceSet:
    """One source's audio for a list of tracks, at the training rate, mono float32 (samples,)."""

    tracks: list[str]
    targets: list[np.ndarray]
    estimates: dict[str, list[np.ndarray]]  # separator → one array per track


def load_mono(path: Path, sample_rate: int) -> np.ndarray:
    audio, rate = load_audio(path)
    return np.ascontiguousarray(resample(to_mono(audio), rate, sample_rate)[0], dtype=np.float32)


def load_source_set(
    root: str | os.PathLike,
    cache: str | os.PathLike,
    subset: str,
    source: str,
    separators: Sequence[str],
    sample_rate: int = MSG_SAMPLE_RATE,
    tracks: Sequence[str] | None = None,
    progress: bool = True,
) -> SourceSet:
    """Ground truth and every separator's estimate of `source` for the tracks all of them have.

    `tracks` restricts the set; by default it is every track with a complete cached estimate
    from each separator and a ground-truth file.
    """
    from tqdm import tqdm

    subset_folder = Path(root) / subset
    if not subset_folder.is_dir():
        raise MsgppError(
            f"{subset_folder}: no such folder (expected the MUSDB18-HQ layout <root>/{subset}/<track>/<source>.wav)"
        )
    found = {separator: find_estimates(cache, separator, subset) for separator in separators}
    names = set(tracks) if tracks is not None else None
    for estimates in found.values():
        have = {track for track, files in estimates.items() if source in files}
        names = have if names is None else names & have
    names = sorted(track for track in (names or set()) if (subset_folder / track / f"{source}.wav").is_file())
    if not names:
        raise MsgppError(
            f"no {subset} track of {root} has a {source!r} ground truth and cached estimates from every "
            f"separator in {list(separators)} under {cache} (run `msgpp separate`)"
        )
    targets: list[np.ndarray] = []
    estimates: dict[str, list[np.ndarray]] = {separator: [] for separator in separators}
    for track in tqdm(names, desc=f"loading {subset} {source}", unit="track", disable=not progress):
        target = load_mono(subset_folder / track / f"{source}.wav", sample_rate)
        per_separator = [load_mono(found[separator][track][source], sample_rate) for separator in separators]
        length = min([target.size] + [estimate.size for estimate in per_separator])
        targets.append(target[:length])
        for separator, estimate in zip(separators, per_separator, strict=True):
            estimates[separator].append(estimate[:length])
    return SourceSet(tracks=names, targets=targets, estimates=estimates)


def normalize_pair(estimate: np.ndarray, target: np.ndarray, eps: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Scale both by the gain that peak-normalises the estimate (the generator's input)."""
    peak = float(np.abs(estimate).max()) if estimate.size else 0.0
    gain = 1.0 / peak if peak > eps else 1.0
    return estimate * gain, target * gain


class TrainingStream(IterableDataset):
    """The seeded training stream over (separator × salient window) pairs; see the module doc.

    `start_batch` (set before each iteration) is the global batch to start from; the stream
    yields `batches_per_epoch` batches' worth of examples for this rank.
    """

    def __init__(
        self,
        data: SourceSet,
        separators: Sequence[str],
        index: WindowIndex,
        batch_size: int,
        batches_per_epoch: int,
        swap_probability: float,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.data, self.separators, self.index = data, list(separators), index
        self.batch_size, self.batches_per_epoch = batch_size, batches_per_epoch
        self.swap_probability, self.seed = swap_probability, seed
        self.rank, self.world_size = rank, world_size
        self.start_batch = 0
        self._permutation_epoch, self._permutation = -1, None

    @property
    def pool_size(self) -> int:
        return len(self.separators) * len(self.index)

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def position(self, batch: int, row: int) -> int:
        """Stream position of `row` of global batch `batch` on this rank."""
        return (batch * self.world_size + self.rank) * self.batch_size + row

    def item(self, position: int) -> int:
        epoch, offset = divmod(position, self.pool_size)
        if epoch != self._permutation_epoch:
            self._permutation = np.random.default_rng([self.seed, epoch]).permutation(self.pool_size)
            self._permutation_epoch = epoch
        return int(self._permutation[offset])

    def example(self, position: int) -> dict[str, torch.Tensor]:
        item = self.item(position)
        separator_number, window_number = divmod(item, len(self.index))
        track = int(self.index.tracks[window_number])
        start = int(self.index.starts[window_number])
        stop = start + self.index.window
        target = self.data.targets[track][start:stop]
        swap = np.random.default_rng([self.seed, 1, position]).random() < self.swap_probability
        estimate = target if swap else self.data.estimates[self.separators[separator_number]][track][start:stop]
        estimate, target = normalize_pair(estimate, target)
        return {
            "estimate": torch.from_numpy(np.ascontiguousarray(estimate[None], dtype=np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(target[None], dtype=np.float32)),
            "swapped": torch.tensor(bool(swap)),
        }

    def __iter__(self):
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        # Worker w builds every workers-th batch; the DataLoader returns workers' batches
        # round-robin, so the global order is kept.
        for offset in range(worker_id, self.batches_per_epoch, workers):
            batch = self.start_batch + offset
            for row in range(self.batch_size):
                yield self.example(self.position(batch, row))


class ValidationClips(Dataset):
    """Fixed validation windows: for each validation track and separator, evenly spaced salient
    windows. No swaps, no randomness. Items carry the separator's number for per-separator metrics."""

    def __init__(self, data: SourceSet, separators: Sequence[str], index: WindowIndex, per_track: int):
        self.data, self.separators = data, list(separators)
        self.window = index.window
        self.items: list[tuple[int, int, int]] = []
        for track in range(len(data.tracks)):
            starts = index.starts[index.tracks == track]
            if starts.size == 0:
                continue
            chosen = starts[np.unique(np.linspace(0, starts.size - 1, min(per_track, starts.size)).round().astype(int))]
            for separator_number in range(len(self.separators)):
                self.items.extend((separator_number, track, int(start)) for start in chosen)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, number: int) -> dict[str, torch.Tensor]:
        separator_number, track, start = self.items[number]
        stop = start + self.window
        estimate = self.data.estimates[self.separators[separator_number]][track][start:stop]
        estimate, target = normalize_pair(estimate, self.data.targets[track][start:stop])
        return {
            "estimate": torch.from_numpy(np.ascontiguousarray(estimate[None], dtype=np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(target[None], dtype=np.float32)),
            "separator": torch.tensor(separator_number),
        }


class StreamLoader(DataLoader):
    """A DataLoader that asks where the stream stands before every pass (see the module doc)."""

    def __init__(self, dataset: TrainingStream, position: Callable[[], int], **kwargs):
        super().__init__(dataset, **kwargs)
        self._position = position

    def __iter__(self):
        self.dataset.start_batch = int(self._position())
        return super().__iter__()

    # Lightning checks for these to know that a loader resumes mid-epoch. Nothing needs saving:
    # the position is recomputed from the restored step count when iteration starts.
    def state_dict(self) -> dict:
        return {"start_batch": int(self.dataset.start_batch)}

    def load_state_dict(self, state: dict) -> None:
        pass


def _seed_worker(worker_id: int) -> None:
    # Examples are pure functions of their stream position; this seeds anything else a worker
    # might draw from (numpy / random / torch global generators) reproducibly.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class MSGDataModule(L.LightningDataModule):
    """Salient windows of cached separator estimates and their ground truth, for one source.

    Args:
        root: dataset folder in MUSDB18-HQ layout (`<root>/train/<track>/<source>.wav`).
        cache: estimate cache folder (`msgpp separate --cache`).
        source: the source class the model enhances (bass, drums, vocals, other).
        separators: training separators, all mixed into one stream.
        held_out: unseen separators: never trained on; validated on when their estimates of the
            validation tracks are cached.
        sample_rate: the rate the model runs at (16 kHz in the paper).
        window_seconds / hop_seconds: training window length and the hop between candidate windows.
        salience_db: a window is used when its ground truth's RMS exceeds this (dBFS).
        swap_probability: chance that an example's input is the ground truth itself.
        val_fraction: share of the training tracks held back for validation (split by track).
        val_windows_per_track: fixed validation windows per track and separator.
        batch_size: examples per batch and device.
        examples_per_epoch: examples per epoch over all devices; default one pass over the pool.
        num_workers: DataLoader worker processes.
        seed: seeds the validation split, the stream's order and the swap draws.
    """

    def __init__(
        self,
        root: str = "data/musdb-embedded",
        cache: str = "cache/estimates",
        source: str = "vocals",
        separators: list[str] = ["demucs_v2", "openunmix"],  # noqa: B006 (jsonargparse shows it)
        held_out: list[str] = ["hdemucs_v3"],  # noqa: B006
        sample_rate: int = MSG_SAMPLE_RATE,
        window_seconds: float = 1.0,
        hop_seconds: float = 0.5,
        salience_db: float = -60.0,
        swap_probability: float = 0.1,
        val_fraction: float = 0.1,
        val_windows_per_track: int = 4,
        batch_size: int = 16,
        examples_per_epoch: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if source not in SOURCES:
            raise MsgppError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
        if not separators:
            raise MsgppError("data.separators: name at least one training separator")
        if overlap := sorted(set(separators) & set(held_out)):
            raise MsgppError(
                f"separator(s) {', '.join(overlap)} are both trained on and held out; "
                "a held-out separator must be unseen"
            )
        if not 0.0 <= swap_probability <= 1.0:
            raise MsgppError(f"data.swap_probability must be in [0, 1], got {swap_probability}")
        if not 0.0 <= val_fraction < 1.0:
            raise MsgppError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        if window_seconds <= 0 or hop_seconds <= 0 or batch_size <= 0:
            raise MsgppError("data.window_seconds, data.hop_seconds and data.batch_size must be positive")
        self.save_hyperparameters()
        self.root, self.cache, self.source = root, cache, source
        self.separators, self.held_out = list(separators), list(held_out)
        self.sample_rate = sample_rate
        self.window = int(round(window_seconds * sample_rate))
        self.hop = int(round(hop_seconds * sample_rate))
        self.salience_db, self.swap_probability = salience_db, swap_probability
        self.val_fraction, self.val_windows_per_track = val_fraction, val_windows_per_track
        self.batch_size, self.examples_per_epoch = batch_size, examples_per_epoch
        self.num_workers, self.seed = num_workers, seed
        self.train_set: TrainingStream | None = None
        self.val_set: ValidationClips | None = None
        self.val_separators: list[str] = []

    # -- setup -------------------------------------------------------------------------------

    def split_tracks(self, tracks: Sequence[str]) -> tuple[list[str], list[str]]:
        """(train, validation) track names: a seeded split by track, at least one of each when
        there are two or more tracks and val_fraction > 0."""
        tracks = sorted(tracks)
        count = 0 if self.val_fraction == 0 or len(tracks) < 2 else max(1, round(self.val_fraction * len(tracks)))
        order = np.random.default_rng([self.seed, 2]).permutation(len(tracks))
        validation = sorted(tracks[i] for i in order[:count])
        return [t for t in tracks if t not in validation], validation

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        everything = load_source_set(self.root, self.cache, "train", self.source, self.separators, self.sample_rate)
        train_tracks, val_tracks = self.split_tracks(everything.tracks)
        train_data = _subset(everything, train_tracks)
        index = WindowIndex.build(train_data.targets, self.window, self.hop, self.salience_db)
        if len(index) == 0:
            raise MsgppError(
                f"no salient {self.window / self.sample_rate:g}-s window of {self.source!r} above "
                f"{self.salience_db:g} dBFS in the {len(train_tracks)} training tracks of {self.root}"
            )
        world_size = self.trainer.world_size if self.trainer else 1
        rank = self.trainer.global_rank if self.trainer else 0
        pool = len(self.separators) * len(index)
        examples = self.examples_per_epoch or pool
        batches_per_epoch = max(1, math.ceil(examples / (self.batch_size * world_size)))
        self.train_set = TrainingStream(
            train_data,
            self.separators,
            index,
            self.batch_size,
            batches_per_epoch,
            self.swap_probability,
            self.seed,
            rank,
            world_size,
        )
        log.info(
            "training pool: %d windows × %d separators = %d examples; %d tracks train, %d validation",
            len(index),
            len(self.separators),
            pool,
            len(train_tracks),
            len(val_tracks),
        )
        if val_tracks:
            val_data = _subset(everything, val_tracks)
            self.val_separators = list(self.separators)
            for separator in self.held_out:  # the unseen separator, when its estimates are cached
                try:
                    unseen = load_source_set(
                        self.root,
                        self.cache,
                        "train",
                        self.source,
                        [separator],
                        self.sample_rate,
                        tracks=val_tracks,
                        progress=False,
                    )
                except MsgppError:
                    log.info(
                        "held-out separator %s: no cached estimates of the validation tracks; not validated", separator
                    )
                    continue
                if unseen.tracks == val_data.tracks:
                    val_data.estimates[separator] = unseen.estimates[separator]
                    self.val_separators.append(separator)
            val_index = WindowIndex.build(val_data.targets, self.window, self.hop, self.salience_db)
            self.val_set = ValidationClips(val_data, self.val_separators, val_index, self.val_windows_per_track)

    # -- loaders -----------------------------------------------------------------------------

    def batches_done(self) -> int:
        """Optimisation batches completed so far (restored on resume); where the stream starts."""
        if self.trainer is None:
            return 0
        module = self.trainer.lightning_module
        return int(module.batches_done) if hasattr(module, "batches_done") else int(self.trainer.global_step)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        return StreamLoader(
            self.train_set,
            self.batches_done,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            worker_init_fn=_seed_worker,
            drop_last=False,
            pin_memory=False,
            persistent_workers=False,  # each pass must see the current start position
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None or len(self.val_set) == 0:
            return []
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            worker_init_fn=_seed_worker,
        )

    def fixed_clips(self, count: int = 3) -> list[dict]:
        """`count` validation examples spread over the set (one per separator where possible),
        for the audio/spectrogram logs: the same clips at every validation."""
        if self.val_set is None or len(self.val_set) == 0:
            return []
        numbers = np.unique(np.linspace(0, len(self.val_set) - 1, count).round().astype(int))
        clips = []
        for number in numbers:
            example = self.val_set[int(number)]
            separator_number, track, start = self.val_set.items[int(number)]
            where = f"{self.val_set.data.tracks[track]}@{start / self.sample_rate:.1f}s"
            example["name"] = f"{where} ({self.val_separators[separator_number]})"
            clips.append(example)
        return clips


def _subset(data: SourceSet, tracks: Sequence[str]) -> SourceSet:
    keep = [data.tracks.index(track) for track in tracks]
    return SourceSet(
        tracks=[data.tracks[i] for i in keep],
        targets=[data.targets[i] for i in keep],
        estimates={separator: [arrays[i] for i in keep] for separator, arrays in data.estimates.items()},
    )
