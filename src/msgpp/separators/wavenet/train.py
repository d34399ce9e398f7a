"""Training a Wavenet preset with msgpp's separator trainer (`msgpp separators train wavenet`).

The trainer (msgpp.separators.train) reads songs at the separator's rate, so the training songs
are first resampled to 16 kHz mono in a temporary folder. The loss is upstream's (Σ L1 over
vocals, drums, bass); Adam at upstream's 1e-3.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from msgpp.errors import MsgppError
from msgpp.separators.train import TrainingOptions, publish, train_separator, train_tracks
from msgpp.separators.wavenet.model import SAMPLE_RATE, WAVENET_CONFIGS, Wavenet
from msgpp.separators.wavenet.separator import WavenetSeparator


def train_wavenet(
    root,
    out,
    *,
    preset: str = "small",
    steps: int = 2000,
    max_minutes: float | None = 7.0,
    batch_size: int = 4,
    segment_seconds: float = 0.5,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = None,
    score_tracks: int | None = None,
    init=None,
    progress: bool = True,
) -> dict:
    """Train a Wavenet preset on a MUSDB18-HQ-layout folder and write weights + model card to `out`.

    `preset`: a name of WAVENET_CONFIGS. `init`: weights (a folder or file `WavenetSeparator.load`
    reads) to continue from instead of the preset's random initialisation; its training facts are
    kept under "continued_from". `threads`: torch CPU threads (None: as set).
    Returns {"weights", "weights_id", "training", "scores"}.
    """
    root, out = Path(root), Path(out)
    if not (root / "train").is_dir():
        raise MsgppError(f"{root}: no train folder (expected <root>/train/<track>/<source>.wav)")
    if preset not in WAVENET_CONFIGS:
        raise MsgppError(f"unknown Wavenet preset {preset!r}; choose one of {', '.join(WAVENET_CONFIGS)}")
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    separator = WavenetSeparator(Wavenet(WAVENET_CONFIGS[preset]))
    previous = None
    if init is not None:
        start = WavenetSeparator.load(init)
        separator = WavenetSeparator(start.model)
        package = torch.load(start.weights.location, map_location="cpu", weights_only=True)
        previous = dict(package.get("training", {}), weights_id=start.weights.id) if isinstance(package, dict) else None
    options = TrainingOptions(
        steps=steps, max_minutes=max_minutes, batch_size=batch_size, segment_seconds=segment_seconds, lr=lr, seed=seed
    )
    with tempfile.TemporaryDirectory(prefix="msgpp-wavenet-") as temporary:
        _mono_copy(
            train_tracks(root), Path(temporary) / "train", ("mixture",) + separator.sources, SAMPLE_RATE, progress
        )
        facts = train_separator(separator, Path(temporary), options, progress=progress)
    facts.update(preset=preset, data=str(root), threads=torch.get_num_threads())
    if previous is not None:
        facts["continued_from"] = previous
        facts["total_steps"] = facts["steps"] + int(previous.get("total_steps", previous.get("steps", 0)))
    command = (
        f"msgpp separators train wavenet --root {root} --out {out} --preset {preset} --steps {steps} "
        f"--batch-size {batch_size} --segment {segment_seconds:g} --lr {lr:g} --seed {seed}"
        + (f" --max-minutes {max_minutes:g}" if max_minutes else "")
        + (f" --init {init}" if init else "")
    )
    return publish(
        separator,
        out,
        root,
        separator.model.config.to_dict(),
        facts,
        command,
        score_tracks=score_tracks,
        progress=progress,
        notes=append_card_notes,
    )


def append_card_notes(card: Path) -> None:
    """What the generic card cannot know: Wavenet's weights format and the upstream weights."""
    notes = """
## Wavenet specifics
- Weights: a msgpp checkpoint (`torch.save` of a dict: format `msgpp-wavenet/1`, the `WavenetConfig`
  constructor arguments, the state dict, library versions, these training facts), loaded with
  `torch.load(weights_only=True)`. Upstream's own format is Keras HDF5: `--weights path/to/checkpoint.hdf5`
  loads the released multi-instrument model (3,277,763 parameters) through the converter, and
  `msgpp wavenet-convert IN.hdf5 OUT.pt` writes it in this format.
- Mono 16 kHz: stereo input is averaged, the estimates are resampled back and duplicated to the
  mixture's channels, so stereo differences between sources are lost (upstream behaves the same).
- The network predicts vocals, drums and bass; `other` is the mixture minus their sum.
"""
    text = card.read_text()
    if "## Wavenet specifics" not in text:
        card.write_text(text.rstrip("\n") + "\n" + notes)


def _mono_copy(tracks, folder: Path, sources, sample_rate: int, progress: bool) -> None:
    """<track>/<source>.wav → folder/<track>/<source>.wav, mono at `sample_rate` (float WAV)."""
    from tqdm import tqdm

    from msgpp.audio import load_audio, resample, save_audio, to_mono

    for track in tqdm(tracks, desc="16 kHz mono copy", unit="song", disable=not progress):
        for source in sources:
            audio, rate = load_audio(track / f"{source}.wav")
            save_audio(
                folder / track.name / f"{source}.wav",
                resample(to_mono(audio), rate, sample_rate),
                sample_rate,
                subtype="FLOAT",
            )
