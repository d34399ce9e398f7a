"""`msgpp separate SONG --enhance`: peak memory against the song's length, and speed per separator.

Peak RSS of the whole command (a fresh process each) on a short and a long stereo 44.1 kHz song
(goal: the long song's peak within 1.2x the short one's: memory flat in the length), and the
real-time factor (wall seconds per second of song) of separate + enhance per separator.

    python benchmarks/bench_stems.py                                   # 1 and 20 minutes (slow on a CPU)
    python benchmarks/bench_stems.py --short 30 --long 180 --separators hdemucs_v3
    python benchmarks/bench_stems.py --metrics data/musdb-embedded --songs 8   # the effect of --consistent

--metrics separates the first test songs of a MUSDB-layout folder with the first separator, enhanced,
without and with --consistent, and prints the mean SI-SDR and onset F1 per source against the
ground truth (msgpp.evaluation.metrics: 16 kHz mono, peak-normalised, as `msgpp evaluate`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100
# Runs the command in a child and reports its peak RSS (ru_maxrss of the children: only that one).
_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(json.dumps({"code": code, "seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def write_song(path: Path, seconds: float) -> Path:
    """Tones, a melody and noise bursts, written 20 s at a time (the writer never holds the song)."""
    rng = np.random.default_rng(0)
    block = 20 * RATE
    with sf.SoundFile(str(path), "w", RATE, 2, "PCM_16") as writer:
        for start in range(0, int(seconds * RATE), block):
            t = (start + np.arange(min(block, int(seconds * RATE) - start))) / RATE
            bass = 0.25 * np.sin(2 * np.pi * 55 * t)
            melody = 0.12 * np.sin(2 * np.pi * 440 * t * (1 + 0.02 * np.sin(3 * t)))
            drums = 0.1 * np.clip(rng.standard_normal(t.size), -3, 3) * ((t % 0.5) < 0.05)
            writer.write(np.stack([bass + melody + drums, bass + 0.5 * melody + drums]).T.astype(np.float32))
    return path


def run(song: Path, out: Path, separator: str, threads: int) -> dict:
    msgpp = Path(sys.executable).with_name("msgpp")
    command = [
        str(msgpp),
        "separate",
        str(song),
        "--separator",
        separator,
        "--enhance",
        "--out",
        str(out),
        "--force",
        "-q",
        "--threads",
        str(threads),
    ]
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
    )
    if result.returncode:
        raise RuntimeError(result.stderr)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    if figures["code"]:
        raise RuntimeError(f"msgpp separate exited {figures['code']}")
    return figures


def consistency_metrics(root: Path, separator: str, songs: int) -> None:
    from msgpp.audio import load_audio
    from msgpp.evaluation.metrics import onset_f1, prepare, si_sdr
    from msgpp.stems import StemSplitter

    tracks = sorted(path for path in (root / "test").iterdir() if (path / "mixture.wav").is_file())[:songs]
    splitters = {
        "separator": StemSplitter(separator, enhance=False),
        "enhanced": StemSplitter(separator, enhance=True),
        "enhanced --consistent": StemSplitter(separator, enhance=True, consistent=True),
    }
    sources = splitters["enhanced"].stems
    scores = {(kind, source): ([], []) for kind in splitters for source in sources}
    for track in tracks:
        mixture, rate = load_audio(track / "mixture.wav")
        truth = {source: prepare(load_audio(track / f"{source}.wav")[0], rate) for source in sources}
        for kind, splitter in splitters.items():
            stems = splitter.separate_array(mixture, rate)
            for source in sources:
                estimate = prepare(stems[source], rate)
                scores[kind, source][0].append(si_sdr(estimate, truth[source]))
                scores[kind, source][1].append(onset_f1(estimate, truth[source]).f1)
    print(f"{separator} on {len(tracks)} test songs of {root}: mean SI-SDR dB / onset F1")
    print(f"{'':<22}" + "".join(f"{source:>16}" for source in sources))
    for kind in splitters:
        row = "".join(f"{np.nanmean(scores[kind, s][0]):>9.2f} / {np.nanmean(scores[kind, s][1]):.2f}" for s in sources)
        print(f"{kind:<22}{row}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=float, default=60.0, help="seconds of the short song (default 60)")
    parser.add_argument("--long", type=float, default=1200.0, help="seconds of the long song (default 1200)")
    parser.add_argument(
        "--separators",
        default="demucs_v2,hdemucs_v3,openunmix",
        help="separators timed on the short song (the memory runs use the first)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--metrics", type=Path, metavar="ROOT", help="measure --consistent on this MUSDB-layout folder instead"
    )
    parser.add_argument("--songs", type=int, default=8, help="test songs for --metrics (default 8)")
    args = parser.parse_args()
    names = [name for name in args.separators.split(",") if name]
    if args.metrics:
        import torch

        torch.set_num_threads(args.threads)
        consistency_metrics(args.metrics, names[0], args.songs)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        short = write_song(folder / "short.wav", args.short)
        long = write_song(folder / "long.wav", args.long)
        first = run(short, folder / "out", names[0], args.threads)  # also exports/caches the ONNX graphs
        short_run = run(short, folder / "out", names[0], args.threads)
        long_run = run(long, folder / "out", names[0], args.threads)
        ratio = long_run["peak_mb"] / short_run["peak_mb"]
        print(
            f"peak RSS, {names[0]} + enhance, {args.threads} threads: "
            f"{args.short:.0f} s song {short_run['peak_mb']:.0f} MB, "
            f"{args.long:.0f} s song {long_run['peak_mb']:.0f} MB: ratio {ratio:.2f} (goal <= 1.2)"
            f"  [first run, graphs exported: {first['peak_mb']:.0f} MB]"
        )
        print(f"{'separator':<12} {'RTF separate+enhance':>21}  ({args.short:.0f} s song, {args.threads} threads)")
        for name in names:
            figures = short_run if name == names[0] else run(short, folder / "out", name, args.threads)
            print(f"{name:<12} {figures['seconds'] / args.short:>21.3f}")
        print(f"{names[0]:<12} {long_run['seconds'] / args.long:>21.3f}  ({args.long:.0f} s song)")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
