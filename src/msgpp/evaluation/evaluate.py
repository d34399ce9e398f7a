"""`evaluate`: raw vs MSG-enhanced estimates vs ground truth, for every test song, separator, source.

Inputs: the ground truth (a MUSDB18-HQ-layout folder), the estimate cache (one folder per
separator, see msgpp.separators.cache) and one enhancer per source. Outputs, all under `out`:

    results.csv                       the tidy table (msgpp.evaluation.results)
    frames/...                        per-frame rolloff errors, one .npy per row
    enhanced/<enhancer id>/<separator>/<weights id>/<subset>/<track>/<source>.wav
                                      the enhanced estimates (float wav), reused by reruns
    run.json                          what was evaluated (separators, enhancers, tracks)

Everything is cached: a rerun computes only rows whose key changed (a new track, new separator
weights, a new enhancer) and reuses enhanced audio already on disk.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from msgpp.constants import SOURCES
from msgpp.errors import MsgppError
from msgpp.evaluation import metrics
from msgpp.evaluation.families import family
from msgpp.evaluation.results import VARIANTS, ResultTable, metrics_id, row_key, save_frames
from msgpp.files import atomic_write_text, output_folder, sha256_file

log = logging.getLogger(__name__)

Enhance = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class EnhancerSpec:
    """One source's enhancer: a stable id (weights hash), a display name, and a lazy loader."""

    source: str
    id: str
    name: str
    load: Callable[[], Enhance]
    training_separators: list[str] = field(default_factory=list)
    _loaded: Enhance | None = field(default=None, repr=False)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if self._loaded is None:
            self._loaded = self.load()
        enhanced = self._loaded(audio, sample_rate)
        if hasattr(enhanced, "detach"):
            enhanced = enhanced.detach().cpu().numpy()
        return np.asarray(enhanced, dtype=np.float32)


def parse_enhancer_option(text: str | None) -> dict[str, str] | None:
    """ "bass=bass,drums=path/to/msg-drums.pt" → {"bass": "bass", "drums": "path/..."}.

    None keeps the default (the shipped enhancers); "none" evaluates raw estimates only.
    """
    if text is None:
        return None
    if text.strip().lower() in ("", "none"):
        return {}
    mapping = {}
    for item in text.split(","):
        source, sep, target = item.strip().partition("=")
        if not sep:  # "bass" alone: the shipped enhancer of that name
            source, target = source, source
        if source not in SOURCES:
            raise MsgppError(f"--enhancers: unknown source {source!r} in {item!r} (sources: {', '.join(SOURCES)})")
        mapping[source] = target.strip()
    return mapping


def resolve_enhancers(mapping: dict[str, str] | None) -> dict[str, EnhancerSpec]:
    """{source: EnhancerSpec} from names or paths; None means every shipped enhancer."""
    from msgpp.enhance.pretrained import pretrained_names, resolve_pretrained
    from msgpp.enhance.weights_file import load_inference_file

    if mapping is None:
        mapping = {name: name for name in pretrained_names() if name in SOURCES}
    specs = {}
    for source, name_or_path in mapping.items():
        path = resolve_pretrained(name_or_path)
        package = load_inference_file(path)
        trained_for = package.get("source")
        if trained_for in SOURCES and trained_for != source:
            raise MsgppError(
                f"--enhancers {source}={name_or_path}: that enhancer was trained for {trained_for}, "
                f"not {source} (write {trained_for}={name_or_path})"
            )
        training = package.get("training") or {}
        separators = training.get("separators") or []

        def load(path=path):
            import msgpp

            return msgpp.Enhancer.from_pretrained(str(path))

        specs[source] = EnhancerSpec(
            source=source,
            id=sha256_file(path)[:12],
            name=str(name_or_path),
            load=load,
            training_separators=[str(s) for s in separators] if isinstance(separators, (list, tuple)) else [],
        )
    return specs


def ground_truth_tracks(root: str | os.PathLike | None, subset: str = "test") -> dict:
    """{track name: msgpp.data.musdb.Track} of a MUSDB folder's subset: the embedded benchmark,
    MUSDB18-HQ (wav) or MUSDB18 (.stem.mp4); None reads $MUSDB_PATH."""
    from msgpp.data.musdb import open_tracks

    return {track.name: track for track in open_tracks(root, subset)}


def load_truth(root: str | os.PathLike | None, subset: str, track: str, source: str) -> tuple[np.ndarray, int]:
    """One ground-truth source of one track: (audio, sample rate)."""
    from msgpp.data.musdb import open_tracks

    (found,) = open_tracks(root, subset, names=[track])
    return found.load_source(source), found.sample_rate


def cached_separators(cache_root: str | os.PathLike) -> list[str]:
    """Separators with at least one weights folder in the cache."""
    root = Path(cache_root)
    if not root.is_dir():
        raise MsgppError(f"--cache {cache_root}: no such folder (run `msgpp separate` first)")
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and any(q.is_dir() for q in p.iterdir())
    )


def enhanced_path(out: Path, spec: EnhancerSpec, separator: str, weights_id: str, subset: str, track: str) -> Path:
    return Path(out) / "enhanced" / spec.id / separator / weights_id / subset / track / f"{spec.source}.wav"


MONO16K_SUFFIX = "-m16k"


def enhance_cached(
    path: Path, spec: EnhancerSpec, estimate: np.ndarray, sample_rate: int, mono16k: bool = False
) -> tuple[np.ndarray, int]:
    """(enhanced estimate, its rate), from disk when a previous run made it.

    `mono16k` enhances the 16 kHz mono downmix (the paper's protocol, and several times cheaper
    than full-rate stereo); the result is then 16 kHz mono.
    """
    from msgpp.audio import load_audio, save_audio

    if mono16k:
        estimate, sample_rate = metrics.prepare(estimate, sample_rate, normalize=False)[None], metrics.MSG_SAMPLE_RATE
    if path.is_file():
        audio, rate = load_audio(path)
        if rate == sample_rate:
            return audio, rate
    enhanced = spec(estimate, sample_rate)
    if enhanced.ndim == 1:
        enhanced = enhanced[None]
    save_audio(path, enhanced, sample_rate, subtype="FLOAT")  # float: nothing is clipped
    return enhanced, sample_rate


def match_format(audio: np.ndarray, rate: int, like_rate: int, like_channels: int) -> np.ndarray:
    """`audio` at another signal's rate and channel count, so a pair is heard on equal terms."""
    from msgpp.audio import convert_channels, resample

    return convert_channels(resample(audio, rate, like_rate), like_channels)


@dataclass
class EvaluationRun:
    table: ResultTable
    out: Path
    separators: list[str]
    tracks: list[str]
    enhancers: dict[str, EnhancerSpec]
    computed_rows: int
    reused_rows: int


def evaluate(
    root: str | os.PathLike,
    cache_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    enhancers: dict[str, EnhancerSpec] | None = None,
    separators: list[str] | None = None,
    sources: list[str] | None = None,
    subset: str = "test",
    museval: bool = False,
    enhance_mono16k: bool = False,
    progress: bool = True,
) -> EvaluationRun:
    """Compute (or reuse) every row and write results.csv; returns the run's summary.

    `enhancers` maps a source to its enhancer (see `resolve_enhancers`); sources without one are
    evaluated raw only. `museval` adds BSS-eval SDR/SIR/ISR/SAR (slow). `enhance_mono16k`
    enhances the 16 kHz mono downmix instead of the full-rate estimate (rows and audio are kept
    apart from full-rate ones: the enhancer id gets a "-m16k" suffix).
    """
    from tqdm import tqdm

    from msgpp.separators.cache import find_estimates, weights_ids

    out = output_folder(out, "--out")
    enhancers = enhancers or {}
    if enhance_mono16k:
        enhancers = {s: replace(e, id=e.id + MONO16K_SUFFIX) for s, e in enhancers.items()}
    truth = ground_truth_tracks(root, subset)
    available = cached_separators(cache_root)
    if separators:
        unknown = [s for s in separators if s not in available]
        if unknown:
            raise MsgppError(
                f"--separators: no cached estimates for {', '.join(unknown)} under {cache_root} "
                f"(have: {', '.join(available) or 'none'})"
            )
        available = list(separators)
    if not available:
        raise MsgppError(f"--cache {cache_root}: holds no separator estimates (run `msgpp separate` first)")

    table = ResultTable(out / "results.csv")
    frames_dir = out / "frames"
    mid = metrics_id()
    work = []  # (separator, weights id, track, {source: estimate path})
    for separator in available:
        estimates = find_estimates(cache_root, separator, subset)
        wid = weights_ids(cache_root, separator)[0]
        missing = sorted(set(truth) - set(estimates))
        if missing:
            log.warning(
                "%s: no estimates for %d test track(s) (%s); they are skipped",
                separator,
                len(missing),
                ", ".join(missing[:3]),
            )
        for track in sorted(set(truth) & set(estimates)):
            work.append((separator, wid, track, estimates[track]))
    if not work:
        raise MsgppError(f"no track of {root}/{subset} has estimates in {cache_root}")

    work.sort(key=lambda item: (item[2], item[0]))  # track-major: each ground truth is read once
    computed = reused = 0
    truth_cache: dict[str, dict] = {}
    bar = tqdm(work, desc="evaluate", unit="track", disable=not progress)
    for separator, wid, track, estimate_paths in bar:
        bar.set_postfix_str(f"{separator}/{track}"[:40])
        if track not in truth_cache:
            truth_cache.clear()  # keep one track's ground truth in memory
            truth_cache[track] = {}
        wanted = [s for s in (sources or SOURCES) if s in estimate_paths]
        rows_needed = []
        for source in wanted:
            for variant in VARIANTS:
                spec = enhancers.get(source) if variant == "msg" else None
                if variant == "msg" and spec is None:
                    continue
                row = {
                    "track": track,
                    "separator": separator,
                    "weights_id": wid,
                    "source": source,
                    "variant": variant,
                    "enhancer_id": spec.id if spec else "",
                    "metrics_id": mid,
                    "family": family(separator),
                }
                cached = table.get(row_key(row))
                if cached is not None and (not museval or np.isfinite(cached["sdr"])):
                    reused += 1
                    continue
                rows_needed.append((row, spec, cached))
        if not rows_needed:
            continue

        enhanced_paths = {
            s: enhanced_path(out, enhancers[s], separator, wid, subset, track) for s in wanted if s in enhancers
        }
        target, target_prepared, estimate, enhanced = _track_signals(
            track, truth[track], truth_cache[track], estimate_paths, enhancers, enhanced_paths, enhance_mono16k
        )
        bss = {}
        if museval:
            bss = _bss_eval_rows(rows_needed, wanted, target, estimate, enhanced, enhancers)
        for row, _, cached in rows_needed:
            source = row["source"]
            if cached is not None and np.isfinite(cached["rolloff_frames"]):
                row.update({k: v for k, v in cached.items() if k not in row})
            else:
                candidate, rate = enhanced(source) if row["variant"] == "msg" else estimate(source)
                row.update(_score(metrics.prepare(candidate, rate), target_prepared(source)))
                save_frames(frames_dir, row, row.pop("_cents"))
            if museval:
                row.update(bss.get((source, row["variant"]), {}))
            table.put(row)
            computed += 1
        table.save()  # after every track: an interrupted run keeps its work

    table.save()
    tracks = sorted({w[2] for w in work})
    run_info = {
        "root": str(root if root is not None else os.environ.get("MUSDB_PATH", "")),
        "cache": str(cache_root),
        "subset": subset,
        "museval": museval,
        "separators": {s: {"family": family(s), "weights_id": weights_ids(cache_root, s)[0]} for s in available},
        "tracks": tracks,
        "enhancers": {
            s: {"id": e.id, "name": e.name, "training_separators": e.training_separators} for s, e in enhancers.items()
        },
        "enhance_mono16k": enhance_mono16k,
        "metrics_id": mid,
    }
    atomic_write_text(out / "run.json", json.dumps(run_info, indent=2, sort_keys=True) + "\n")
    return EvaluationRun(table, out, available, tracks, enhancers, computed, reused)


def _track_signals(
    track: str,
    truth_track,
    truth_cache: dict,
    estimate_paths: dict[str, Path],
    enhancers: dict[str, EnhancerSpec],
    enhanced_paths: dict[str, Path],
    mono16k: bool,
):
    """One (separator, track)'s signals as functions of the source, each read or computed once, when
    first asked for: (target, target_prepared, estimate, enhanced). `truth_cache` is the track's
    ground-truth cache, shared by every separator of the track."""
    from msgpp.audio import load_audio

    def target(source):
        if source not in truth_cache:
            truth_cache[source] = (truth_track.load_source(source), truth_track.sample_rate)
        return truth_cache[source]

    def target_prepared(source):  # 16 kHz mono, shared by every separator of the track
        if ("prepared", source) not in truth_cache:
            truth_cache[("prepared", source)] = metrics.prepare(*target(source))
        return truth_cache[("prepared", source)]

    estimates_native: dict[str, tuple[np.ndarray, int]] = {}
    enhanced_native: dict[str, tuple[np.ndarray, int]] = {}

    def estimate(source):
        if source not in estimates_native:
            estimates_native[source] = load_audio(estimate_paths[source])
            _check_matches(estimate_paths[source], estimates_native[source], target(source), track)
        return estimates_native[source]

    def enhanced(source):
        if source not in enhanced_native:
            audio, rate = estimate(source)
            enhanced_native[source] = enhance_cached(enhanced_paths[source], enhancers[source], audio, rate, mono16k)
        return enhanced_native[source]

    return target, target_prepared, estimate, enhanced


def _check_matches(path, estimate: tuple[np.ndarray, int], truth: tuple[np.ndarray, int], track: str) -> None:
    """An estimate must cover its ground truth: the same duration (a few ms of separator padding
    aside). Otherwise the scores would be nonsense (an estimate of another song, a cut file)."""
    (audio, rate), (reference, reference_rate) = estimate, truth
    seconds, reference_seconds = audio.shape[-1] / rate, reference.shape[-1] / reference_rate
    if abs(seconds - reference_seconds) > 0.05 + 0.001 * reference_seconds:
        raise MsgppError(
            f"{path}: {seconds:.3f} s long, but the ground truth of {track} is {reference_seconds:.3f} s; "
            "the cached estimate does not belong to this track (rerun `msgpp separate --force`)"
        )


def _score(estimate: np.ndarray, target: np.ndarray) -> dict:
    """Every fast metric of one estimate; both already at the paper's protocol (`metrics.prepare`)."""
    est, gt = metrics.align(estimate, target)
    rolloff = metrics.rolloff_error(est, gt)
    onsets = metrics.onset_f1(est, gt)
    return {
        "duration_s": len(gt) / metrics.MSG_SAMPLE_RATE,
        "rolloff_cents": rolloff.mean,
        "rolloff_abs_cents": rolloff.mean_abs,
        "rolloff_frames": float(rolloff.kept_frames),
        "onset_f1": onsets.f1,
        "onset_tp": float(onsets.true_positives),
        "onset_fp": float(onsets.false_positives),
        "onset_fn": float(onsets.false_negatives),
        "si_sdr": metrics.si_sdr(est, gt),
        "mrstft": metrics.mrstft_distance(est, gt),
        "_cents": rolloff.cents,
    }


def _bss_eval_rows(rows_needed, sources, target, estimate, enhanced, enhancers) -> dict:
    """BSS-eval at the estimates' native rate, all sources of the track jointly (MUSDB protocol).

    "msg" rows are scored with every source that has an enhancer enhanced and the rest raw.
    """
    from msgpp.audio import convert_channels, resample

    variants = {row["variant"] for row, _, _ in rows_needed}
    rate = estimate(sources[0])[1]

    def native(audio, audio_rate):
        return resample(audio, audio_rate, rate) if audio_rate != rate else audio

    targets = {s: native(*target(s)) for s in sources}
    results = {}
    for variant in sorted(variants):
        chosen = {}
        for s in sources:
            audio, audio_rate = estimate(s)
            if variant == "msg" and s in enhancers:
                audio, audio_rate = enhanced(s)
                audio = convert_channels(audio, estimate(s)[0].shape[0])
            chosen[s] = native(audio, audio_rate)
        for s, values in metrics.bss_eval(chosen, targets, rate).items():
            results[(s, variant)] = values
    return results
