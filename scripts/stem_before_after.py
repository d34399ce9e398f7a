r"""Draw one stem before and after enhancement: log-frequency spectrograms of the separator's stem
(`--keep-raw` writes it as <stem>_raw) above the enhanced one, and their difference.

    msgpp separate song.mp3 --enhance --keep-raw --stems bass --out stems/
    python scripts/stem_before_after.py stems/song/bass_raw.wav stems/song/bass.wav \
        --out docs/figures/bass-before-after.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the separator's stem (e.g. stems/song/bass_raw.wav)")
    parser.add_argument("after", type=Path, help="the enhanced stem (e.g. stems/song/bass.wav)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--seconds", type=float, default=12.0, help="how much to draw (from the start)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msgpp.audio import load_audio
    from msgpp.errors import MsgppError
    from msgpp.files import atomic_path

    sys.path.insert(0, str(Path(__file__).parent))
    from spectrogram_figure import log_spectrogram

    try:
        (before, rate), (after, after_rate) = load_audio(args.before), load_audio(args.after)
    except MsgppError as error:
        print(f"stem_before_after: error: {error}", file=sys.stderr)
        return 2
    if rate != after_rate:
        print(f"stem_before_after: error: {args.before} is {rate} Hz, {args.after} {after_rate} Hz", file=sys.stderr)
        return 2
    length = min(before.shape[1], after.shape[1], int(args.seconds * rate))
    spectra = [log_spectrogram(audio[:, :length].mean(axis=0), rate) for audio in (before, after)]
    rows = [
        (f"before\n({args.before.name})", spectra[0][2], "magma", (-90, 0)),
        (f"after\n({args.after.name})", spectra[1][2], "magma", (-90, 0)),
        ("after − before\ndB", spectra[1][2] - spectra[0][2], "coolwarm", (-20, 20)),
    ]
    times, freqs = spectra[0][0], spectra[0][1]
    figure, axes = plt.subplots(len(rows), 1, figsize=(11, 2.3 * len(rows)), sharex=True)
    for axis, (name, db, colours, (low, high)) in zip(axes, rows, strict=True):
        mesh = axis.pcolormesh(times, freqs, db, shading="auto", cmap=colours, vmin=low, vmax=high)
        axis.set_yscale("log")
        axis.set_ylim(30, rate / 2)
        axis.set_ylabel(f"{name}\nHz")
        figure.colorbar(mesh, ax=axis, pad=0.01)
    axes[-1].set_xlabel("seconds")
    axes[0].set_title("one stem before and after MSG enhancement (dB re full scale)")
    figure.tight_layout()
    with atomic_path(args.out, suffix=".tmp.png") as temporary:
        figure.savefig(temporary, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
