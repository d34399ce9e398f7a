"""The paper's objective metrics, each a small function with the paper's parameters as defaults.

All of them take 1-D float arrays: an estimate and its ground truth, same rate, same length
(see `prepare`, which brings any pair to the paper's protocol: 16 kHz, mono, peak-normalised).

- spectral-rolloff error in cents (paper §5, Fig. 4 and 5)
- onset-strength F1 (paper Table 1)
- SI-SDR
- museval's BSS-eval SDR/SIR/ISR/SAR (the MUSDB-standard numbers; slow, optional)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msgpp.constants import MSG_SAMPLE_RATE

ROLLOFF_PERCENT = 0.98
ROLLOFF_N_FFT = 2048
ROLLOFF_HOP = 512
SILENCE_DBFS = -40.0
ONSET_HOP = 256
ONSET_THRESHOLD = 0.75


def prepare(
    audio: np.ndarray, sample_rate: int, target_rate: int = MSG_SAMPLE_RATE, normalize: bool = True
) -> np.ndarray:
    """(channels, samples) or (samples,) at any rate → 1-D float32 at `target_rate`, mono.

    Peak-normalised like the reference evaluation (onset strength is level-dependent, and the
    −40 dBFS silence gate is meant relative to the song's peak). Digital silence stays silent.
    """
    from msgpp.audio import resample

    array = np.asarray(audio, dtype=np.float32)
    mono = array.mean(axis=0) if array.ndim == 2 else array
    mono = resample(mono, int(sample_rate), int(target_rate)) if sample_rate != target_rate else mono
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if normalize:
        peak = float(np.abs(mono).max()) if mono.size else 0.0
        if peak > 1e-8:
            mono = mono / peak
    return mono


def align(estimate: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim both to the shorter length (separators may pad by a few samples)."""
    length = min(len(estimate), len(target))
    return estimate[:length], target[:length]


@dataclass
class RolloffError:
    """Per-frame rolloff error in cents (estimate − ground truth) over the kept frames."""

    cents: np.ndarray  # (kept frames,) signed
    kept_frames: int
    total_frames: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.cents)) if self.cents.size else float("nan")

    @property
    def mean_abs(self) -> float:
        return float(np.mean(np.abs(self.cents))) if self.cents.size else float("nan")


def spectral_rolloff(
    audio: np.ndarray,
    sample_rate: int = MSG_SAMPLE_RATE,
    roll_percent: float = ROLLOFF_PERCENT,
    n_fft: int = ROLLOFF_N_FFT,
    hop_length: int = ROLLOFF_HOP,
) -> np.ndarray:
    """Frequency (Hz) below which `roll_percent` of each frame's magnitude lies. 0 for silent frames."""
    import librosa

    return librosa.feature.spectral_rolloff(
        y=np.asarray(audio, dtype=np.float32),
        sr=sample_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        roll_percent=roll_percent,
    )[0]


def frame_rms_dbfs(audio: np.ndarray, n_fft: int = ROLLOFF_N_FFT, hop_length: int = ROLLOFF_HOP) -> np.ndarray:
    """Per-frame RMS in dBFS, framed exactly like `spectral_rolloff` (centred frames)."""
    import librosa

    rms = librosa.feature.rms(y=np.asarray(audio, dtype=np.float32), frame_length=n_fft, hop_length=hop_length)[0]
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(np.maximum(rms, 0.0))


def rolloff_error(
    estimate: np.ndarray,
    target: np.ndarray,
    sample_rate: int = MSG_SAMPLE_RATE,
    roll_percent: float = ROLLOFF_PERCENT,
    n_fft: int = ROLLOFF_N_FFT,
    hop_length: int = ROLLOFF_HOP,
    silence_dbfs: float = SILENCE_DBFS,
) -> RolloffError:
    """Spectral-rolloff error in cents, 1200·log2(f_est / f_gt), per frame.

    Frames where the ground truth's RMS is below `silence_dbfs` are dropped (nothing to hear), and
    so are frames where the estimate is digitally silent (its rolloff is 0 Hz: no defined pitch
    ratio). Positive: the estimate carries energy above the truth (e.g. added high-frequency noise,
    typical of waveform separators); negative: upper partials are missing (spectrogram separators).
    """
    estimate, target = align(np.asarray(estimate, np.float32), np.asarray(target, np.float32))
    f_est = spectral_rolloff(estimate, sample_rate, roll_percent, n_fft, hop_length)
    f_gt = spectral_rolloff(target, sample_rate, roll_percent, n_fft, hop_length)
    loud = frame_rms_dbfs(target, n_fft, hop_length) >= silence_dbfs
    keep = loud & (f_est > 0) & (f_gt > 0)
    cents = 1200.0 * (np.log2(f_est[keep]) - np.log2(f_gt[keep]))
    return RolloffError(cents=cents.astype(np.float32), kept_frames=int(keep.sum()), total_frames=int(len(f_gt)))


@dataclass
class OnsetScore:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def f1(self) -> float:
        """TP / (TP + ½(FP + FN)); 1.0 when neither signal has any onset frame (nothing to miss)."""
        denominator = self.true_positives + 0.5 * (self.false_positives + self.false_negatives)
        return 1.0 if denominator == 0 else self.true_positives / denominator


def onset_frames(
    audio: np.ndarray,
    sample_rate: int = MSG_SAMPLE_RATE,
    hop_length: int = ONSET_HOP,
    threshold: float = ONSET_THRESHOLD,
) -> np.ndarray:
    """Boolean per-frame onset mask: librosa's onset strength ≥ `threshold`."""
    import librosa

    strength = librosa.onset.onset_strength(
        y=np.asarray(audio, dtype=np.float32), sr=sample_rate, hop_length=hop_length
    )
    return strength >= threshold


def onset_f1(
    estimate: np.ndarray,
    target: np.ndarray,
    sample_rate: int = MSG_SAMPLE_RATE,
    hop_length: int = ONSET_HOP,
    threshold: float = ONSET_THRESHOLD,
) -> OnsetScore:
    """Onset-strength F1 with exact-frame matching (the reference's frame-wise classification).

    A frame is an onset frame when its onset strength reaches `threshold`; TP: onset in both,
    FP: in the estimate only, FN: in the ground truth only.
    """
    estimate, target = align(np.asarray(estimate, np.float32), np.asarray(target, np.float32))
    est = onset_frames(estimate, sample_rate, hop_length, threshold)
    gt = onset_frames(target, sample_rate, hop_length, threshold)
    return OnsetScore(
        true_positives=int(np.sum(est & gt)),
        false_positives=int(np.sum(est & ~gt)),
        false_negatives=int(np.sum(~est & gt)),
    )


def si_sdr(estimate: np.ndarray, target: np.ndarray, eps: float = 1e-10) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean.

    +inf for a perfect estimate; −inf-like (very negative) when the estimate is orthogonal or the
    target is silent.
    """
    estimate, target = align(np.asarray(estimate, np.float64), np.asarray(target, np.float64))
    estimate = estimate - estimate.mean()
    target = target - target.mean()
    target_energy = float(np.dot(target, target))
    if target_energy <= eps:
        return float("nan")  # undefined: nothing to recover
    projection = (np.dot(estimate, target) / target_energy) * target
    noise = estimate - projection
    noise_energy = float(np.dot(noise, noise))
    if noise_energy == 0.0:
        return float("inf")
    return float(10.0 * np.log10(max(float(np.dot(projection, projection)), eps) / noise_energy))


def mrstft_distance(estimate: np.ndarray, target: np.ndarray) -> float:
    """Multi-resolution STFT distance (MSG's reconstruction loss, msgpp.losses, its default
    resolutions) between two prepared 1-D signals; lower is closer, 0 for identical signals."""
    import torch

    from msgpp.losses import MultiResolutionSTFTLoss

    estimate, target = align(np.asarray(estimate, np.float32), np.asarray(target, np.float32))
    if estimate.size == 0:
        return float("nan")
    global _MRSTFT
    if _MRSTFT is None:
        _MRSTFT = MultiResolutionSTFTLoss()
    with torch.no_grad():
        return float(
            _MRSTFT(
                torch.from_numpy(np.ascontiguousarray(estimate))[None, None],
                torch.from_numpy(np.ascontiguousarray(target))[None, None],
            )
        )


_MRSTFT = None  # built on first use (its windows are buffers; no state changes between calls)


def bss_eval(
    estimates: dict[str, np.ndarray], targets: dict[str, np.ndarray], sample_rate: int, window_s: float = 1.0
) -> dict[str, dict[str, float]]:
    """museval's BSS-eval v4 (the MUSDB18 protocol): median over 1-s frames, per source.

    `estimates`/`targets`: {source: (channels, samples)} at `sample_rate`, the same sources in
    both; all sources of a track are evaluated jointly (SIR needs the others). Slow: ~6 s per
    10 s of stereo audio. Returns {source: {"sdr", "sir", "isr", "sar"}}.
    """
    import museval

    sources = sorted(targets)
    length = min(min(a.shape[-1] for a in targets.values()), min(estimates[s].shape[-1] for s in sources))
    channels = max(a.shape[0] for a in targets.values())

    def stack(signals):  # museval wants (sources, samples, channels)
        return np.stack([_channels(signals[s], channels)[:, :length].T for s in sources]).astype(np.float64)

    window = int(window_s * sample_rate)
    sdr, isr, sir, sar = museval.evaluate(stack(targets), stack(estimates), win=window, hop=window)
    results = {}
    for index, source in enumerate(sources):
        results[source] = {
            name: float(np.nanmedian(values[index])) if np.isfinite(values[index]).any() else float("nan")
            for name, values in (("sdr", sdr), ("sir", sir), ("isr", isr), ("sar", sar))
        }
    return results


def _channels(audio: np.ndarray, channels: int) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.shape[0] == channels:
        return audio
    return np.repeat(audio.mean(axis=0, keepdims=True), channels, axis=0)
