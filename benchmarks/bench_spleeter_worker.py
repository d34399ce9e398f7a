"""Spleeter: msgpp's long-lived worker against spleeter's own per-call API, on the shipped model.

Prints the worker's start-up time, its time per call for `--seconds` of stereo 44.1 kHz audio,
and the time per call of spleeter's `Separator(params, multiprocess=False).separate(waveform)`
run in the same environment (which rebuilds its estimator on every call), and their ratio.

    .venv/bin/python benchmarks/bench_spleeter_worker.py --seconds 5 --calls 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import numpy as np

# Run in Spleeter's environment: the same model through spleeter's public Separator API.
UPSTREAM_API = r"""
import json, sys, time
import numpy as np
from spleeter.separator import Separator
from spleeter.utils.configuration import load_configuration
params = load_configuration(sys.argv[1]); params["model_dir"] = sys.argv[2]
path = sys.argv[3] + "/bench-params.json"
json.dump(params, open(path, "w"))
separator = Separator(path, multiprocess=False)
waveform = np.random.default_rng(0).normal(0, 0.1, (int(float(sys.argv[4]) * 44100), 2)).astype(np.float32)
times = []
for _ in range(int(sys.argv[5])):
    start = time.perf_counter(); separator.separate(waveform); times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import tempfile

    from msgpp.separators.spleeter.client import SpleeterWorker
    from msgpp.separators.spleeter.environment import assets_dir, environment_python
    from msgpp.separators.spleeter.separator import resolve_model_folder

    folder = assets_dir() / "model"
    config, _ = resolve_model_folder(folder)
    start = time.perf_counter()
    worker = SpleeterWorker(config, folder.resolve(), threads=args.threads)
    startup = time.perf_counter() - start
    waveform = np.random.default_rng(0).normal(0, 0.1, (int(args.seconds * 44100), 2)).astype(np.float32)
    worker_times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        worker.separate(waveform)
        worker_times.append(time.perf_counter() - start)
    worker.close()

    with tempfile.TemporaryDirectory() as temporary:
        result = subprocess.run(
            [
                str(environment_python()),
                "-c",
                UPSTREAM_API,
                config,
                str(folder.resolve()),
                temporary,
                str(args.seconds),
                str(args.calls),
            ],
            capture_output=True,
            text=True,
            env={"TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"},
        )
        if result.returncode != 0:
            raise SystemExit(f"spleeter's own API failed: {result.stderr.strip().splitlines()[-1:]}")
    upstream_times = json.loads(result.stdout.strip().splitlines()[-1])

    worker_call, upstream_call = float(np.median(worker_times)), float(np.median(upstream_times))
    print(f"audio per call: {args.seconds:g} s stereo 44.1 kHz, {args.calls} calls, median times")
    print(f"worker start-up (TensorFlow import, graph, restore): {startup:.2f} s")
    print(f"worker, per call:                      {worker_call:.3f} s  ({args.seconds / worker_call:.1f}x real time)")
    print(f"spleeter Separator.separate, per call: {upstream_call:.3f} s")
    print(f"ratio (spleeter API / worker):         {upstream_call / worker_call:.1f}x")


if __name__ == "__main__":
    main()
