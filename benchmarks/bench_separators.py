"""Separator speed: seconds of compute per second of 44.1 kHz stereo audio (real-time factor), per
shipped separator, at 1 thread and at all of torch's threads; and the cost of a fully cached
`msgpp separate` rerun (no model is loaded then).

    python benchmarks/bench_separators.py [--seconds 20] [--separators demucs_v2,hdemucs_v3,openunmix]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def real_time_factor(separator, mixture: np.ndarray, rate: int, repeats: int = 2) -> float:
    separator.separate(mixture[:, : rate // 2], rate)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        separator.separate(mixture, rate)
        best = min(best, time.perf_counter() - start)
    return best / (mixture.shape[-1] / rate)


def cached_rerun_seconds(name: str, seconds: float) -> tuple[float, float]:
    """(first run, rerun) wall seconds of `msgpp separate` on 2 songs, in this process."""
    from msgpp.cli import main

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "songs"
        rng = np.random.default_rng(0)
        for index in range(2):
            track = root / "test" / f"song-{index}"
            track.mkdir(parents=True)
            sf.write(
                track / "mixture.wav", (0.1 * rng.standard_normal((int(seconds * 44100), 2))).astype(np.float32), 44100
            )
        args = ["separate", "--root", str(root), "--separators", name, "--cache", str(Path(folder) / "cache")]
        times = []
        for _ in range(2):
            start = time.perf_counter()
            assert main(args) == 0
            times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--separators", default="demucs_v2,hdemucs_v3,openunmix")
    args = parser.parse_args()

    import msgpp.separators as separators

    rate = 44100
    mixture = (0.1 * np.random.default_rng(0).standard_normal((2, int(args.seconds * rate)))).astype(np.float32)
    threads = torch.get_num_threads()
    print(f"{'separator':<12} {'RTF 1 thread':>13} {f'RTF {threads} threads':>14} {'speed-up':>9}")
    for name in args.separators.split(","):
        separator = separators.get(name)
        torch.set_num_threads(1)
        single = real_time_factor(separator, mixture, rate)
        torch.set_num_threads(threads)
        multi = real_time_factor(separator, mixture, rate)
        print(f"{name:<12} {single:>13.3f} {multi:>14.3f} {single / multi:>8.2f}x")
    first, rerun = cached_rerun_seconds(args.separators.split(",")[0], 2.0)
    print(f"msgpp separate, 2 songs: first run {first:.1f} s, cached rerun {rerun:.2f} s ({first / rerun:.0f}x faster)")


if __name__ == "__main__":
    main()
