"""Each metric on signals whose answer is known; the results table; bootstrap intervals and the
paper's sign claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal as sps

from msgpp.evaluation import metrics, summary
from msgpp.evaluation.results import ResultTable, metrics_id, row_key

SR = metrics.MSG_SAMPLE_RATE


def harmonic_notes(seconds: float = 3.0, f0: float = 110.0, top: float = 4000.0, seed: int = 0) -> np.ndarray:
    """Notes (4 per second) with partials up to `top` Hz: clear onsets, a defined rolloff."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, int(top / f0)))
    envelope = np.exp(-((t * 4) % 1.0) * 6)
    return (0.2 * tone * envelope).astype(np.float32)


def lowpass(audio, cutoff):
    return sps.sosfiltfilt(sps.butter(8, cutoff, fs=SR, output="sos"), audio).astype(np.float32)


def hf_noise(audio, level=0.03, seed=1):
    noise = np.random.default_rng(seed).standard_normal(audio.shape)
    return (audio + level * sps.sosfilt(sps.butter(4, 6000, btype="high", fs=SR, output="sos"), noise)).astype(
        np.float32
    )


def test_identical_signals_score_perfectly():
    x = harmonic_notes()
    error = metrics.rolloff_error(x, x)
    assert error.kept_frames > 0 and error.mean == 0.0 and error.mean_abs == 0.0
    assert metrics.onset_f1(x, x).f1 == 1.0
    assert metrics.si_sdr(x, x) == math.inf


def test_low_passed_copy_gives_a_negative_rolloff_error():
    x = harmonic_notes()
    error = metrics.rolloff_error(lowpass(x, 1000), x)
    assert error.mean < -500  # the upper partials (to 4 kHz) are gone: rolloff more than 5 semitones low
    assert np.mean(error.cents < 0) > 0.9  # nearly every frame is low (the filter's edge transients aside)
    assert error.mean_abs >= -error.mean


def test_added_high_frequency_noise_gives_a_positive_rolloff_error():
    x = harmonic_notes()
    error = metrics.rolloff_error(hf_noise(x), x)
    assert error.mean > 100
    assert np.median(error.cents) > 0


def test_rolloff_error_is_in_cents():
    """A pure tone an octave too high: exactly +1200 cents, wherever the rolloff bin lands."""
    t = np.arange(2 * SR) / SR
    low = np.sin(2 * np.pi * 500 * t).astype(np.float32)
    high = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    error = metrics.rolloff_error(high, low)
    # 98 % rolloff sits one FFT bin above the peak for a windowed sine; allow one bin either way
    assert np.median(error.cents) == pytest.approx(1200, abs=1200 * np.log2(1 + 2 * 7.8125 / 500))


def test_silent_ground_truth_frames_are_excluded():
    x = harmonic_notes(seconds=4.0)
    x[SR : 2 * SR] = 0.0  # one second of silence in the truth …
    noisy = hf_noise(x, level=0.3)  # … where the estimate holds loud noise (a huge error if counted)
    estimate = noisy.copy()
    estimate[:SR] = x[:SR]
    estimate[2 * SR :] = x[2 * SR :]  # identical to the truth wherever the truth is audible
    error = metrics.rolloff_error(estimate, x)
    frames = metrics.frame_rms_dbfs(x)
    assert error.kept_frames == int(np.sum(frames >= metrics.SILENCE_DBFS)) < error.total_frames
    # only frames straddling the silence's edges may differ; most kept frames are exact
    assert np.mean(error.cents == 0.0) > 0.85
    # a stricter gate drops more frames
    assert metrics.rolloff_error(estimate, x, silence_dbfs=-10).kept_frames < error.kept_frames


def test_onset_f1_formula_and_missing_onsets():
    assert metrics.OnsetScore(2, 1, 1).f1 == pytest.approx(2 / 3)
    assert metrics.OnsetScore(0, 0, 0).f1 == 1.0
    assert metrics.OnsetScore(0, 3, 2).f1 == 0.0
    x = harmonic_notes()
    estimate = x.copy()
    estimate[len(x) // 2 :] *= 0.001  # the second half's notes are 60 dB down: their onsets are missed
    score = metrics.onset_f1(estimate, x)
    assert score.false_negatives > 0 and score.true_positives > 0
    assert 0 < score.f1 < 1
    assert score.f1 == pytest.approx(
        score.true_positives / (score.true_positives + 0.5 * (score.false_positives + score.false_negatives))
    )


def test_onset_f1_threshold_is_a_parameter():
    x = harmonic_notes()
    many = metrics.onset_frames(x, threshold=0.1).sum()
    few = metrics.onset_frames(x, threshold=5.0).sum()
    assert many > few


def test_si_sdr_known_value_and_scale_invariance():
    rng = np.random.default_rng(0)
    target = rng.standard_normal(SR)
    target -= target.mean()
    noise = rng.standard_normal(SR)
    noise -= noise.mean()
    noise -= noise @ target / (target @ target) * target  # orthogonal to the target
    noise *= np.sqrt((target @ target) / (noise @ noise) / 100.0)  # 20 dB below
    assert metrics.si_sdr(target + noise, target) == pytest.approx(20.0, abs=1e-6)
    assert metrics.si_sdr(3.0 * (target + noise), target) == pytest.approx(20.0, abs=1e-6)
    assert math.isnan(metrics.si_sdr(target, np.zeros_like(target)))


def test_prepare_brings_any_input_to_16k_mono_peak_normalised():
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.3, 0.3, size=(2, 44100)).astype(np.float32)
    prepared = metrics.prepare(stereo, 44100)
    assert prepared.ndim == 1 and len(prepared) == SR
    assert np.abs(prepared).max() == pytest.approx(1.0)
    assert np.all(metrics.prepare(np.zeros((2, 800)), 16000) == 0)


def test_bss_eval_ranks_a_cleaner_estimate_higher():
    rng = np.random.default_rng(0)
    rate = 8000
    targets = {s: rng.standard_normal((1, 2 * rate)).astype(np.float32) for s in ("bass", "drums")}
    clean = {s: targets[s] + 0.05 * rng.standard_normal(targets[s].shape).astype(np.float32) for s in targets}
    dirty = {s: targets[s] + 0.5 * rng.standard_normal(targets[s].shape).astype(np.float32) for s in targets}
    good, bad = metrics.bss_eval(clean, targets, rate), metrics.bss_eval(dirty, targets, rate)
    assert set(good) == {"bass", "drums"} and set(good["bass"]) == {"sdr", "sir", "isr", "sar"}
    assert good["bass"]["sdr"] > bad["bass"]["sdr"] + 10


def test_results_table_round_trips_and_keys_rows(tmp_path):
    table = ResultTable(tmp_path / "results.csv")
    row = {
        "track": "a, b",
        "separator": "demucs_v2",
        "weights_id": "w1",
        "source": "bass",
        "variant": "msg",
        "enhancer_id": "e1",
        "metrics_id": metrics_id(),
        "family": "waveform",
        "onset_f1": 0.5,
        "si_sdr": math.inf,
    }
    table.put(row)
    table.put(dict(row, variant="raw", enhancer_id=""))
    table.save()
    again = ResultTable(tmp_path / "results.csv")
    assert len(again) == 2
    loaded = again.get(row_key(row))
    assert loaded["track"] == "a, b" and loaded["onset_f1"] == 0.5 and loaded["si_sdr"] == math.inf
    assert math.isnan(loaded["sdr"])
    assert len(again.select(variant=("raw", "msg"))) == 2 and len(again.select(variant="raw")) == 1
    assert row_key(dict(row, enhancer_id="e2")) not in again  # a new enhancer is a new row


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(5.0, 2.0, size=30)
    first = summary.bootstrap_mean(values, seed=3)
    assert first == summary.bootstrap_mean(values, seed=3)
    assert first != summary.bootstrap_mean(values, seed=4)
    assert first.low < first.mean < first.high and first.n == 30
    assert first.mean == pytest.approx(values.mean())
    constant = summary.bootstrap_mean([2.0] * 5)
    assert constant.low == constant.high == 2.0
    assert summary.bootstrap_mean([np.nan, np.inf]).n == 0


def _rows(separator, cents_by_track):
    return [
        {"separator": separator, "source": "bass", "variant": "raw", "track": t, "rolloff_cents": c}
        for t, c in cents_by_track.items()
    ]


def test_sign_check_verdicts():
    rows = (
        _rows("demucs_v2", {"a": 300.0, "b": 250.0, "c": 410.0})
        + _rows("openunmix", {"a": 200.0, "b": 150.0, "c": 260.0})
        + _rows("spleeter", {"a": -50.0, "b": 40.0, "c": 10.0})
        + _rows("hdemucs_v3", {"a": 100.0, "b": 120.0, "c": 90.0})
    )
    verdicts = {(c.separator, c.source): c.verdict for c in summary.sign_checks(rows)}
    assert verdicts[("demucs_v2", "bass")] == "agrees"
    assert verdicts[("openunmix", "bass")] == "contradicts"
    assert verdicts[("spleeter", "bass")] == "inconclusive"
    assert verdicts[("hdemucs_v3", "all")] == "no prediction"


def test_metric_cells_pair_msg_with_raw_by_song():
    rows = []
    for track, raw, msg in (("a", 0.4, 0.5), ("b", 0.6, 0.7), ("c", 0.5, 0.6)):
        base = {"separator": "openunmix", "source": "bass", "track": track}
        rows += [dict(base, variant="raw", onset_f1=raw), dict(base, variant="msg", onset_f1=msg)]
    (cell,) = summary.metric_cells(rows, "onset_f1")
    assert cell.raw.mean == pytest.approx(0.5) and cell.msg.mean == pytest.approx(0.6)
    assert cell.delta.mean == pytest.approx(0.1) and cell.delta.low == pytest.approx(0.1)  # every song +0.1


def test_mrstft_distance_is_zero_for_the_target_and_grows_with_noise():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    target = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert metrics.mrstft_distance(target, target) == pytest.approx(0.0, abs=1e-6)
    slightly = target + 0.01 * rng.standard_normal(target.size).astype(np.float32)
    noisy = target + 0.1 * rng.standard_normal(target.size).astype(np.float32)
    assert 0 < metrics.mrstft_distance(slightly, target) < metrics.mrstft_distance(noisy, target)
