"""`msgpp train` checkpoints: reading them, choosing the one to export, and writing its generator as
the inference file the enhancer loads (msgpp.enhance.weights_file). `msgpp export` (commands.py)
is these functions on the command line; model selection itself is selection.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def load_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict:
    """A `msgpp train` checkpoint, read with weights_only=True; MsgppError when it is not one.
    `mmap` maps the tensors instead of reading them (cheap when only a few are used)."""
    import torch

    from msgpp.errors import MsgppError, error_text

    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises many types for a bad pickle
        raise MsgppError(f"{path}: not a readable checkpoint ({error_text(error, 300)})") from None
    if not isinstance(checkpoint, dict) or "msgpp" not in checkpoint or "state_dict" not in checkpoint:
        raise MsgppError(f"{path}: not a checkpoint written by `msgpp train` (no msgpp section)")
    return checkpoint


def generator_state(checkpoint: dict) -> dict:
    """The generator's own state dict (what Generator loads) from a training checkpoint."""
    prefix = "generator."
    return {key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}


def validation_records(checkpoint: dict) -> list[dict]:
    """The whole-song validation records a checkpoint carries (its latest and its history) that
    have a fingerprint and a finite score."""
    import math

    facts = checkpoint.get("msgpp") or {}
    records = [*(facts.get("validation_history") or []), facts.get("validation")]
    return [
        record
        for record in records
        if isinstance(record, dict)
        and record.get("fingerprint")
        and isinstance(record.get("score"), (int, float))
        and math.isfinite(record["score"])
    ]


def export_checkpoint(
    checkpoint_path: str | os.PathLike,
    out: str | os.PathLike,
    name: str | None = None,
    validation: dict | None = None,
    averaged: list[Path] | None = None,
    state_dict: dict | None = None,
    level_gain_db: float | None = None,
    interpolated: dict | None = None,
) -> Path:
    """Write the generator of a training checkpoint as an inference file; returns its path.

    `validation`: the whole-song validation record of these weights (see choose_checkpoint); by
    default the checkpoint's own record for its weights, when it has one. It is written to the
    file's `training["validation"]`, with `training["do_no_harm"]` (selection.do_no_harm).
    `averaged` + `state_dict`: the weights are the mean of these checkpoints' generators
    (`average_generators`; the file names them in `training["averaged"]`), the last one being
    `checkpoint_path`, whose settings the file takes. `level_gain_db` (calibrate_level) and
    `interpolated` (interpolate_with_start) record what was done to `state_dict`.
    """
    from msgpp.enhance.weights_file import save_inference_file
    from msgpp.training import selection

    checkpoint = load_checkpoint(checkpoint_path)
    facts = checkpoint["msgpp"]
    state_dict = generator_state(checkpoint) if state_dict is None else state_dict
    if validation is None:
        fingerprint = selection.generator_fingerprint(state_dict)
        validation = next((r for r in validation_records(checkpoint) if r["fingerprint"] == fingerprint), None)
    hyper = checkpoint.get("hyper_parameters", {})
    data = checkpoint.get("datamodule_hyper_parameters", {})
    training = {
        "batches": int(facts.get("batches_done", 0)),
        "global_step": int(checkpoint.get("global_step", 0)),
        "epoch": int(checkpoint.get("epoch", 0)),
        "balance_frozen": bool(facts.get("balance_frozen", False)),
        "discriminator_config": facts.get("discriminator_config", {}),
        "lr": hyper.get("lr"),
        "lr_schedule": hyper.get("lr_schedule", "constant"),
        "init_generator": Path(hyper["init_generator"]).name if hyper.get("init_generator") else None,
        "separators": list(data.get("separators", [])),
        "held_out": list(data.get("held_out", [])),
        "data_seed": data.get("seed"),
        "batch_size": data.get("batch_size"),
        "checkpoint": Path(checkpoint_path).name,
        "trained_with": facts.get("versions", {}),
    }
    if averaged:
        training["averaged"] = [Path(member).name for member in averaged]
    if interpolated is not None:
        training["interpolated"] = dict(interpolated)
    if level_gain_db is not None:
        training["level_gain_db"] = float(level_gain_db)  # folded into the weights
    if validation is not None:
        training["validation"] = {
            key: validation[key] for key in ("score", "rows", "batches", "fingerprint") if key in validation
        }
        training["do_no_harm"] = selection.do_no_harm(validation["rows"])
    return save_inference_file(
        out,
        name or f"msg-{facts['source']}",
        source=facts["source"],
        sample_rate=facts["sample_rate"],
        generator_config=facts["generator_config"],
        state_dict=state_dict,
        loss_weights=facts.get("loss_weights"),
        training=training,
    )


@dataclass
class Candidate:
    """One checkpoint considered by `choose_checkpoint`."""

    path: Path
    source: str
    batches: int
    fingerprint: str
    record: dict | None = None  # the validation record of its weights, when one was found


def find_checkpoints(path: str | os.PathLike) -> list[Path]:
    """The .ckpt files `msgpp export` chooses among: every one under a folder (a run folder or its
    checkpoints/), or a file and its sibling checkpoints."""
    from msgpp.errors import MsgppError

    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("*.ckpt"))
        if not found:
            raise MsgppError(f"{path}: no .ckpt checkpoint in this folder or below")
        return found
    if not path.is_file():
        raise MsgppError(f"{path}: no such checkpoint")
    return sorted({path, *path.parent.glob("*.ckpt")})


def scan_checkpoints(paths: list[Path]) -> list[Candidate]:
    """Read each checkpoint's source, batch count and weights fingerprint, and give every one the
    validation record whose fingerprint matches its weights, wherever that record is stored: a
    periodic checkpoint saved just before a validation gets its score from a later checkpoint's
    history."""
    from msgpp.errors import MsgppError
    from msgpp.training import selection

    candidates, records = [], {}
    for path in paths:
        checkpoint = load_checkpoint(path, mmap=True)
        facts = checkpoint["msgpp"]
        for record in validation_records(checkpoint):
            records[record["fingerprint"]] = record
        candidates.append(
            Candidate(
                path,
                str(facts.get("source")),
                int(facts.get("batches_done", 0)),
                selection.generator_fingerprint(generator_state(checkpoint)),
            )
        )
        del checkpoint
    sources = sorted({candidate.source for candidate in candidates})
    if len(sources) > 1:
        raise MsgppError(
            f"checkpoints of several sources ({', '.join(sources)}) among {len(paths)} checkpoints; "
            f"name one run's folder or checkpoint"
        )
    for candidate in candidates:
        candidate.record = records.get(candidate.fingerprint)
    return candidates


class ValidationSongs:
    """A run's validation songs, rebuilt from the data settings stored in one of its checkpoints
    (`root` / `cache` override its paths), to measure generators the run never validated."""

    def __init__(self, checkpoint_path: Path, root: str | None = None, cache: str | None = None):
        from msgpp.errors import MsgppError
        from msgpp.training.datamodule import MSGDataModule

        first = load_checkpoint(checkpoint_path, mmap=True)
        # LightningCLI stores its own entries (e.g. "_instantiator") beside the datamodule's arguments
        settings = {
            key: value
            for key, value in (first.get("datamodule_hyper_parameters") or {}).items()
            if not key.startswith("_")
        }
        if not settings:
            raise MsgppError(f"{checkpoint_path}: holds no data settings; cannot rebuild its validation songs")
        settings.update({key: value for key, value in (("root", root), ("cache", cache)) if value is not None})
        songs_cap = (first.get("hyper_parameters") or {}).get("val_songs")
        self.generator_config = dict(first["msgpp"]["generator_config"])
        del first
        datamodule = MSGDataModule(**settings)
        datamodule.setup("fit")
        if datamodule.val_set is None or not datamodule.val_set.data.tracks:
            raise MsgppError(
                "the run has no validation songs (data.val_fraction 0); nothing to score the checkpoints on"
            )
        self.data, self.separators = datamodule.val_set.data, datamodule.val_separators
        self.training_separators = [name for name in self.separators if name in (settings.get("separators") or [])]
        self.songs = list(range(len(self.data.tracks)))[:songs_cap]
        self.sample_rate = datamodule.sample_rate
        self._raw_cache: dict = {}  # the raw estimates' measures, shared by every generator measured

    def record(self, state_dict: dict, batches: int) -> dict:
        """The validation record (as training writes it) of these generator weights."""
        from msgpp.models.generator import Generator
        from msgpp.training import selection

        generator = Generator(**self.generator_config)
        generator.load_state_dict(state_dict)
        rows = selection.measure_songs(
            generator, self.data, self.separators, self.songs, sample_rate=self.sample_rate, raw_cache=self._raw_cache
        )
        return {
            "batches": batches,
            "score": selection.selection_score(rows),
            "rows": rows,
            "fingerprint": selection.generator_fingerprint(state_dict),
        }


def score_candidates(candidates: list[Candidate], validation_songs: Callable[[], ValidationSongs]) -> None:
    """Measure the candidates without a record on their run's validation songs, which
    `validation_songs()` gives (loaded only when there is something to measure)."""
    missing = [candidate for candidate in candidates if candidate.record is None]
    if not missing:
        return
    songs = validation_songs()
    for candidate in missing:
        candidate.record = songs.record(generator_state(load_checkpoint(candidate.path)), candidate.batches)
        log.info("scored %s: %+.4f on %d validation songs", candidate.path, candidate.record["score"], len(songs.songs))


def average_generators(paths: list[Path]) -> dict:
    """The mean of the checkpoints' generator weights (floating-point tensors; others from the first)."""
    states = [generator_state(load_checkpoint(path)) for path in paths]
    return {
        key: (sum(state[key] for state in states) / len(states) if value.is_floating_point() else value)
        for key, value in states[0].items()
    }


def average_before(path: str | os.PathLike, chosen: Path, count: int) -> list[Candidate]:
    """The chosen checkpoint and the `count - 1` checkpoints with the most batches before it (one
    per distinct set of weights), oldest first: the members of `msgpp export --average`."""
    candidates = scan_checkpoints(find_checkpoints(path))
    chosen_candidate = next(c for c in candidates if c.path == chosen)
    earlier, seen = [], {chosen_candidate.fingerprint}
    for candidate in sorted(candidates, key=lambda c: -c.batches):
        if candidate.batches < chosen_candidate.batches and candidate.fingerprint not in seen:
            seen.add(candidate.fingerprint)
            earlier.append(candidate)
    return [*reversed(earlier[: count - 1]), chosen_candidate]


def choose_checkpoint(
    path: str | os.PathLike,
    last: bool = False,
    validation_songs: Callable[[], ValidationSongs] | None = None,
) -> tuple[Path, dict | None]:
    """(checkpoint to export, its validation record or None).

    - a folder, or a file named last.ckpt: among all (the folder's, or the file and its siblings),
      the checkpoint with the highest validation score among those that pass the do-no-harm check
      (selection.do_no_harm), or among all when none passes; ties go to the later one;
    - `last`: the folder's last.ckpt (or the file given);
    - any other file: that file.
    Checkpoints whose weights were never validated are left out (logged), unless
    `validation_songs` is given: then they are measured on the songs it returns (`msgpp export
    --score-missing`); MsgppError when none is left.
    """
    import math

    from msgpp.errors import MsgppError
    from msgpp.training import selection

    path = Path(path)
    paths = find_checkpoints(path)
    candidates = scan_checkpoints(paths)
    if last or (path.is_file() and path.name != "last.ckpt"):
        if path.is_file():
            wanted = path
        else:
            lasts = [p for p in paths if p.name == "last.ckpt"]
            if len(lasts) != 1:
                raise MsgppError(
                    f"{path}: {'no' if not lasts else len(lasts)} last.ckpt in this folder or below; "
                    f"name the checkpoint file"
                )
            wanted = lasts[0]
        chosen = next(c for c in candidates if c.path == wanted)
        if chosen.record is None and validation_songs is not None:
            score_candidates([chosen], validation_songs)
        return chosen.path, chosen.record
    if validation_songs is not None:
        score_candidates(candidates, validation_songs)
    scored = [c for c in candidates if c.record is not None and math.isfinite(c.record["score"])]
    unscored = [c for c in candidates if c not in scored]
    if unscored:
        log.info(
            "%d of %d checkpoints have no validation score for their weights and are not considered "
            "(--score-missing measures them): %s",
            len(unscored),
            len(candidates),
            ", ".join(c.path.name for c in unscored),
        )
    if not scored:
        raise MsgppError(
            f"{path}: none of its {len(candidates)} checkpoint(s) has a validation score for its weights "
            f"(run without validation songs, or before model selection existed); export one with "
            f"--last or by naming its .ckpt file, or measure them with --score-missing"
        )
    for candidate in sorted(scored, key=lambda c: c.batches):
        harm = len(selection.do_no_harm(candidate.record["rows"]))
        log.info(
            "  %-40s batch %6d  score %+.4f  %s",
            candidate.path.name,
            candidate.batches,
            candidate.record["score"],
            f"{harm} do-no-harm finding(s)" if harm else "does no harm",
        )
    # Do no harm first: a checkpoint that is worse than its input for one separator loses to a
    # lower-scoring one that is not (a high mean can hide one separator it damages).
    harmless = [c for c in scored if not selection.do_no_harm(c.record["rows"])]
    if not harmless:
        log.info("no checkpoint passes the do-no-harm check; choosing by score alone")
    best = max(harmless or scored, key=lambda c: (c.record["score"], c.batches))
    return best.path, best.record


def try_average(where, chosen: Path, record: dict | None, count: int, validation_songs: Callable[[], ValidationSongs]):
    """(members, weights, record) of the mean of `chosen` and the checkpoints before it when that
    mean validates better than `chosen` alone: a higher score and no more do-no-harm findings;
    otherwise (None, None, chosen's record). Both are measured on the run's validation songs,
    which `validation_songs()` gives (loaded only when there is something to measure)."""
    from msgpp.training import selection

    members = average_before(where, chosen, count)
    if len(members) < 2:
        log.info("--average: no checkpoint before %s; exporting it alone", chosen.name)
        return None, None, record
    songs = validation_songs()
    if record is None:
        record = songs.record(generator_state(load_checkpoint(chosen)), members[-1].batches)
    state_dict = average_generators([member.path for member in members])
    mean_record = songs.record(state_dict, members[-1].batches)
    harm, mean_harm = len(selection.do_no_harm(record["rows"])), len(selection.do_no_harm(mean_record["rows"]))
    log.info(
        "--average: %s alone %+.4f (%d do-no-harm findings); the mean of batches %s %+.4f (%d)",
        chosen.name,
        record["score"],
        harm,
        ", ".join(str(m.batches) for m in members),
        mean_record["score"],
        mean_harm,
    )
    if mean_record["score"] > record["score"] and mean_harm <= harm:
        return [member.path for member in members], state_dict, mean_record
    return None, None, record


def calibrate_level(
    chosen: Path, state_dict: dict | None, record: dict | None, songs: ValidationSongs, reference: str = "input"
):
    """(weights, their validation record, gain in dB): `state_dict` (default: `chosen`'s generator)
    with its output level matched to `reference` ("input" or "truth") on the run's validation
    `songs` of its training separators (msgpp.training.calibration)."""
    from msgpp.models.generator import Generator
    from msgpp.training.calibration import fold_output_gain, level_gain_db

    if state_dict is None:
        state_dict = generator_state(load_checkpoint(chosen))
    generator = Generator(**songs.generator_config)
    generator.load_state_dict(state_dict)
    gain_db = level_gain_db(generator, songs.data, songs.training_separators, songs.songs, reference)
    calibrated = fold_output_gain(songs.generator_config, state_dict, gain_db)
    batches = record["batches"] if record is not None else 0
    return calibrated, songs.record(calibrated, batches), gain_db


def check_interpolation_weight(alpha: float) -> None:
    from msgpp.errors import MsgppError

    if not 0.0 < alpha <= 1.0:  # also refuses NaN
        raise MsgppError(f"--interpolate must be the trained model's weight, in (0, 1], got {alpha}")


def interpolate_with_start(
    chosen: Path,
    state_dict: dict | None,
    record: dict | None,
    alpha: float,
    validation_songs: Callable[[], ValidationSongs],
):
    """(weights, their validation record, facts for the file): (1 − alpha) · the run's starting
    weights (its `model.init_generator` file) + alpha · `state_dict` (default: `chosen`'s
    generator). A fine-tuned model interpolated towards where it started keeps part of what the
    fine-tune gained and loses part of what it broke (WiSE-FT: Wortsman et al., "Robust
    fine-tuning of zero-shot models", CVPR 2022). Measured on the run's validation songs, which
    `validation_songs()` gives (loaded once the starting file is found)."""
    from msgpp.errors import MsgppError
    from msgpp.models.generator import Generator
    from msgpp.training.module import load_generator_weights

    check_interpolation_weight(alpha)
    checkpoint = load_checkpoint(chosen, mmap=True)
    start_path = (checkpoint.get("hyper_parameters") or {}).get("init_generator")
    if not start_path:
        raise MsgppError(
            f"{chosen}: the run did not start from an enhancer file (model.init_generator); "
            f"--interpolate needs that starting point"
        )
    if not Path(start_path).is_file():
        raise MsgppError(
            f"{chosen}: its starting weights, model.init_generator {start_path}, are not there "
            f"(run export from the folder the run was trained in)"
        )
    if state_dict is None:
        state_dict = generator_state(checkpoint)
    del checkpoint
    songs = validation_songs()
    start = Generator(**songs.generator_config)
    load_generator_weights(start, start_path)  # refuses another architecture
    start_state = start.state_dict()
    mixed = {
        key: ((1.0 - alpha) * start_state[key] + alpha * value if value.is_floating_point() else value)
        for key, value in state_dict.items()
    }
    batches = record["batches"] if record is not None else 0
    return mixed, songs.record(mixed, batches), {"start": Path(start_path).name, "alpha": float(alpha)}
