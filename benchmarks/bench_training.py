"""Training throughput of the small preset on the CPU: one-second clips per second, side by side.

One training batch as `MSGModule.training_step` does it (G forward; D step on the detached fake;
G step with LSGAN + feature matching + multi-resolution STFT, balanced, AutoClip), without
Lightning's loop, for two configurations built in the same process and timed in interleaved
rounds (best of `--rounds`), so machine noise hits both alike:

- "before": the STFT discriminators as msgpp shipped them before issue 12 (layout "frequency":
  strided along frequency, Hann window, convolved on the (frames, frequency) tensor);
- "now": the paper's layout (strided along time, rectangular window), computed on the
  transposed tensor with transposed kernels (msgpp.models.discriminators.STFTDiscriminator).

Both have the same parameters and the same FLOPs. Also printed: FLOPs per clip (torch's counter,
forward and backward of G and D) and the fraction of the machine's fp32 matrix-multiply speed
that the step reaches.

    python benchmarks/bench_training.py [--threads 1,2] [--rounds 5] [--batch 8]

`--threads 1,2` prints one table per thread count (measured one after the other, each with its own
interleaved rounds).
"""

from __future__ import annotations

import argparse
import time

import torch

from msgpp.losses import discriminator_lsgan_loss
from msgpp.training.module import MSGModule

RATE = 16000


def build(layout: str, seed: int = 0) -> tuple[MSGModule, torch.optim.Optimizer, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    from msgpp.models.discriminators import DISCRIMINATOR_PRESETS

    discriminators = dict(DISCRIMINATOR_PRESETS["small"], stft_layout=layout)
    module = MSGModule(source="bass", generator="small", discriminators=discriminators, balance_steps=5)
    optimizer_g = torch.optim.Adam(module.generator.parameters(), lr=5e-4, betas=(0.5, 0.9))
    optimizer_d = torch.optim.Adam(module.discriminators.parameters(), lr=5e-4, betas=(0.5, 0.9))
    return module, optimizer_g, optimizer_d


def train_batch(module: MSGModule, optimizer_g, optimizer_d, estimate: torch.Tensor, target: torch.Tensor) -> None:
    """One batch, the same sequence of work as MSGModule.training_step."""
    generator_parameters = list(module.generator.parameters())
    discriminator_parameters = list(module.discriminators.parameters())
    enhanced = module.generator(estimate)

    for parameter in generator_parameters:  # what Lightning's toggle_optimizer does
        parameter.requires_grad_(False)
    d_loss = discriminator_lsgan_loss(module.discriminators(target), module.discriminators(enhanced.detach()))
    optimizer_d.zero_grad(set_to_none=True)
    d_loss.backward()
    optimizer_d.step()
    for parameter in generator_parameters:
        parameter.requires_grad_(True)

    for parameter in discriminator_parameters:
        parameter.requires_grad_(False)
    terms = module.generator_terms(enhanced, target)
    module.update_balance(terms)
    g_loss = module.balancer(terms)
    optimizer_g.zero_grad(set_to_none=True)
    g_loss.backward()
    module.autoclip(generator_parameters)
    optimizer_g.step()
    for parameter in discriminator_parameters:
        parameter.requires_grad_(True)


def step_flops(module: MSGModule, estimate: torch.Tensor, target: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    module_copy, optimizer_g, optimizer_d = build(module.discriminators.config["stft_layout"])
    with FlopCounterMode(display=False) as counter:
        train_batch(module_copy, optimizer_g, optimizer_d, estimate, target)
    return float(counter.get_total_flops())


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads",
        default="1",
        help="torch intra-op threads, or a comma-separated list of counts (default: %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per configuration (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=2, help="batches per round (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        thread_counts = [int(count) for count in args.threads.split(",")]
    except ValueError:
        parser.error(f"--threads: a number or a comma-separated list of numbers, got {args.threads!r}")
    if not thread_counts or min(thread_counts) < 1:
        parser.error(f"--threads: thread counts must be at least 1, got {args.threads!r}")

    generator = torch.Generator().manual_seed(0)
    estimate = torch.randn(args.batch, 1, RATE, generator=generator) * 0.1
    target = torch.randn(args.batch, 1, RATE, generator=generator) * 0.1
    configurations = {"before": build("frequency"), "now": build("time")}
    flops = {name: step_flops(module, estimate, target) / 1e9 for name, (module, _, _) in configurations.items()}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        best = dict.fromkeys(configurations, float("inf"))
        for module, optimizer_g, optimizer_d in configurations.values():  # warm-up
            train_batch(module, optimizer_g, optimizer_d, estimate, target)
        for _ in range(args.rounds):
            for name, (module, optimizer_g, optimizer_d) in configurations.items():
                start = time.perf_counter()
                for _ in range(args.batches):
                    train_batch(module, optimizer_g, optimizer_d, estimate, target)
                best[name] = min(best[name], (time.perf_counter() - start) / args.batches)

        bound = matmul_gflops()
        print(
            f"small preset, batch {args.batch} x 1 s at 16 kHz, {threads} thread(s), best of {args.rounds} "
            f"interleaved rounds of {args.batches} batches; fp32 2048^3 matmul here: {bound:.0f} GFLOP/s"
        )
        print("| configuration | s per batch | clips/s | GFLOP per batch | GFLOP/s | of the matmul bound |")
        print("|---|---|---|---|---|---|")
        for name, seconds in best.items():
            print(
                f"| {name} | {seconds:.3f} | {args.batch / seconds:.2f} | {flops[name]:.1f} | "
                f"{flops[name] / seconds:.1f} | {flops[name] / seconds / bound:.0%} |"
            )
        print(f"now / before: {best['before'] / best['now']:.2f}x the clips per second\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
