"""Draw one song of a MUSDB-layout folder: a log-frequency spectrogram of the mixture and of each stem.

python scripts/spectrogram_figure.py --root data/musdb-embedded --out docs/figures/stems.png
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from msgpp.constants import SOURCES, SUBSETS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="MUSDB18(-HQ) layout folder")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--subset", default="test", choices=SUBSETS)
    parser.add_argument("--track", default=None, help="track name (default: the first of the subset)")
    parser.add_argument("--seconds", type=float, default=12.0, help="how much of the song to draw (from its start)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msgpp.data.musdb import open_tracks
    from msgpp.errors import MsgppError
    from msgpp.files import atomic_path

    try:
        tracks = open_tracks(args.root, subset=args.subset, names=[args.track] if args.track else None)
    except MsgppError as error:
        print(f"spectrogram_figure: error: {error}", file=sys.stderr)
        return 2
    track = tracks[0]
    rows = [("mixture", track.load_mixture())] + [(s, track.load_source(s)) for s in SOURCES]
    sr = track.sample_rate
    length = int(args.seconds * sr)

    figure, axes = plt.subplots(len(rows), 1, figsize=(11, 2.1 * len(rows)), sharex=True)
    for axis, (name, audio) in zip(axes, rows, strict=True):
        mono = audio[:, :length].mean(axis=0)
        times, freqs, db = log_spectrogram(mono, sr)
        axis.pcolormesh(times, freqs, db, shading="auto", cmap="magma", vmin=-90, vmax=0)
        axis.set_yscale("log")
        axis.set_ylim(30, sr / 2)
        axis.set_ylabel(f"{name}\nHz")
    axes[-1].set_xlabel("seconds")
    axes[0].set_title(f"{track.subset}/{track.name}: log-frequency spectrograms (dB re full scale)")
    figure.tight_layout()
    from pathlib import Path

    out = Path(args.out)
    with atomic_path(out, suffix=".tmp.png") as temporary:
        figure.savefig(temporary, dpi=110)
    print(f"wrote {out}")
    return 0


def log_spectrogram(mono: np.ndarray, sample_rate: int, n_fft: int = 4096, hop: int = 512):
    """(times, freqs, dB) of a Hann-window STFT, normalised so a full-scale sine reads ~0 dB."""
    window = np.hanning(n_fft).astype(np.float32)
    padded = np.pad(mono, (n_fft // 2, n_fft // 2))
    count = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, n_fft), strides=(padded.strides[0] * hop, padded.strides[0])
    )
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1)).T / (window.sum() / 2)
    db = 20 * np.log10(np.maximum(magnitude, 1e-6))
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    times = np.arange(count) * hop / sample_rate
    return times, freqs[1:], db[1:]


if __name__ == "__main__":
    sys.exit(main())
