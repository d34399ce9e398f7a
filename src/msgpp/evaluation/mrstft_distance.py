"""Does a trained enhancer bring separator estimates closer to the ground truth?

For every separator (training ones and held-out ones alike) and every song of a subset: the
multi-resolution STFT distance (the training reconstruction loss, msgpp.losses) between the
ground truth and (a) the raw cached estimate, (b) the estimate enhanced by msgpp.Enhancer —
both at the model's rate, mono. Lower is closer. This is the figure the model card reports.

    python -m msgpp.evaluation.mrstft_distance src/msgpp/pretrained/msg-bass-*.pt \
        --root data/musdb-embedded --cache cache/estimates --separators demucs_v2,openunmix,hdemucs_v3
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np
import torch


def measure_mrstft(
    weights: str, root: str, cache: str, separators: Sequence[str], subset: str = "test", progress: bool = True
) -> list[dict]:
    """One row per separator: songs, mean raw distance, mean enhanced distance, change (%)."""
    from tqdm import tqdm

    from msgpp.enhance.enhancer import Enhancer
    from msgpp.enhance.pretrained import resolve_pretrained
    from msgpp.enhance.weights_file import load_inference_file
    from msgpp.losses import MultiResolutionSTFTLoss
    from msgpp.training.datamodule import load_source_set

    path = resolve_pretrained(weights)
    package = load_inference_file(path)
    source, rate = package["source"], int(package["sample_rate"])
    enhancer = Enhancer.from_pretrained(path, device="cpu")
    distance = MultiResolutionSTFTLoss()
    rows = []
    for separator in separators:
        data = load_source_set(root, cache, subset, source, [separator], rate, progress=False)
        raw_distances, enhanced_distances = [], []
        for number in tqdm(range(len(data.tracks)), desc=f"{source} / {separator}", disable=not progress):
            target = torch.from_numpy(data.targets[number])[None, None]
            estimate = data.estimates[separator][number]
            enhanced = enhancer(estimate, rate)
            with torch.no_grad():
                raw_distances.append(float(distance(torch.from_numpy(estimate)[None, None], target)))
                enhanced_distances.append(float(distance(torch.from_numpy(enhanced)[None, None], target)))
        raw, enhanced = float(np.mean(raw_distances)), float(np.mean(enhanced_distances))
        improved = int(np.sum(np.array(enhanced_distances) < np.array(raw_distances)))
        rows.append(
            {
                "source": source,
                "separator": separator,
                "songs": len(data.tracks),
                "mrstft_raw": raw,
                "mrstft_enhanced": enhanced,
                "change_percent": 100.0 * (enhanced - raw) / raw,
                "songs_improved": improved,
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| source | separator | songs | MR-STFT raw | MR-STFT enhanced | change | songs improved |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['source']} | {row['separator']} | {row['songs']} | {row['mrstft_raw']:.4f} | "
            f"{row['mrstft_enhanced']:.4f} | {row['change_percent']:+.1f} % | "
            f"{row['songs_improved']}/{row['songs']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m msgpp.evaluation.mrstft_distance", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("weights", help="an inference file or a shipped name")
    parser.add_argument("--root", default="data/musdb-embedded")
    parser.add_argument("--cache", default="cache/estimates")
    parser.add_argument("--separators", default="demucs_v2,openunmix,hdemucs_v3")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    from msgpp.errors import MsgppError

    try:
        rows = measure_mrstft(args.weights, args.root, args.cache, args.separators.split(","), args.subset)
    except MsgppError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
