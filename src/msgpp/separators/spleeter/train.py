"""Training a small Spleeter with spleeter's own `train` command (`msgpp separators train spleeter`).

spleeter's trainer runs in Spleeter's environment, started through the worker script (worker.py
`--train`), which hands it a soundfile-based audio adapter instead of ffmpeg processes; the
trained checkpoint is exported (worker.py `--export`) as an inference-only copy, scored here with
the separator and described in MODEL_CARD.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from msgpp.errors import MsgppError
from msgpp.separators.spleeter.client import WORKER_SCRIPT
from msgpp.separators.spleeter.environment import SPLEETER_VERSION, ensure_environment
from msgpp.separators.spleeter.separator import SpleeterSeparator

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


def train_spleeter(
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
    from msgpp.files import staging_folder, swap_in
    from msgpp.separators.model_card import write_model_card
    from msgpp.separators.score_table import score_separator

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
            train_csv=str(work / "train.csv"),
            validation_csv=str(work / "validation.csv"),
            model_dir=str(work / "training"),
            training_cache=str(work / "cache" / "training"),
            validation_cache=str(work / "cache" / "validation"),
        )
        (work / "params.json").write_text(json.dumps(params, indent=2))
        environment = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="2",
            OMP_NUM_THREADS=str(threads),
            TF_NUM_INTRAOP_THREADS=str(threads),
            TF_NUM_INTEROP_THREADS=str(threads),
            PYTHONNOUSERSITE="1",
        )
        environment.pop("PYTHONPATH", None)
        started = time.monotonic()
        log_path = Path(tempfile.gettempdir()) / "msgpp-spleeter-train.log"  # kept for inspection
        stopped = False
        # the worker with spleeter's parameters and its checkpoint folder; then --train or --export
        worker = [
            str(python),
            str(WORKER_SCRIPT),
            "--params",
            str(work / "params.json"),
            "--model-dir",
            str(work / "training"),
        ]
        with open(log_path, "w") as log_file:
            # spleeter's `train` command, run by the worker script so that it can hand spleeter a
            # soundfile-based audio adapter (its --adapter option) instead of ffmpeg processes.
            process = subprocess.Popen(
                [*worker, "--train", str(root)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=environment,
            )
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
        staging = staging_folder(out)
        model = staging / "model"
        export = subprocess.run(
            [*worker, "--export", str(model)],
            capture_output=True,
            text=True,
            env=environment,
        )
        if export.returncode != 0:
            raise MsgppError(f"exporting the trained Spleeter model failed: {export.stderr.strip().splitlines()[-1:]}")
    # The configuration that rebuilds the graph, without this run's temporary paths.
    shipped = {
        key: value
        for key, value in params.items()
        if key not in ("train_csv", "validation_csv", "training_cache", "validation_cache")
    }
    shipped["model_dir"] = "model"
    (model / "params.json").write_text(json.dumps(shipped, indent=2) + "\n")
    from msgpp.separators.weights import write_checksums

    write_checksums(model, sorted(model.glob("model.*")) + [model / "params.json"])
    facts = {
        "steps": trained_steps,
        "stopped_at_max_minutes": stopped,
        "minutes": round(minutes, 2),
        "batch_size": params["batch_size"],
        "T": params["T"],
        "lr": params["learning_rate"],
        "seed": seed,
        "threads": threads,
        "training_songs": song_count,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "data": shown_root,
        "trainer": "spleeter's train command (spleeter 2.4.2, tensorflow-cpu 2.12.1), soundfile audio adapter",
    }
    separator = SpleeterSeparator.load(model, threads=threads)
    try:
        scores = score_separator(separator, root, "test", limit=score_tracks, progress=progress)
        command = (
            f"msgpp separators train spleeter --root {shown_root} --out {out} --steps {steps} --seed {seed} "
            f"--threads {threads}"
            + (f" --max-minutes {max_minutes:g}" if max_minutes else "")
            + (f" --songs {songs}" if songs else "")
            + (" --work <folder kept between runs>" if keep_work else "")
        )
        card = write_model_card(
            staging, separator, params["model"]["params"], separator.weights, facts, scores, command
        )
        _complete_card(card, model, separator)
    finally:
        separator.close()
    # Keep what is not produced here (requirements.txt, the environment) in place.
    swap_in(staging, out, keep=("requirements.txt", ".venv"))
    return {
        "weights": str(out / "model"),
        "weights_id": separator.weights.id,
        "training": facts,
        "scores": scores["sources"],
    }


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
    index = folder / "checkpoint"
    found = re.search(r'^model_checkpoint_path: ".*?-(\d+)"', index.read_text(), re.M) if index.is_file() else None
    return int(found.group(1)) if found else 0


def _losses_from_log(text: str) -> list[float]:
    """The `loss = …` values that TensorFlow's estimator logs every 10 steps."""
    return [float(value) for value in re.findall(r"\bloss = ([0-9.eE+-]+)", text)]


def _complete_card(card: Path, model: Path, separator: SpleeterSeparator) -> None:
    """The generic card counts torch parameters and lists files beside it; Spleeter's live in
    TensorFlow and in model/: say so."""
    sizes = ", ".join(f"`model/{p.name}` ({p.stat().st_size / 1e6:.2f} MB)" for p in sorted(model.glob("model.*")))
    count = separator.model.worker.parameters
    lines = [
        f"- parameters: {count:,} (TensorFlow variables: 4 U-Nets); files: {sizes}, `model/params.json`"
        if line.startswith("- parameters:")
        else line
        for line in card.read_text().splitlines()
    ]
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
