"""Output-level calibration: the folded gain scales the output exactly; the fitted gain brings the
output to the reference level; identity-start generators are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msgpp.errors import MsgppError
from msgpp.models.generator import build_generator
from msgpp.training.calibration import fold_output_gain, level_gain_db
from msgpp.training.datamodule import SourceSet
from tests.helpers.training import TINY_GENERATOR

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _generator(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_generator(dict(TINY_GENERATOR, **overrides), sample_rate=8000).eval()


def test_folded_gain_scales_the_output_around_the_input_mean():
    generator = _generator()
    scaled = _generator(seed=1)  # other weights, replaced by the folded ones
    scaled.load_state_dict(fold_output_gain(generator.config, generator.state_dict(), 6.0))
    audio = torch.randn(2, 1, 4000) * 0.2 + 0.01
    mean = audio.mean(dim=-1, keepdim=True)
    with torch.no_grad():
        expected = 10 ** (6.0 / 20) * (generator(audio) - mean) + mean
        assert torch.allclose(scaled(audio), expected, atol=1e-5)
    with pytest.raises(MsgppError, match="identity-start"):
        residual = _generator(residual=True)
        fold_output_gain(residual.config, residual.state_dict(), 3.0)


@pytest.mark.parametrize("reference", ["input", "truth"])
def test_the_fitted_gain_brings_the_output_to_the_reference_level(reference):
    rng = np.random.default_rng(0)
    targets = [rng.standard_normal(8000).astype(np.float32) * 0.3 for _ in range(3)]
    data = SourceSet(
        tracks=["a", "b", "c"],
        targets=targets,
        estimates={"sep": [(0.5 * t + 0.05 * rng.standard_normal(8000)).astype(np.float32) for t in targets]},
    )
    generator = _generator()
    gain = level_gain_db(generator, data, ["sep"], [0, 1, 2], reference)
    assert abs(gain) > 0.5  # an untrained generator is far from either level
    calibrated = _generator(seed=1)
    calibrated.load_state_dict(fold_output_gain(generator.config, generator.state_dict(), gain))
    assert level_gain_db(calibrated, data, ["sep"], [0, 1, 2], reference) == pytest.approx(0.0, abs=0.05)
    if reference == "truth":  # the estimates are ~6 dB below their ground truth
        assert gain - level_gain_db(generator, data, ["sep"], [0, 1, 2], "input") == pytest.approx(5.9, abs=0.5)
    with pytest.raises(MsgppError, match="reference must be one of input, truth"):
        level_gain_db(generator, data, ["sep"], [0], "loudness")
