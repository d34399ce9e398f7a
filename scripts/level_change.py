"""Does an enhancer keep the level of what it enhances? RMS of enhanced / raw estimate, in dB.

The paper's measures (and msgpp's model selection) compare peak-normalised signals, so they
cannot see an enhancer that makes a stem 20 dB quieter; this does. For every source and
separator: the mean over the first `--songs` cached test estimates (full rate, stereo, through
msgpp.Enhancer as a user would run it).

    python scripts/level_change.py [--cache cache/estimates] [--songs 5] [bass=path/to/msg-bass.pt ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SOURCES = ("bass", "drums", "vocals", "other")


def rms_db(audio: np.ndarray) -> float:
    return 10.0 * np.log10(float(np.mean(np.square(audio, dtype=np.float64))) + 1e-12)


def main(argv: list[str] | None = None) -> int:
    import msgpp
    from msgpp.audio import load_audio

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("enhancers", nargs="*", help="SOURCE=NAME_OR_PATH (default: the shipped enhancers)")
    parser.add_argument("--cache", type=Path, default=Path("cache/estimates"))
    parser.add_argument("--songs", type=int, default=5)
    args = parser.parse_args(argv)
    chosen = dict(item.split("=", 1) for item in args.enhancers)
    separators = sorted(path.name for path in args.cache.iterdir() if path.is_dir())
    print("| source | " + " | ".join(separators) + " |\n|---|" + "---|" * len(separators))
    for source in SOURCES:
        enhancer = msgpp.Enhancer.from_pretrained(chosen.get(source, source), backend="torch")
        cells = []
        for separator in separators:
            files = sorted(args.cache.glob(f"{separator}/*/test/*/{source}.wav"))[: args.songs]
            changes = []
            for file in files:
                audio, rate = load_audio(file)
                changes.append(rms_db(enhancer(audio, rate)) - rms_db(audio))
            cells.append(f"{np.mean(changes):+.1f} dB" if changes else "–")
        print(f"| {source} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
