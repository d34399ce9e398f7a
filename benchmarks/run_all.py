"""Run every benchmark script in benchmarks/ (each *.py but this one and _private ones), one after
another, each in its own process (`make bench`).

Each script prints its own figures and ratios. Exit status: the number of scripts that failed.

    python benchmarks/run_all.py                 # all of them
    python benchmarks/run_all.py enhancer        # only scripts whose name contains "enhancer"
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(
        path for path in HERE.glob("*.py") if path.name != Path(__file__).name and not path.name.startswith("_")
    )
    if argv:
        scripts = [script for script in scripts if any(name in script.stem for name in argv)]
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(
            f"== {script.name}: {'ok' if code == 0 else f'FAILED (exit {code})'} "
            f"in {time.perf_counter() - start:.0f} s\n",
            flush=True,
        )
        failed += code != 0
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
