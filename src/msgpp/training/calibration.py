"""Output-level calibration (beyond the paper): one gain for a trained generator, fitted on the
run's validation songs and folded into its last layer.

The paper's measures (onset F1, rolloff error, SI-SDR) compare peak-normalised or scale-invariant
signals and cannot see a level change; the listener can, and a louder stem can clip.
`level_gain_db` is the median over validation songs and *training* separators (the held-out ones
stay unseen) of 20·log10(level(reference) / level(enhanced)), level being the RMS around the mean
and the reference the input estimate ("input": the enhancer keeps the level the separator gave)
or the ground truth ("truth"), both scaled by the estimate's peak as in training.
`fold_output_gain` multiplies the generator's last transposed convolution by that gain: Demucs'
U-Net computes output = std · decoder(x) + mean, so the output minus the input's mean scales by
exactly the gain, and the file format does not change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from msgpp.errors import MsgppError
from msgpp.models.generator import Generator


def _level(audio: np.ndarray) -> float:
    """RMS around the mean: the level that the folded gain scales exactly (DC is not loudness)."""
    return float(np.std(audio, dtype=np.float64))


REFERENCES = ("input", "truth")


def level_gain_db(
    generator: Generator, data, separators: Sequence[str], songs: Sequence[int], reference: str = "input"
) -> float:
    """The gain (dB) that brings the generator's output to the reference's level ("input": the
    estimate it was given, "truth": the ground truth): the median over (song, separator) pairs of
    the level difference. `data` is a SourceSet."""
    if reference not in REFERENCES:
        raise MsgppError(f"level calibration reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    differences = []
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            for song in songs:
                target = data.targets[song]
                for separator in separators:
                    estimate = data.estimates[separator][song]
                    length = min(len(estimate), len(target))
                    peak = float(np.abs(estimate[:length]).max()) if length else 0.0
                    if peak < 1e-8:
                        continue
                    audio = torch.from_numpy(np.ascontiguousarray(estimate[:length] / peak, dtype=np.float32))
                    enhanced = generator(audio[None, None])[0, 0].numpy()
                    wanted = audio.numpy() if reference == "input" else target[:length] / peak
                    level, wanted_level = _level(enhanced), _level(wanted)
                    if level > 1e-8 and wanted_level > 1e-8:
                        differences.append(20.0 * math.log10(wanted_level / level))
    finally:
        generator.train(was_training)
    if not differences:
        raise MsgppError("level calibration: no validation song with sound in both estimate and ground truth")
    return float(np.median(differences))


def check_foldable(generator_config: dict) -> None:
    """MsgppError unless a gain folded into this generator's last layer scales its output."""
    if generator_config.get("residual"):
        raise MsgppError(
            "level calibration scales the generator's last layer, which an identity-start "
            "(residual) generator's output does not follow; export it without --calibrate-level"
        )
    if not generator_config.get("normalize", True):
        raise MsgppError("level calibration needs a generator with normalize: true (Demucs' output = std · x + mean)")


def fold_output_gain(generator_config: dict, state_dict: dict, gain_db: float) -> dict:
    """The state dict of the same generator with its output scaled by `gain_db` (see the module)."""
    check_foldable(generator_config)
    generator = Generator(**generator_config)
    generator.load_state_dict(state_dict)
    last = generator.unet.decoder[-1][-1]
    gain = 10.0 ** (gain_db / 20.0)
    with torch.no_grad():
        last.weight.mul_(gain)
        last.bias.mul_(gain)
    return {key: value.detach().clone() for key, value in generator.state_dict().items()}
