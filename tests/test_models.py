"""Discriminators (and the generator presets they train with): shapes and parameter counts."""
from __future__ import annotations

import pytest
import torch

from msgpp.models.discriminators import (
    PRESETS,
    Discriminators,
    PeriodDiscriminator,
    STFTDiscriminator,
    build_discriminators,
)
from msgpp.models.generator import build_generator, count_parameters


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_paper_discriminators_match_the_reference_counts():
    with torch.device("meta"):  # counts only: no memory, no init time
        discriminators = build_discriminators("paper")
    counts = [count_parameters(member) for member in discriminators.members]
    # MSG-SPEC.md: ~93.6k per STFT discriminator, ~8.2M per period discriminator, ≈ 41.4M total.
    assert counts[:3] == [93_634] * 3
    assert counts[3:] == [8_221_154] * 5
    assert count_parameters(discriminators) == 41_386_672
    assert discriminators.names == ["stft2048", "stft1024", "stft512", "period2", "period3", "period5", "period7", "period11"]


def test_small_configuration_is_small():
    small = build_discriminators("small")
    assert 100_000 < count_parameters(small) < 1_000_000
    assert count_parameters(build_generator("small")) == 1_397_665
    assert PRESETS["small"]["periods"] == PRESETS["paper"]["periods"]


@pytest.mark.parametrize("samples", [16000, 12345])
def test_every_discriminator_returns_logits_and_feature_maps(samples):
    discriminators = build_discriminators("small")
    audio = torch.randn(2, 1, samples)
    outputs = discriminators(audio)
    assert len(outputs) == 8
    for (logits, maps), name in zip(outputs, discriminators.names):
        assert logits.dim() == 2 and logits.shape[0] == 2, name
        assert len(maps) == 6 and all(m.shape[0] == 2 for m in maps), name
        assert torch.equal(maps[-1].flatten(1), logits)
    # period p folds the waveform into p columns
    period5 = outputs[5][1][0]
    assert period5.shape[-1] == 5


def test_stft_discriminator_sees_the_spectrogram_at_its_resolution():
    member = STFTDiscriminator(n_fft=512, channels=4)
    spectrogram = member.spectrogram(torch.randn(1, 1, 8000))
    assert spectrogram.shape == (1, 1, 8000 // 128 + 1, 257)
    logits, maps = member(torch.randn(1, 1, 8000))
    assert maps[1].shape[-1] == 129  # frequency axis halved by the first strided layer


def test_peak_normalisation_makes_discriminators_level_blind():
    torch.manual_seed(0)
    discriminators = Discriminators(stft_n_ffts=[256], stft_channels=4, periods=[2], period_channels=[4, 8])
    audio = torch.randn(1, 1, 4000)
    quiet, loud = discriminators(0.1 * audio), discriminators(audio)
    for (a, _), (b, _) in zip(quiet, loud):
        assert torch.allclose(a, b, atol=1e-5)
    raw = Discriminators(stft_n_ffts=[256], stft_channels=4, periods=[2], period_channels=[4, 8], peak_normalize=False)
    raw.load_state_dict(discriminators.state_dict())
    assert not torch.allclose(raw(0.1 * audio)[0][0], raw(audio)[0][0])


def test_period_discriminator_pads_to_whole_periods_and_rejects_bad_shapes():
    member = PeriodDiscriminator(7, channels=(4, 8))
    logits, _ = member(torch.randn(1, 1, 100))  # 100 = 14·7 + 2
    assert logits.shape[0] == 1
    with pytest.raises(ValueError, match="batch, 1, samples"):
        build_discriminators("small")(torch.randn(2, 16000))
    with pytest.raises(KeyError, match="unknown discriminator preset"):
        build_discriminators("huge")


def test_config_rebuilds_the_same_architecture():
    small = build_discriminators("small")
    again = build_discriminators(small.config)
    again.load_state_dict(small.state_dict())
    audio = torch.randn(1, 1, 4000)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(small(audio), again(audio)))
