"""Each loss on inputs whose answer is known by hand, and the loss balancing."""

from __future__ import annotations

import math

import pytest
import torch

from msgpp.losses import (
    LossBalancer,
    MultiResolutionSTFTLoss,
    STFTLoss,
    discriminator_lsgan_loss,
    feature_matching_loss,
    generator_lsgan_loss,
)


def _outputs(*logit_values, maps=()):
    """Discriminator outputs: one (logits, feature maps) pair per value."""
    return [(torch.full((2, 3), float(v)), [torch.full((2, 4), float(m)) for m in maps]) for v in logit_values]


def test_discriminator_lsgan_loss():
    # real logits 1 and fake logits 0 is the discriminator's optimum
    assert discriminator_lsgan_loss(_outputs(1, 1), _outputs(0, 0)).item() == 0.0
    # (0.5 - 1)² + 0.5² = 0.5 per discriminator, summed over two
    assert discriminator_lsgan_loss(_outputs(0.5, 0.5), _outputs(0.5, 0.5)).item() == pytest.approx(1.0)
    # (0 - 1)² + 1² = 2 for one discriminator fooled both ways
    assert discriminator_lsgan_loss(_outputs(0), _outputs(1)).item() == pytest.approx(2.0)


def test_generator_lsgan_loss():
    assert generator_lsgan_loss(_outputs(1, 1, 1)).item() == 0.0
    assert generator_lsgan_loss(_outputs(0, 3)).item() == pytest.approx(1.0 + 4.0)


def test_feature_matching_loss_and_its_gradient_goes_to_the_fake_only():
    real = _outputs(0, 0, maps=(1.0, 2.0))
    fake = _outputs(0, 0, maps=(1.5, 0.0))
    # two discriminators × (|1 - 1.5| + |2 - 0|) = 2 × 2.5
    assert feature_matching_loss(real, fake).item() == pytest.approx(5.0)
    assert feature_matching_loss(real, real).item() == 0.0
    real_map = torch.ones(2, 4, requires_grad=True)
    fake_map = torch.zeros(2, 4, requires_grad=True)
    feature_matching_loss([(torch.zeros(1), [real_map])], [(torch.zeros(1), [fake_map])]).backward()
    assert real_map.grad is None and fake_map.grad is not None
    with pytest.raises(ValueError):
        feature_matching_loss(_outputs(0, maps=(1.0,)), _outputs(0, 0, maps=(1.0,)))


def test_stft_loss_terms_on_known_inputs():
    torch.manual_seed(0)
    loss = STFTLoss(n_fft=512, hop_length=128, win_length=512)
    audio = torch.randn(2, 1, 8000)
    convergence, log_magnitude = loss(audio, audio)
    assert convergence.item() == pytest.approx(0.0, abs=1e-6) and log_magnitude.item() == pytest.approx(0.0, abs=1e-6)
    # half the amplitude: |T - E| / |T| = 0.5 and |log E - log T| = log 2 (up to the tiny floor)
    convergence, log_magnitude = loss(0.5 * audio, audio)
    assert convergence.item() == pytest.approx(0.5, abs=1e-3)
    assert log_magnitude.item() == pytest.approx(math.log(2), abs=1e-2)


def test_multi_resolution_stft_loss_weights_and_resolutions():
    torch.manual_seed(0)
    audio = torch.randn(3, 1, 16000)
    loss = MultiResolutionSTFTLoss()  # reference: ×0.1 each, mean over 3 resolutions
    assert len(loss.resolutions) == 3 and [r.n_fft for r in loss.resolutions] == [1024, 2048, 512]
    value = loss(0.5 * audio, audio).item()
    assert value == pytest.approx(0.1 * 0.5 + 0.1 * math.log(2), abs=2e-3)
    heavier = MultiResolutionSTFTLoss(convergence_weight=1.0, magnitude_weight=0.0)
    assert heavier(0.5 * audio, audio).item() == pytest.approx(0.5, abs=1e-3)
    estimate = (0.5 * audio).requires_grad_()
    loss(estimate, audio).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0
    silence = torch.zeros(1, 1, 4000, requires_grad=True)
    loss(silence, torch.zeros(1, 1, 4000)).backward()  # digital silence: finite, no NaN
    assert torch.isfinite(silence.grad).all()
    with pytest.raises(ValueError, match="same length"):
        MultiResolutionSTFTLoss(n_ffts=(512,), hop_lengths=(128, 64), win_lengths=(512,))


def test_balancer_equalises_terms_with_a_running_estimate():
    balancer = LossBalancer(["a", "b", "c"], warmup_steps=100, decay=0.9)
    assert balancer.weights == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    torch.manual_seed(0)
    for _ in range(60):  # noisy terms around 1, 10 and 100
        noise = 1 + 0.5 * (torch.rand(3) - 0.5)
        balancer.update({"a": 1.0 * noise[0], "b": 10.0 * noise[1], "c": 100.0 * noise[2]})
    weights = balancer.weights
    # w_i·L_i equal ⇒ weights ∝ 1/L: 100 : 10 : 1 (within the noise the running estimate averages)
    assert weights["a"] / weights["b"] == pytest.approx(10, rel=0.1)
    assert weights["b"] / weights["c"] == pytest.approx(10, rel=0.1)
    assert sum(weights.values()) == pytest.approx(1.0)
    terms = {"a": torch.tensor(1.0), "b": torch.tensor(10.0), "c": torch.tensor(100.0)}
    contributions = [weights[name] * float(terms[name]) for name in terms]
    assert max(contributions) / min(contributions) < 1.2
    assert balancer(terms).item() == pytest.approx(sum(contributions), rel=1e-6)


def test_balancer_freezes_at_the_configured_step():
    balancer = LossBalancer(["x", "y"], warmup_steps=5, decay=0.5)
    for step in range(5):
        assert not balancer.frozen
        balancer.update({"x": 1.0, "y": 3.0 + step})
    assert balancer.frozen and int(balancer.steps) == 5
    frozen = balancer.weights
    balancer.update({"x": 1000.0, "y": 0.001})
    assert balancer.weights == frozen and int(balancer.steps) == 5
    # the frozen state is in the state dict
    copy = LossBalancer(["x", "y"], warmup_steps=5)
    copy.load_state_dict(balancer.state_dict())
    assert copy.frozen and copy.weights == frozen


def test_balancer_with_zero_decay_is_the_reference_last_batch_rule():
    balancer = LossBalancer(["x", "y"], warmup_steps=10, decay=0.0)
    balancer.update({"x": 1.0, "y": 1.0})
    balancer.update({"x": 2.0, "y": 6.0})
    assert balancer.weights == pytest.approx({"x": 0.75, "y": 0.25})  # (1/2, 1/6) normalised
    balancer.update({"x": float("nan"), "y": 1.0})  # a diverged step is ignored
    assert int(balancer.steps) == 2


def test_onset_envelope_is_librosas_onset_strength_and_its_loss_has_a_gradient():
    import librosa
    import numpy as np

    from msgpp.losses import OnsetEnvelopeLoss

    rng = np.random.default_rng(0)
    bursts = np.repeat(rng.random(16) > 0.5, 1000)  # noise bursts switching on and off
    audio = (rng.standard_normal(16000) * bursts).astype(np.float32)
    loss = OnsetEnvelopeLoss(16000)
    envelope = loss.envelope(torch.from_numpy(audio)[None])[0].numpy()
    reference = librosa.onset.onset_strength(y=audio / np.abs(audio).max(), sr=16000, hop_length=256)
    # librosa pads its envelope by lag + n_fft / (2 hop) = 5 frames to centre it (and trims the end)
    aligned = reference[5:]
    assert envelope.max() > 10 and np.abs(envelope[: len(aligned)] - aligned).max() < 1e-3
    assert float(loss(torch.from_numpy(audio)[None], torch.from_numpy(audio)[None])) == 0.0
    smeared = torch.from_numpy(np.convolve(audio, np.ones(400) / 20, mode="same").astype(np.float32))[None]
    smeared.requires_grad_(True)
    value = loss(smeared, torch.from_numpy(audio)[None])
    value.backward()
    assert float(value) > 0.5 and torch.isfinite(smeared.grad).all() and smeared.grad.abs().sum() > 0
