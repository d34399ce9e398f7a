"""Enhancer speed and memory on CPU. Prints figures and ratios measured in one run.

Speed: the paper-size generator (build_generator("paper"), 89.4 M parameters, seeded random
weights — speed does not depend on the values) on 16 kHz mono, N CPU threads, strategies timed
in interleaved rounds (best of the rounds), so a machine shared with other work loads them alike:
  reference   the authors' inference strategy: 1-s windows, hop 0.5 s, one window per forward
  plain-10s   10-s segments, one per forward, no overlap (the spec's "RTF 0.04" strategy)
  msgpp       msgpp.Enhancer with its defaults, through the public call (overlap-add included)
and msgpp's output is compared with unchunked fp32 inference (the whole signal in one forward).

Memory: `msgpp enhance` in a subprocess on a long stereo 44.1 kHz file; its peak RSS from the
kernel (getrusage of a small launcher's children). The paper generator's share is measured on a short file, the streaming
pipeline's on the long one (a tiny generator, since the paper one takes hours on 2 cores):
peak memory does not grow with the file's length.

    python benchmarks/bench_enhancer.py                 # both, 60-minute file
    python benchmarks/bench_enhancer.py --skip-memory --rounds 3
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from msgpp.enhancer import Enhancer
from msgpp.hub import save_inference_file
from msgpp.models.generator import build_generator, count_parameters

RATE = 16000
TINY = dict(channels=4, depth=3, kernel_size=8, stride=4, growth=2.0, context=1, resample=True)


# -- speed -------------------------------------------------------------------------------------
def reference_strategy(generator, audio: torch.Tensor) -> torch.Tensor:
    """1-s windows every 0.5 s, each through the model alone, Hamming-weighted overlap-add
    (not divided by the window sum, as published: the gain error is left in)."""
    window, hop = RATE, RATE // 2
    padded = torch.nn.functional.pad(audio, (0, (-(audio.shape[-1] - window) % hop) if audio.shape[-1] > window else window - audio.shape[-1]))
    weights = torch.hamming_window(window, periodic=True)
    out = torch.zeros_like(padded)
    for start in range(0, padded.shape[-1] - window + 1, hop):
        out[..., start:start + window] += generator(padded[None, None, start:start + window])[0, 0] * weights
    return out[: audio.shape[-1]]


def plain_segments(generator, audio: torch.Tensor, seconds: float = 10.0) -> torch.Tensor:
    size = int(seconds * RATE)
    return torch.cat([generator(audio[None, None, start:start + size])[0, 0] for start in range(0, audio.shape[-1], size)])


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    error = np.sum((reference - estimate) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(np.sum(reference ** 2) / error))


def bench_speed(seconds: float, reference_seconds: float, rounds: int, threads: int) -> dict:
    """Real-time factors of the three strategies. The reference is timed on a shorter excerpt:
    its cost per second is the same at any length (one window after another)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    generator = build_generator("paper").eval()
    rng = np.random.default_rng(0)
    # A music-like test signal: decaying tones plus a little noise (values do not change speed).
    t = np.arange(int(seconds * RATE)) / RATE
    signal = (0.4 * np.sin(2 * np.pi * 55 * t) * np.exp(-3 * (t % 0.5)) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    tensor = torch.from_numpy(signal)
    excerpt = tensor[: int(reference_seconds * RATE)]
    enhancer = Enhancer(generator, RATE, device="cpu")
    strategies = {  # name: (run, seconds of audio it enhances)
        "reference": (lambda: reference_strategy(generator, excerpt), excerpt.shape[-1] / RATE),
        "plain-10s": (lambda: plain_segments(generator, tensor), seconds),
        "msgpp": (lambda: enhancer(signal, RATE), seconds),
    }
    best = {name: float("inf") for name in strategies}
    outputs = {}
    with torch.inference_mode():
        for name, (run, _) in strategies.items():  # warm-up: one-off allocations and kernel choices
            outputs[name] = run()
        for _ in range(rounds):
            for name, (run, _) in strategies.items():
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
        whole = generator(tensor[None, None])[0, 0].numpy()
        whole_excerpt = generator(excerpt[None, None])[0, 0].numpy()
    ours = np.asarray(outputs["msgpp"])
    return {
        "parameters": count_parameters(generator), "seconds": seconds, "reference_seconds": reference_seconds,
        "threads": threads, "rounds": rounds,
        "rtf": {name: best[name] / length for name, (_, length) in strategies.items()},
        "snr_vs_unchunked_db": snr_db(whole, ours),
        "max_abs_vs_unchunked": float(np.abs(whole - ours).max()),
        "snr_plain10_vs_unchunked_db": snr_db(whole, outputs["plain-10s"].numpy()),
        "snr_reference_vs_unchunked_db": snr_db(whole_excerpt, outputs["reference"].numpy()),
        "settings": repr(enhancer),
    }


def print_speed(result: dict) -> None:
    rtf = result["rtf"]
    print(f"speed: paper generator ({result['parameters']:,} parameters), {result['seconds']:.0f} s of 16 kHz mono "
          f"(reference: the first {result['reference_seconds']:.0f} s), {result['threads']} threads, "
          f"best of {result['rounds']} interleaved rounds")
    print(f"  load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine: compare ratios, not absolutes)")
    for name, value in rtf.items():
        print(f"  {name:10s} real-time factor {value:.4f}")
    print(f"  msgpp vs reference: {rtf['reference'] / rtf['msgpp']:.2f}x faster")
    print(f"  msgpp vs plain-10s: {rtf['plain-10s'] / rtf['msgpp']:.2f}x faster")
    print(f"  msgpp settings: {result['settings']}")
    print(f"  agreement with unchunked fp32 (whole signal in one forward): msgpp SNR {result['snr_vs_unchunked_db']:.1f} dB "
          f"(max |diff| {result['max_abs_vs_unchunked']:.2e}); plain-10s {result['snr_plain10_vs_unchunked_db']:.1f} dB; "
          f"reference {result['snr_reference_vs_unchunked_db']:.1f} dB")


def explore(seconds: float, threads: int) -> None:
    """Other CPU options, each timed against fp32 eager on the same batch (5-s segments × 4)."""
    import warnings

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    generator = build_generator("paper").eval()
    batch = torch.randn(4, 1, int(5 * RATE), generator=torch.Generator().manual_seed(0)) * 0.1
    quantized = torch.ao.quantization.quantize_dynamic(generator, {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)
    changed = sum(type(m).__module__.startswith("torch.ao.nn.quantized") for m in quantized.modules())
    print(f"explore: int8 dynamic quantisation converts {changed} modules: it covers Linear/LSTM layers only, "
          "and this generator is all Conv1d/ConvTranspose1d")

    def timed(run):
        run()
        start = time.perf_counter()
        out = run()
        return time.perf_counter() - start, out

    with torch.inference_mode():
        base_time, base = timed(lambda: generator(batch))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bf16_time, bf16 = timed(lambda: _bf16(generator, batch))
            from msgpp.graph_export import export_torchscript, load_torchscript

            with tempfile.TemporaryDirectory() as folder:
                path = export_torchscript(generator, Path(folder) / "g.ts", sample_rate=RATE, segment=5.0, batch_size=4)
                graph = torch.jit.optimize_for_inference(torch.jit.freeze(load_torchscript(path)[0]))
                frozen_time, frozen = timed(lambda: graph(batch))
    audio = 4 * 5.0
    print(f"  fp32 eager            RTF {base_time / audio:.4f}")
    print(f"  bf16 autocast         RTF {bf16_time / audio:.4f} ({base_time / bf16_time:.2f}x), "
          f"SNR vs fp32 {snr_db(base.numpy(), bf16.float().numpy()):.1f} dB")
    print(f"  TorchScript frozen    RTF {frozen_time / audio:.4f} ({base_time / frozen_time:.2f}x), "
          f"max |diff| vs fp32 {float((base - frozen).abs().max()):.1e}")


def _bf16(generator, batch):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return generator(batch)


# -- memory ------------------------------------------------------------------------------------
def write_long_file(path: Path, minutes: float, rate: int = 44100, channels: int = 2) -> None:
    """A long PCM_16 file written block by block (never whole in memory)."""
    rng = np.random.default_rng(0)
    frames, block = int(minutes * 60 * rate), rate * 10
    with sf.SoundFile(str(path), "w", rate, channels, "PCM_16") as writer:
        for start in range(0, frames, block):
            count = min(block, frames - start)
            t = (start + np.arange(count)) / rate
            tone = 0.3 * np.sin(2 * np.pi * 110 * t)[:, None] + 0.05 * rng.standard_normal((count, channels))
            writer.write(tone.astype(np.float32))


# Runs the command from a small launcher process: a child's peak-RSS record starts from its
# parent's at fork time, so measuring straight from this (large) process would report our size.
_LAUNCHER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """(peak resident memory in MB, wall seconds) of a subprocess, from the kernel's accounting."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
    return int(result.stdout.split()[-1]) / 1024, time.perf_counter() - start


def bench_memory(minutes: float, short_minutes: float, threads: int, folder: Path) -> list[tuple[str, float, float, float]]:
    torch.manual_seed(0)
    rows = []
    for preset, config, length in [("paper", "paper", short_minutes), ("tiny", TINY, short_minutes), ("tiny", TINY, minutes)]:
        generator = build_generator(config)
        weights = save_inference_file(folder / preset, f"msg-{preset}", source="bench", sample_rate=RATE,
                                      generator_config=generator.config, state_dict=generator.state_dict())
        audio = folder / f"long-{length:g}min.wav"
        if not audio.exists():
            write_long_file(audio, length)
        out = folder / f"out-{preset}-{length:g}.wav"
        rss, wall = peak_rss_mb([sys.executable, "-m", "msgpp.cli", "enhance", str(audio), "--out", str(out),
                                 "--model", str(weights), "--threads", str(threads), "--force", "-q", "--clip", "clip"])
        rows.append((preset, length, rss, wall))
        out.unlink(missing_ok=True)
    return rows


def print_memory(rows) -> None:
    print("memory: peak RSS of `msgpp enhance` (subprocess, default segment/batch, stereo 44.1 kHz PCM_16 in and out)")
    for preset, minutes, rss, wall in rows:
        print(f"  {preset:5s} generator, {minutes:5.1f}-minute file: peak RSS {rss:7.0f} MB  ({wall:.0f} s wall)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length for the speed runs")
    parser.add_argument("--reference-seconds", type=float, default=10.0, help="excerpt the reference strategy runs on")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds (best is kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=60.0, help="long file for the memory run")
    parser.add_argument("--short-minutes", type=float, default=1.0, help="file for the paper generator's memory run")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--explore", action="store_true", help="also time bf16, int8 and a frozen TorchScript graph")
    args = parser.parse_args()
    if not args.skip_speed:
        print_speed(bench_speed(args.seconds, args.reference_seconds, args.rounds, args.threads))
    if args.explore:
        explore(args.seconds, args.threads)
    if not args.skip_memory:
        with tempfile.TemporaryDirectory(prefix="msgpp-bench-") as folder:
            print_memory(bench_memory(args.minutes, args.short_minutes, args.threads, Path(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
