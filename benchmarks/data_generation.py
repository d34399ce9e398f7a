"""How fast the embedded benchmark renders: per stage, per song, and as a real-time factor.

    python benchmarks/data_generation.py [--songs 4] [--seconds 20] [--workers 1]

Prints figures only (no pass/fail): the CPU cost of planning, rendering and mixing one song, the
real-time factor (seconds of 4-stem audio made per second of work), the wall time of the tiny
preset on one worker (it runs once per test session), and the projected time of the default
preset on this machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="workers for the tiny-preset timing")
    args = parser.parse_args()

    from msgpp.data.benchmark import BENCHMARK_PRESETS, generate_benchmark
    from msgpp.data.plan import make_song_plan
    from msgpp.data.render import Renderer, default_soundfont, mix_to_int16

    started = time.process_time()
    renderer = Renderer(default_soundfont())
    load = time.process_time() - started
    plan_t = render_t = mix_t = 0.0
    for index in range(args.songs):
        t0 = time.process_time()
        plan = make_song_plan(0, "train", index, args.seconds)
        t1 = time.process_time()
        stems = renderer.render_song(plan)
        t2 = time.process_time()
        mix_to_int16(stems, plan, renderer.sample_rate)
        t3 = time.process_time()
        plan_t, render_t, mix_t = plan_t + t1 - t0, render_t + t2 - t1, mix_t + t3 - t2
    renderer.close()
    per_song = (plan_t + render_t + mix_t) / args.songs
    print(f"soundfont load (CPU)            {load:7.3f} s")
    print(f"plan   per {args.seconds:.0f}-s song (CPU)     {plan_t / args.songs:7.3f} s")
    print(f"render per {args.seconds:.0f}-s song (CPU)     {render_t / args.songs:7.3f} s  (4 stems)")
    print(f"mix    per {args.seconds:.0f}-s song (CPU)     {mix_t / args.songs:7.3f} s")
    print(f"real-time factor (1 core)       {args.seconds / per_song:7.1f} x  (song seconds per CPU second)")

    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        generate_benchmark(Path(folder) / "tiny", preset="tiny", seed=0, workers=args.workers, progress=False)
        tiny = time.perf_counter() - t0
    print(f"tiny preset, {args.workers} worker(s) (wall)   {tiny:7.2f} s  (target: well under 20 s)")
    default = BENCHMARK_PRESETS["default"]
    songs = default.train + default.test
    projected = songs * per_song * default.seconds / args.seconds
    print(
        f"default preset projected (CPU)  {projected:7.1f} s  = {projected / 2:.0f} s wall on 2 idle cores "
        f"({songs} songs of {default.seconds:.0f} s, + file writing)"
    )


if __name__ == "__main__":
    main()
