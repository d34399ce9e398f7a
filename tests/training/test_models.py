"""Discriminators (and the generator presets they train with): shapes and parameter counts."""

from __future__ import annotations

import pytest
import torch

from msgpp.models.discriminators import (
    DISCRIMINATOR_PRESETS,
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
    # docs/training.md ("The paper's models in figures"): ~93.6k per STFT discriminator, ~8.2M per
    # period discriminator, ≈ 41.4M total.
    assert counts[:3] == [93_634] * 3
    assert counts[3:] == [8_221_154] * 5
    assert count_parameters(discriminators) == 41_386_672
    assert discriminators.names == [
        "stft2048",
        "stft1024",
        "stft512",
        "period2",
        "period3",
        "period5",
        "period7",
        "period11",
    ]


def test_small_configuration_is_small():
    small = build_discriminators("small")
    assert 100_000 < count_parameters(small) < 1_000_000
    assert count_parameters(build_generator("small")) == 1_397_665
    assert DISCRIMINATOR_PRESETS["small"]["periods"] == DISCRIMINATOR_PRESETS["paper"]["periods"]


@pytest.mark.parametrize("samples", [16000, 12345])
def test_every_discriminator_returns_logits_and_feature_maps(samples):
    discriminators = build_discriminators("small")
    audio = torch.randn(2, 1, samples)
    outputs = discriminators(audio)
    assert len(outputs) == 8
    for (logits, maps), name in zip(outputs, discriminators.names, strict=True):
        assert logits.dim() == 2 and logits.shape[0] == 2, name
        # feature maps are the hidden layers only (as the authors' feature matching), not the logits
        assert len(maps) == 5 and all(m.shape[0] == 2 for m in maps), name
    # period p folds the waveform into p columns
    period5 = outputs[5][1][0]
    assert period5.shape[-1] == 5


def test_stft_discriminator_strides_along_time_by_default():
    member = STFTDiscriminator(n_fft=512, channels=4)
    assert member.layout == "time"
    frames = 8000 // 128 + 1  # 63
    spectrogram = member.spectrogram(torch.randn(1, 1, 8000))
    assert spectrogram.shape == (1, 1, 257, frames)  # (frequency, frames), as the paper
    assert torch.equal(member.window, torch.ones(512))  # rectangular window, as the authors' code
    logits, maps = member(torch.randn(1, 1, 8000))
    # every map keeps all 257 frequency bins; the three strided layers halve the frame axis
    assert [m.shape[-1] for m in maps] == [257] * 5
    assert [m.shape[-2] for m in maps] == [63, 32, 16, 8, 8]


def test_time_layout_equals_the_plain_convolution_of_the_frequency_by_frames_spectrogram():
    # The fast path convolves the transposed tensor with transposed kernels; the sums must be those
    # of the paper's (frequency, frames) convolution with stride (1, 2).
    import torch.nn.functional as F

    torch.manual_seed(0)
    member = STFTDiscriminator(n_fft=256, channels=3)
    audio = torch.randn(2, 1, 4000)
    x = member.spectrogram(audio)
    for conv in member.convs:
        x = F.leaky_relu(conv(x), 0.1)
    expected = member.output(x)  # (batch, 1, frequency, frames)
    logits, maps = member(audio)
    assert torch.allclose(logits, expected.transpose(-1, -2).flatten(1), atol=1e-5)
    assert torch.allclose(maps[-1].transpose(-1, -2), x, atol=1e-5)


def test_frequency_layout_is_kept_as_an_option():
    member = STFTDiscriminator(n_fft=512, channels=4, layout="frequency")
    assert member.spectrogram(torch.randn(1, 1, 8000)).shape == (1, 1, 63, 257)
    logits, maps = member(torch.randn(1, 1, 8000))
    assert maps[1].shape[-1] == 129  # frequency axis halved by the first strided layer
    with pytest.raises(ValueError, match="layout"):
        STFTDiscriminator(layout="diagonal")


def test_peak_normalisation_makes_discriminators_level_blind():
    torch.manual_seed(0)
    discriminators = Discriminators(stft_n_ffts=[256], stft_channels=4, periods=[2], period_channels=[4, 8])
    audio = torch.randn(1, 1, 4000)
    quiet, loud = discriminators(0.1 * audio), discriminators(audio)
    for (a, _), (b, _) in zip(quiet, loud, strict=True):
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
    assert all(torch.equal(a[0], b[0]) for a, b in zip(small(audio), again(audio), strict=True))


def test_identity_start_generator_returns_its_input_exactly_before_training():
    torch.manual_seed(0)
    generator = build_generator("small", residual=True)
    audio = torch.randn(3, 1, 12345) * 0.3 + 0.05  # an offset too: the U-Net's mean handling
    assert torch.equal(generator(audio), audio)
    assert generator.config["residual"] is True
    # it can still learn: one gradient step moves it away from the identity
    loss = (generator(audio) - 0.5 * audio).abs().mean()
    loss.backward()
    with torch.no_grad():
        for parameter in generator.parameters():
            if parameter.grad is not None:
                parameter -= 1e-2 * parameter.grad
    assert not torch.equal(generator(audio), audio)
    # the paper's generator (no residual) does not return its input
    assert not torch.allclose(build_generator("small")(audio), audio, atol=1e-2)
