"""Spleeter (Deezer, TensorFlow) behind msgpp's separator interface, running the real package.

spleeter 2.4.2 needs Python < 3.12 and pins tensorflow 2.12.1, numpy < 2 and pandas < 2, which
clash with msgpp's environment, so it lives in its own virtual environment
(`separators/spleeter/.venv`, or $MSGPP_SPLEETER_ENV), made by `make spleeter-env` /
`msgpp spleeter setup` or on first use. One long-lived worker process (spleeter_worker.py, run by
that environment's Python) builds the TensorFlow graph and restores the checkpoint once; msgpp
sends it float32 arrays over a pipe and gets the sources back. Never a process per file.

Weights are a folder in spleeter's own layout: a TensorFlow checkpoint (`checkpoint`,
`model*.index`, `model*.data-*`) and the `.probe` that tells spleeter's model provider the folder
is complete, plus, for models trained here, `params.json` (the spleeter configuration they were
trained with). A folder without params.json is taken for an upstream release: the released
`4stems` folder (from spleeter's `pretrained_models/`) loads with `--weights path/to/4stems`.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msgpp.errors import MsgppError
from msgpp.separators.base import Separator, WeightsInfo
from msgpp.separators.spleeter_env import (  # noqa: F401  (re-exported: the environment's API)
    ENV_VARIABLE,
    SPLEETER_VERSION,
    assets_dir,
    ensure_environment,
    environment_dir,
    environment_python,
    environment_ready,
)

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("spleeter_worker.py")
_HEADER = struct.Struct("<Q")
# The upstream configuration a params-less folder is read with (spleeter's own resource).
UPSTREAM_CONFIGS = {4: "spleeter:4stems", 2: "spleeter:2stems", 5: "spleeter:5stems"}


# --- the worker --------------------------------------------------------------------------------


class SpleeterWorker:
    """The worker process: started once, separates any number of songs, stopped by `close()`.

    Requests are serialised by a lock, so one worker can be shared by threads.
    """

    def __init__(self, config: str, model_dir: Path, threads: int = 1, python: Path | None = None):
        python = python or ensure_environment()
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MODEL_PATH=str(Path(model_dir).parent),
                           OMP_NUM_THREADS=str(threads), PYTHONNOUSERSITE="1")
        environment.pop("PYTHONPATH", None)  # msgpp's packages must not leak into TensorFlow's Python
        self._log = tempfile.NamedTemporaryFile(prefix="msgpp-spleeter-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [str(python), str(WORKER_SCRIPT), "--params", config, "--model-dir", str(model_dir),
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=environment,
        )
        atexit.register(self.close)
        try:
            ready = self._receive()
        except MsgppError:
            self.close()
            raise
        if not ready.get("ok"):
            self.close()
            raise MsgppError(f"{model_dir}: Spleeter could not load it ({ready.get('error')}; log: {self.log_path})")
        self.instruments = list(ready["instruments"])
        self.sample_rate = int(ready["sample_rate"])
        self.versions = ready.get("versions", {})
        self.parameters = int(ready.get("parameters", 0))

    def separate(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """(samples, channels) float32 at the model's rate → {instrument: (samples, channels)}."""
        waveform = np.ascontiguousarray(waveform, dtype=np.float32)
        with self._lock:
            if self.process.poll() is not None:
                raise MsgppError(f"the Spleeter worker has stopped (exit {self.process.returncode}; log: {self.log_path})")
            self._send({"op": "separate", "shape": list(waveform.shape)}, waveform.tobytes())
            header = self._receive()
            if not header.get("ok"):
                raise MsgppError(f"Spleeter failed: {header.get('error')} (log: {self.log_path})")
            results = {}
            for output in header["outputs"]:
                count = int(np.prod(output["shape"]))
                data = self._read_exactly(count * 4)
                results[output["name"]] = np.frombuffer(data, dtype=np.float32).reshape(output["shape"]).copy()
        return results

    def close(self) -> None:
        process = getattr(self, "process", None)
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            try:
                self._send_to(process, {"op": "quit"}, b"")
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()
        self._log.close()
        if process.returncode == 0:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # framing: 8-byte length, JSON header, payload (see spleeter_worker.py)
    def _send(self, header: dict, payload: bytes) -> None:
        try:
            self._send_to(self.process, header, payload)
        except (BrokenPipeError, OSError):
            raise MsgppError(f"the Spleeter worker has stopped (log: {self.log_path})") from None

    @staticmethod
    def _send_to(process, header: dict, payload: bytes) -> None:
        encoded = json.dumps(dict(header, nbytes=len(payload))).encode()
        process.stdin.write(_HEADER.pack(len(encoded)) + encoded)
        process.stdin.write(payload)
        process.stdin.flush()

    def _receive(self) -> dict:
        size = _HEADER.unpack(self._read_exactly(_HEADER.size))[0]
        return json.loads(self._read_exactly(size).decode())

    def _read_exactly(self, count: int) -> bytes:
        data = self.process.stdout.read(count) if self.process else b""
        if len(data) != count:
            raise MsgppError(f"the Spleeter worker stopped unexpectedly (log: {self.log_path})")
        return data


class SpleeterModel(nn.Module):
    """The separator's `model`: a handle on the worker (the network itself lives in TensorFlow)."""

    def __init__(self, worker: SpleeterWorker):
        super().__init__()
        self.worker = worker

    def forward(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        return self.worker.separate(waveform)


# --- the separator ---------------------------------------------------------------------------


class SpleeterSeparator(Separator):
    """Spleeter's U-Nets on stereo 44.1 kHz magnitude spectrograms, masks applied to the STFT."""

    name = "spleeter"
    family = "spectrogram"
    description = "Spleeter (Deezer), the real TensorFlow package in its own environment; 4 stems, 44.1 kHz stereo"
    # Spleeter splits any input into 512-frame patches itself; msgpp chunks only long songs, to
    # bound the worker's memory.
    segment_seconds = 120.0
    overlap_seconds = 2.0

    def __init__(self, worker: SpleeterWorker, weights: WeightsInfo | None = None):
        from msgpp.constants import SOURCES

        ordered = tuple(s for s in SOURCES if s in worker.instruments) + tuple(
            s for s in worker.instruments if s not in SOURCES
        )
        super().__init__(SpleeterModel(worker), weights, sample_rate=worker.sample_rate, sources=ordered, audio_channels=2)

    @classmethod
    def load(cls, weights=None, device="cpu", threads: int | None = None) -> "SpleeterSeparator":
        """`weights`: a spleeter model folder (checkpoint + .probe [+ params.json]); None: the shipped one.
        TensorFlow runs on the CPU whatever `device` says."""
        from msgpp.separators.weights import fingerprint, shipped_folder, verify_files

        folder = Path(weights) if weights is not None else shipped_folder(cls.name) / "model"
        if not (folder / "checkpoint").exists() and (folder / "model" / "checkpoint").is_file():
            folder = folder / "model"  # the shipped layout: separators/spleeter/model/
        config, files = resolve_model_folder(folder)
        hashes = verify_files(files)
        threads = threads or max(1, torch.get_num_threads())
        worker = SpleeterWorker(config, folder.resolve(), threads=threads)
        info = WeightsInfo(str(folder), fingerprint(hashes, extra=f"spleeter {SPLEETER_VERSION}"), tuple(sorted(hashes)))
        return cls(worker, info)

    def forward_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """(batch, 2, samples) → (batch, sources, 2, samples), one worker call per chunk."""
        results = []
        for chunk in chunks.detach().cpu().numpy():
            estimates = self.model(chunk.T)
            results.append(np.stack([estimates[source].T for source in self.sources]))
        return torch.from_numpy(np.stack(results))

    def _overlap_add(self, audio: np.ndarray) -> np.ndarray:
        # A song that fits in one segment goes through whole, without zero padding to the segment.
        if audio.shape[-1] <= int(round(self.segment_seconds * self.sample_rate)):
            return self.forward_chunks(torch.from_numpy(audio[None]))[0].numpy()
        return super()._overlap_add(audio)

    def close(self) -> None:
        """Stop the worker now (it also stops when the separator is garbage-collected or at exit)."""
        self.model.worker.close()


def resolve_model_folder(folder: Path) -> tuple[str, list[Path]]:
    """(spleeter config: a params.json path or an upstream descriptor, the files to fingerprint)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MsgppError(f"{folder}: no such Spleeter model folder")
    if not (folder / "checkpoint").is_file():
        raise MsgppError(f"{folder}: not a Spleeter model folder (no TensorFlow 'checkpoint' file)")
    indexes = sorted(folder.glob("*.index"))
    if not indexes:
        raise MsgppError(f"{folder}: the TensorFlow checkpoint has no .index file")
    if not (folder / ".probe").is_file():
        raise MsgppError(f"{folder}: no .probe file (spleeter's model provider would try to download the model)")
    files = indexes + sorted(folder.glob("*.data-*"))
    params = folder / "params.json"
    if params.is_file():
        try:
            instruments = json.loads(params.read_text())["instrument_list"]
        except (ValueError, KeyError, TypeError):
            raise MsgppError(f"{params}: not a spleeter configuration (no instrument_list)") from None
        if not instruments:
            raise MsgppError(f"{params}: empty instrument_list")
        return str(params), files + [params]
    # An upstream release: its stem count is in its folder name (2stems, 4stems, 5stems).
    digits = "".join(ch for ch in folder.name if ch.isdigit())[:1]
    config = UPSTREAM_CONFIGS.get(int(digits)) if digits else None
    if config is None:
        raise MsgppError(f"{folder}: no params.json, and the folder name does not say 2stems/4stems/5stems")
    return config, files


# --- training a small model with spleeter's own `train` command ----------------------------------

# The released 4stems configuration (spleeter's resources/4stems.json), with the U-Net's filter
# counts (read from model.params.conv_n_filters) and the patch length T made small for a CPU.
SMALL_CONFIG = {
    "mix_name": "mix",
    "instrument_list": ["vocals", "drums", "bass", "other"],
    "sample_rate": 44100,
    "frame_length": 4096,
    "frame_step": 1024,
    "T": 128,
    "F": 1024,
    "n_channels": 2,
    "n_chunks_per_song": 1,
    "separation_exponent": 2,
    "mask_extension": "zeros",
    "learning_rate": 1e-3,
    "batch_size": 4,
    "throttle_secs": 100000,
    "save_summary_steps": 1000000,
    "model": {
        "type": "unet.unet",
        "params": {"conv_activation": "ELU", "deconv_activation": "ELU", "conv_n_filters": [4, 8, 16, 32, 64, 128]},
    },
}


def write_training_csv(path: Path, root: Path, subset: str, instruments: list[str], limit: int | None = None) -> int:
    """spleeter's training CSV: mix_path, <instrument>_path (relative to root), duration."""
    import soundfile as sf

    folder = root / subset
    tracks = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []
    if not tracks:
        raise MsgppError(f"{folder}: no tracks (expected <root>/{subset}/<track>/mixture.wav)")
    rows = ["mix_path," + ",".join(f"{name}_path" for name in instruments) + ",duration"]
    for track in tracks[:limit]:
        for name in ["mixture"] + instruments:
            if not (track / f"{name}.wav").is_file():
                raise MsgppError(f"{track}: no {name}.wav (training needs the mixture and every source)")
        duration = sf.info(str(track / "mixture.wav")).duration
        paths = [f"{subset}/{track.name}/{name}.wav" for name in ["mixture"] + instruments]
        rows.append(",".join(paths) + f",{duration:.3f}")
    path.write_text("\n".join(rows) + "\n")
    return len(rows) - 1


def train_small(
    root,
    out,
    *,
    steps: int = 100000,
    max_minutes: float | None = 7.0,
    seed: int = 3,
    threads: int = 1,
    songs: int | None = None,
    validation_songs: int = 2,
    work=None,
    score_tracks: int | None = None,
    progress: bool = True,
) -> dict:
    """Train SMALL_CONFIG with `python -m spleeter train` (in Spleeter's environment) on
    <root>/train, keep an inference-only copy of the checkpoint as <out>/model, score it on
    <root>/test and write <out>/MODEL_CARD.md. Returns the card's facts.

    spleeter's trainer stops only at `steps`; with `max_minutes` it is stopped after that wall
    time and the last checkpoint (saved every 10 steps) is kept. `songs` limits the training
    songs (the first epoch decodes every file, slow on a busy CPU). `work`: a folder kept between
    runs for spleeter's checkpoints and spectrogram cache, so that a second run resumes where the
    first stopped (spleeter's estimator restores the newest checkpoint of its model_dir)."""
    import contextlib

    import time

    from msgpp.separators.card import write_model_card
    from msgpp.separators.scorecard import score_separator

    shown_root = str(root)  # as the user gave it, for the card (no machine paths)
    root, out = Path(root).resolve(), Path(out)
    python = ensure_environment(progress)
    keep_work = bool(work)
    keep = contextlib.nullcontext(str(work)) if work else tempfile.TemporaryDirectory(prefix="msgpp-spleeter-")
    with keep as folder:
        work = Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        _drop_incomplete_caches(work / "cache")
        params = dict(SMALL_CONFIG, train_max_steps=steps, save_checkpoints_steps=min(steps, 10), random_seed=seed)
        song_count = write_training_csv(work / "train.csv", root, "train", params["instrument_list"], limit=songs)
        write_training_csv(work / "validation.csv", root, "test", params["instrument_list"], limit=validation_songs)
        params.update(
            train_csv=str(work / "train.csv"), validation_csv=str(work / "validation.csv"),
            model_dir=str(work / "training"), training_cache=str(work / "cache" / "training"),
            validation_cache=str(work / "cache" / "validation"),
        )
        (work / "params.json").write_text(json.dumps(params, indent=2))
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS=str(threads),
                           TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads),
                           PYTHONNOUSERSITE="1")
        environment.pop("PYTHONPATH", None)
        started = time.monotonic()
        log_path = Path(tempfile.gettempdir()) / "msgpp-spleeter-train.log"  # kept for inspection
        stopped = False
        with open(log_path, "w") as log_file:
            # spleeter's `train` command, run by the worker script so that it can hand spleeter a
            # soundfile-based audio adapter (its --adapter option) instead of ffmpeg processes.
            process = subprocess.Popen([str(python), str(WORKER_SCRIPT), "--params", str(work / "params.json"),
                                        "--model-dir", str(work / "training"), "--train", str(root)],
                                       stdout=log_file, stderr=subprocess.STDOUT, env=environment)
            try:
                process.wait(timeout=max_minutes * 60 if max_minutes else None)
            except subprocess.TimeoutExpired:
                stopped = True
                process.terminate()
                process.wait()
            except BaseException:
                process.kill()
                process.wait()
                raise
        minutes = (time.monotonic() - started) / 60
        losses = _losses_from_log(log_path.read_text(errors="replace"))
        trained_steps = _checkpoint_step(work / "training")
        if (process.returncode != 0 and not stopped) or not trained_steps:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise MsgppError(f"spleeter train failed (exit {process.returncode}, no checkpoint): {' | '.join(tail)}")
        staging = out.parent / f".{out.name}.new"
        shutil.rmtree(staging, ignore_errors=True)
        model = staging / "model"
        export = subprocess.run([str(python), str(WORKER_SCRIPT), "--params", str(work / "params.json"),
                                 "--model-dir", str(work / "training"), "--export", str(model)],
                                capture_output=True, text=True, env=environment)
        if export.returncode != 0:
            raise MsgppError(f"exporting the trained Spleeter model failed: {export.stderr.strip().splitlines()[-1:]}")
    # The configuration that rebuilds the graph, without this run's temporary paths.
    shipped = {key: value for key, value in params.items()
               if key not in ("train_csv", "validation_csv", "training_cache", "validation_cache")}
    shipped["model_dir"] = "model"
    (model / "params.json").write_text(json.dumps(shipped, indent=2) + "\n")
    from msgpp.separators.weights import write_checksums

    write_checksums(model, sorted(model.glob("model.*")) + [model / "params.json"])
    facts = {
        "steps": trained_steps, "stopped_at_max_minutes": stopped, "minutes": round(minutes, 2),
        "batch_size": params["batch_size"], "T": params["T"],
        "lr": params["learning_rate"], "seed": seed, "threads": threads, "training_songs": song_count,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "data": shown_root, "trainer": "spleeter's train command (spleeter 2.4.2, tensorflow-cpu 2.12.1), soundfile audio adapter",
    }
    separator = SpleeterSeparator.load(model, threads=threads)
    try:
        scores = score_separator(separator, root, "test", limit=score_tracks, progress=progress)
        command = (f"msgpp spleeter train --root {shown_root} --out {out} --steps {steps} --seed {seed} --threads {threads}"
                   + (f" --max-minutes {max_minutes:g}" if max_minutes else "") + (f" --songs {songs}" if songs else "")
                   + (" --work <folder kept between runs>" if keep_work else ""))
        card = write_model_card(staging, separator, params["model"]["params"], separator.weights, facts, scores, command)
        _complete_card(card, model, separator)
    finally:
        separator.close()
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        # Keep what is not produced here (requirements.txt, the environment) in place.
        for keep in ("requirements.txt", ".venv"):
            if (out / keep).exists() and not (staging / keep).exists():
                os.replace(out / keep, staging / keep)
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
    return {"weights": str(out / "model"), "weights_id": separator.weights.id, "training": facts, "scores": scores["sources"]}


def _drop_incomplete_caches(folder: Path) -> None:
    """A run stopped during its first epoch leaves a tf.data cache without its .index (and a
    lockfile) that would stop the next run: remove those, keep finished caches."""
    if not folder.is_dir():
        return
    for lock in folder.glob("*.lockfile"):
        lock.unlink()
    for stem in {path.name.split(".")[0].split("_")[0] for path in folder.iterdir()}:
        if not (folder / f"{stem}.index").is_file():
            for path in folder.glob(f"{stem}*"):
                path.unlink()


def _checkpoint_step(folder: Path) -> int:
    """The global step of the newest checkpoint in a training folder (0 if none)."""
    import re

    index = folder / "checkpoint"
    found = re.search(r'^model_checkpoint_path: ".*?-(\d+)"', index.read_text(), re.M) if index.is_file() else None
    return int(found.group(1)) if found else 0


def _losses_from_log(text: str) -> list[float]:
    """The `loss = …` values that TensorFlow's estimator logs every 10 steps."""
    import re

    return [float(value) for value in re.findall(r"\bloss = ([0-9.eE+-]+)", text)]


def _complete_card(card: Path, model: Path, separator: "SpleeterSeparator") -> None:
    """The generic card counts torch parameters and lists files beside it; Spleeter's live in
    TensorFlow and in model/: say so."""
    sizes = ", ".join(f"`model/{p.name}` ({p.stat().st_size / 1e6:.2f} MB)" for p in sorted(model.glob("model.*")))
    count = separator.model.worker.parameters
    lines = [f"- parameters: {count:,} (TensorFlow variables: 4 U-Nets); files: {sizes}, `model/params.json`"
             if line.startswith("- parameters:") else line for line in card.read_text().splitlines()]
    card.write_text("\n".join(lines) + "\n")
    append_card_notes(card)


def append_card_notes(card: Path) -> None:
    """What the generic card cannot know about Spleeter."""
    notes = f"""
## Spleeter specifics
- The real `spleeter` {SPLEETER_VERSION} package (tensorflow-cpu 2.12.1) runs in its own environment
  (`separators/spleeter/.venv`, built by `make install` / `msgpp spleeter setup`), behind one
  long-lived worker process; see docs/spleeter-wavenet.md.
- Weights: spleeter's own model folder, `model/` (TensorFlow checkpoint `model.index` +
  `model.data-*`, `checkpoint`, `.probe`) with `params.json`, the spleeter configuration it was
  trained with: the released 4stems configuration except `conv_n_filters` 4…128 (released:
  16…512) and T = 128 frames (released: 512). Inference-only copy: no optimiser slots.
- Trained by spleeter's own `train` command (its `--adapter` option given a soundfile reader
  instead of ffmpeg processes), L1 on masked magnitudes, Adam; stopped at the time limit above.
- Like every spectrogram model with F = 1024 bins, it outputs nothing above ~11 kHz.
- Released weights load too: `--weights path/to/pretrained_models/4stems`.
"""
    text = card.read_text()
    if "## Spleeter specifics" not in text:
        card.write_text(text.rstrip("\n") + "\n" + notes)
