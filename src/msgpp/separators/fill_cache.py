"""Filling the estimate cache: every song of a dataset, separated by each chosen separator.

The dataset stage of the pipeline (`msgpp separate --root`, and the demo): for each separator,
check its weights and fingerprint them (the fingerprint keys the cache), skip it when every track
is cached already, else load it once and separate the pending tracks (predict_loop.py). Checking
comes first for all separators, so a missing weights file stops the run before any work. A fully
cached separator needs no model and no Lightning.
"""

from __future__ import annotations

import sys
import time

from msgpp.constants import SUBSETS


def fill_cache(
    root,
    names: list[str],
    cache_root,
    *,
    subsets: tuple[str, ...] = SUBSETS,
    weights: dict[str, str] | None = None,
    force: bool = False,
    subtype: str = "PCM_16",
    accelerator: str = "auto",
    devices: int | str = "auto",
    workers: int = 0,
) -> list[dict]:
    """Separate every pending track of `subsets` under `root` with each separator of `names`
    (`weights`: name → location, default the shipped ones) into the cache at `cache_root`.
    Reports one line per separator on stderr; returns their summaries."""
    from msgpp.files import output_folder
    from msgpp.separators import cache
    from msgpp.separators.registry import separator_class
    from msgpp.separators.tracks import list_tracks

    weights = weights or {}
    tracks = list_tracks(root, tuple(subsets))
    cache_root = output_folder(cache_root, "--cache")
    infos = {name: separator_class(name).weights_info(weights.get(name)) for name in names}
    summaries = []
    for name in names:
        started = time.monotonic()
        klass, info = separator_class(name), infos[name]
        if not force and not cache.pending_tracks(cache_root, name, info.id, tracks):
            print(f"{name} (weights {info.id}): all {len(tracks)} tracks already cached", file=sys.stderr)
            summaries.append(
                {
                    "separator": name,
                    "weights_id": info.id,
                    "tracks": len(tracks),
                    "separated": 0,
                    "skipped": len(tracks),
                }
            )
            continue
        from msgpp.separators.predict_loop import separate_tracks

        separator = klass.load(weights=weights.get(name))  # loaded once for all tracks
        summary = separate_tracks(
            separator,
            tracks,
            cache_root,
            force=force,
            subtype=subtype,
            accelerator=accelerator,
            devices=devices,
            workers=workers,
        )
        if summary.get("rank", 0) == 0:  # under DDP every process returns here; rank 0 reports
            print(
                f"{name} (weights {summary['weights_id']}): {summary['separated']} separated, "
                f"{summary['skipped']} already cached, {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
        summaries.append(summary)
    return summaries
