"""Model selection: whole-song validation measures, the selection score, "do no harm", the
validation records written during training, and `msgpp export` choosing the best checkpoint.

Synthetic songs (note sequences with onsets at 8 kHz) and stand-in generators: identity, one that
adds white noise, and "cheats" that look up the ground truth of their input.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from msgpp.errors import MsgppError
from msgpp.evaluation import metrics
from msgpp.training import selection
from msgpp.training.datamodule import SourceSet
from tests.helpers.training import tiny_datamodule, tiny_module, tiny_trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 8000
SEPARATORS = ("dull", "noisy")


def _song(seed: int, seconds: float = 3.0) -> np.ndarray:
    """Plucked notes every 0.4 s (clear onsets), a few harmonics each, a short silence at the end."""
    rng = np.random.default_rng(seed)
    samples = int(seconds * RATE)
    song = np.zeros(samples)
    note = int(0.4 * RATE)
    t = np.arange(note) / RATE
    for start in range(0, samples - RATE // 2, note):
        f0 = rng.uniform(120, 500)
        tone = sum(0.5 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6))
        song[start : start + note] += tone * np.exp(-6 * t)
    return song.astype(np.float32)


def synthetic_set(count: int = 2) -> SourceSet:
    rng = np.random.default_rng(7)
    targets = [_song(seed) for seed in range(count)]
    dull = [np.convolve(t, np.ones(9) / 9, mode="same") + 0.005 * rng.standard_normal(t.size) for t in targets]
    noisy = [t + 0.02 * rng.standard_normal(t.size) for t in targets]
    return SourceSet(
        tracks=[f"song{n}" for n in range(count)],
        targets=targets,
        estimates={"dull": [a.astype(np.float32) for a in dull], "noisy": [a.astype(np.float32) for a in noisy]},
    )


class AddNoise(nn.Module):
    """Returns its input plus white noise (seeded); remembers the mode it was called in."""

    def __init__(self, level: float = 0.05):
        super().__init__()
        self.level, self.generator = level, torch.Generator().manual_seed(0)
        self.called_in_training_mode: list[bool] = []

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        self.called_in_training_mode.append(self.training)
        return audio + self.level * torch.randn(audio.shape, generator=self.generator)


class Cheat(nn.Module):
    """Returns `mix` × the ground truth of its input (found by content) + (1 − mix) × the input."""

    def __init__(self, data: SourceSet, mix: float = 1.0):
        super().__init__()
        self.mix = mix
        self.pairs = [
            (metrics.prepare(data.estimates[s][n], RATE, RATE), metrics.prepare(data.targets[n], RATE, RATE))
            for s in data.estimates
            for n in range(len(data.tracks))
        ]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        signal = audio.reshape(-1).numpy()
        for estimate, target in self.pairs:
            if estimate.size == signal.size and np.array_equal(estimate, signal):
                return torch.from_numpy(self.mix * target + (1 - self.mix) * estimate)[None, None]
        raise AssertionError("the cheat was given an input it does not know")


@pytest.fixture(scope="module")
def songs() -> SourceSet:
    return synthetic_set()


# -- measures, score, do no harm ------------------------------------------------------------------


def test_identity_scores_zero_noise_negative_truth_positive(songs):
    identity = selection.measure_songs(nn.Identity(), songs, SEPARATORS, sample_rate=RATE)
    assert [row["separator"] for row in identity] == list(SEPARATORS) and all(row["songs"] == 2 for row in identity)
    for row in identity:
        for measure in selection.MEASURES:
            assert math.isfinite(row[f"{measure}_raw"])
            assert row[f"{measure}_enhanced"] == pytest.approx(row[f"{measure}_raw"], abs=1e-9)
    assert selection.selection_score(identity) == pytest.approx(0.0, abs=1e-9)

    noise = AddNoise().train()
    noisy = selection.measure_songs(noise, songs, SEPARATORS, sample_rate=RATE)
    assert noise.training and noise.called_in_training_mode and not any(noise.called_in_training_mode)
    assert selection.selection_score(noisy) < -0.05
    for row, raw in zip(noisy, identity, strict=True):
        assert row["song_mrstft_raw"] == pytest.approx(raw["song_mrstft_raw"])  # the raw side is the generator's input
        assert row["song_mrstft_enhanced"] > row["song_mrstft_raw"] and row["si_sdr_enhanced"] < row["si_sdr_raw"]

    truth = selection.measure_songs(Cheat(songs), songs, SEPARATORS, sample_rate=RATE)
    assert selection.selection_score(truth) > 0.5
    for row in truth:
        assert row["song_mrstft_enhanced"] == pytest.approx(0.0, abs=1e-6) and row["onset_f1_enhanced"] == 1.0
        assert row["si_sdr_enhanced"] == selection.SI_SDR_LIMIT_DB  # a perfect estimate, clipped to stay finite


def test_selection_score_follows_the_documented_formula():
    row = {
        "separator": "x",
        "song_mrstft_raw": 2.0,
        "song_mrstft_enhanced": 1.0,  # +0.5
        "rolloff_abs_cents_raw": 300.0,
        "rolloff_abs_cents_enhanced": 240.0,  # +60/300 = +0.2
        "onset_f1_raw": 0.5,
        "onset_f1_enhanced": 0.6,  # +0.1
        "si_sdr_raw": 5.0,
        "si_sdr_enhanced": 3.0,
    }  # -2/10 = -0.2
    assert selection.separator_score(row) == pytest.approx((0.5 + 0.2 + 0.1 - 0.2) / 4)
    small_rolloff = dict(row, rolloff_abs_cents_raw=20.0, rolloff_abs_cents_enhanced=10.0)  # floor: 10/100
    assert selection.separator_score(small_rolloff) == pytest.approx((0.5 + 0.1 + 0.1 - 0.2) / 4)
    undefined = dict(row, si_sdr_raw=float("nan"), si_sdr_enhanced=float("nan"))  # the term is left out
    assert selection.separator_score(undefined) == pytest.approx((0.5 + 0.2 + 0.1) / 3)
    other = dict(row, separator="y", song_mrstft_enhanced=3.0)  # -0.5 instead of +0.5
    assert selection.selection_score([row, other]) == pytest.approx(((0.6) / 4 + (-0.4) / 4) / 2)
    assert math.isnan(selection.selection_score([]))


def test_do_no_harm_flags_a_noisy_model_and_not_a_good_one(songs):
    noisy = selection.measure_songs(AddNoise(), songs, SEPARATORS, sample_rate=RATE)
    reasons = selection.do_no_harm(noisy)
    assert reasons[0].startswith("selection score -")
    assert any(r.startswith("dull: MR-STFT distance") for r in reasons)
    assert any(r.startswith("noisy: SI-SDR") for r in reasons)
    assert selection.do_no_harm(selection.measure_songs(Cheat(songs), songs, SEPARATORS, sample_rate=RATE)) == []
    # returning the input is not an improvement either
    identity = selection.do_no_harm(selection.measure_songs(nn.Identity(), songs, SEPARATORS, sample_rate=RATE))
    assert len(identity) == 1 and "≤ 0" in identity[0]


def test_raw_cache_and_song_choice(songs):
    cache: dict = {}
    first = selection.song_measures(nn.Identity(), songs, SEPARATORS, songs=[1], sample_rate=RATE, raw_cache=cache)
    assert first.shape == (1, 2, len(selection.MEASURES), 2) and len(cache) == 2
    whole = selection.song_measures(nn.Identity(), songs, SEPARATORS, sample_rate=RATE, raw_cache=cache)
    np.testing.assert_allclose(whole[1], first[0])
    assert len(cache) == 4
    # rows from NaN-padded values (what DDP ranks gather) ignore the padding
    padded = np.concatenate([whole, np.full_like(whole[:1], np.nan)])
    assert selection.rows_from_measures(padded, SEPARATORS) == selection.rows_from_measures(whole, SEPARATORS)


def test_fingerprint_tells_weights_apart():
    module = nn.Linear(3, 2)
    before = selection.generator_fingerprint(module.state_dict())
    assert before == selection.generator_fingerprint({k: v.clone() for k, v in module.state_dict().items()})
    with torch.no_grad():
        module.bias[0] += 1e-6
    assert selection.generator_fingerprint(module.state_dict()) != before


# -- during training ------------------------------------------------------------------------------


def test_training_records_validation_and_export_picks_from_it(fake_cache, tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from msgpp.training.checkpoints import choose_checkpoint, load_checkpoint

    root, cache = fake_cache
    folder = tmp_path / "checkpoints"
    module = tiny_module()
    trainer = tiny_trainer(
        tmp_path,
        4,
        limit_val_batches=None,
        val_check_interval=2,
        logger=CSVLogger(tmp_path, name="csv"),
        enable_checkpointing=True,
        callbacks=[
            ModelCheckpoint(dirpath=folder, every_n_train_steps=4, save_top_k=-1, save_last=True),
            ModelCheckpoint(dirpath=folder, monitor="val/score", mode="max", save_top_k=1, filename="best"),
        ],
    )
    trainer.fit(module, tiny_datamodule(root, cache))
    trainer.save_checkpoint(folder / "last.ckpt")  # as `msgpp train` does when a run finishes
    assert [record["batches"] for record in module.validations] == [2, 4]
    for record in module.validations:
        assert [row["separator"] for row in record["rows"]] == ["sepa", "sepb", "unseen"]
        assert record["score"] == pytest.approx(selection.selection_score(record["rows"]))
    assert trainer.callback_metrics["val/score"].item() == pytest.approx(module.validations[-1]["score"])
    assert (
        "val/onset_f1_enhanced/unseen" in trainer.callback_metrics and "val/si_sdr_raw/sepa" in trainer.callback_metrics
    )

    with open(Path(trainer.logger.log_dir) / "validation_measures.csv") as handle:
        logged = list(csv.DictReader(handle))
    assert [(int(r["batch"]), r["separator"]) for r in logged] == [
        (b, s) for b in (2, 4) for s in ("sepa", "sepb", "unseen")
    ]
    assert float(logged[-1]["score"]) == pytest.approx(module.validations[-1]["score"])

    # the periodic checkpoint at batch 2 was saved just before validation 2: its own record is
    # older, the later checkpoints' history holds the score of its weights
    periodic = load_checkpoint(folder / "epoch=0-step=4.ckpt")
    assert periodic["msgpp"]["batches_done"] == 2 and periodic["msgpp"]["validation"] is None
    last = load_checkpoint(folder / "last.ckpt")
    assert last["msgpp"]["validation"]["batches"] == 4 and len(last["msgpp"]["validation_history"]) == 2
    best_score = max(record["score"] for record in module.validations)
    chosen, record = choose_checkpoint(folder)
    assert record["score"] == best_score
    chosen_weights = load_checkpoint(chosen)["state_dict"]
    from msgpp.training.checkpoints import generator_state

    assert selection.generator_fingerprint(generator_state({"state_dict": chosen_weights})) == record["fingerprint"]
    assert load_checkpoint(folder / "best.ckpt")["msgpp"]["validation"]["score"] == best_score

    # checkpoints without records: ignored, an error when none is left, measured with --score-missing
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in folder.glob("*.ckpt"):
        checkpoint = load_checkpoint(path)
        checkpoint["msgpp"]["validation"], checkpoint["msgpp"]["validation_history"] = None, []
        checkpoint["datamodule_hyper_parameters"]["_instantiator"] = (
            "lightning.pytorch.cli.instantiate_module"  # as LightningCLI
        )
        torch.save(checkpoint, bare / path.name)
    with pytest.raises(MsgppError, match="has a validation score"):
        choose_checkpoint(bare)
    from msgpp.training.checkpoints import ValidationSongs

    loads = []
    rescored, rerecord = choose_checkpoint(
        bare, validation_songs=lambda: loads.append(1) or ValidationSongs(next(bare.glob("*.ckpt")))
    )
    assert len(loads) == 1  # the songs are loaded once for all the checkpoints it scores
    assert rerecord["score"] == pytest.approx(best_score, rel=1e-5, abs=1e-7)  # the same songs, the same measures

    # --average 2: the mean of the chosen checkpoint and the one before it, measured on the same
    # songs, is exported exactly when it scores higher and does no more harm
    from msgpp.cli import main
    from msgpp.enhance.weights_file import load_inference_file
    from msgpp.training.checkpoints import average_before, average_generators

    assert main(["export", str(folder), "--average", "2", "--out", str(tmp_path / "averaged")]) == 0
    package = load_inference_file(next((tmp_path / "averaged").glob("*.pt")))
    members = average_before(folder, chosen, 2)
    assert members[-1].path == chosen and [m.batches for m in members] == sorted(
        {2, 4} & set(range(record["batches"] + 1))
    )
    mean = average_generators([m.path for m in members])
    mean_record = ValidationSongs(chosen).record(mean, members[-1].batches)
    better = mean_record["score"] > record["score"] and len(selection.do_no_harm(mean_record["rows"])) <= len(
        selection.do_no_harm(record["rows"])
    )
    exported = mean if better else generator_state(load_checkpoint(chosen))
    assert all(torch.equal(package["state_dict"][key], value) for key, value in exported.items())
    assert package["training"]["validation"]["score"] == pytest.approx((mean_record if better else record)["score"])
    assert ("averaged" in package["training"]) == better

    # --calibrate-level input: the chosen weights with the output gain that the training
    # separators' validation songs ask for folded in; the file says which gain
    from msgpp.models.generator import Generator
    from msgpp.training.calibration import fold_output_gain, level_gain_db

    assert main(["export", str(folder), "--calibrate-level", "input", "--out", str(tmp_path / "level")]) == 0
    package = load_inference_file(next((tmp_path / "level").glob("*.pt")))
    songs = ValidationSongs(chosen)
    generator = Generator(**songs.generator_config)
    generator.load_state_dict(generator_state(load_checkpoint(chosen)))
    gain = level_gain_db(generator, songs.data, ["sepa", "sepb"], songs.songs, "input")  # not the held-out one
    assert package["training"]["level_gain_db"] == pytest.approx(gain)
    folded = fold_output_gain(songs.generator_config, generator.state_dict(), gain)
    assert all(torch.allclose(package["state_dict"][key], value) for key, value in folded.items())

    # all three options that measure on the validation songs at once: the songs are loaded once
    import msgpp.training.checkpoints as checkpoints

    built = []

    class CountedSongs(ValidationSongs):
        def __init__(self, *args, **kwargs):
            built.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "ValidationSongs", CountedSongs)
    options = ["--score-missing", "--average", "2", "--calibrate-level", "input"]
    assert main(["export", str(bare), *options, "--out", str(tmp_path / "all")]) == 0
    assert len(built) == 1


def test_no_validation_songs_no_records(fake_cache, tmp_path):
    root, cache = fake_cache
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, 2, limit_val_batches=None, val_check_interval=1)
    datamodule = tiny_datamodule(root, cache, val_fraction=0.0)
    trainer.fit(module, datamodule)
    assert module.validations == [] and "val/score" not in trainer.callback_metrics
    assert module.measure_validation_songs() is None
    assert not list(tmp_path.rglob("validation_measures.csv"))
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    with pytest.raises(MsgppError, match="model.val_songs must be a positive number"):
        tiny_module(val_songs=0)
    assert checkpoint["msgpp"]["validation"] is None and checkpoint["msgpp"]["validation_history"] == []


# -- export ---------------------------------------------------------------------------------------


def _fake_run(folder: Path, songs: SourceSet) -> dict[str, dict]:
    """Checkpoints written the way MSGModule.on_save_checkpoint writes them, with real validation
    rows: batch 50 half-way to the truth, batch 100 the truth, last (batch 150) white noise, and
    one checkpoint never validated. Returns {file name: validation record or None}."""
    module = tiny_module()
    stand_ins = {
        "epoch=0-step=100.ckpt": (50, Cheat(songs, mix=0.5)),
        "epoch=0-step=200.ckpt": (100, Cheat(songs)),
        "last.ckpt": (150, AddNoise(0.1)),
        "epoch=0-step=260.ckpt": (130, None),
    }
    records = {}
    folder.mkdir(parents=True)
    for number, (name, (batches, stand_in)) in enumerate(stand_ins.items()):
        with torch.no_grad():
            for parameter in module.generator.parameters():
                parameter.add_(0.01 * (number + 1))
        record = None
        if stand_in is not None:
            rows = selection.measure_songs(stand_in, songs, SEPARATORS, sample_rate=RATE)
            record = {
                "batches": batches,
                "score": selection.selection_score(rows),
                "rows": rows,
                "fingerprint": selection.generator_fingerprint(module.generator.state_dict()),
            }
            module.validations.append(record)
        checkpoint = {
            "state_dict": module.state_dict(),
            "global_step": 2 * batches,
            "epoch": 0,
            "hyper_parameters": dict(module.hparams),
            "datamodule_hyper_parameters": {"separators": list(SEPARATORS)},
        }
        module.on_save_checkpoint(checkpoint)
        checkpoint["msgpp"]["batches_done"] = batches
        torch.save(checkpoint, folder / name)
        records[name] = record
    return records


def _export(args, capsys) -> tuple[int, str, str]:
    from msgpp.cli import main

    code = main(["export", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_picks_the_best_validated_checkpoint_and_warns_on_harm(songs, tmp_path, capsys):
    from msgpp.enhance.weights_file import load_inference_file
    from msgpp.training.checkpoints import generator_state, load_checkpoint

    run = tmp_path / "run"
    records = _fake_run(run / "checkpoints", songs)
    scores = {name: record["score"] for name, record in records.items() if record}
    assert scores["last.ckpt"] < 0 < scores["epoch=0-step=100.ckpt"] < scores["epoch=0-step=200.ckpt"]

    for given in (run, run / "checkpoints", run / "checkpoints" / "last.ckpt"):
        code, out, err = _export([given, "--out", tmp_path / "best"], capsys)
        assert code == 0, err
        assert "epoch=0-step=200.ckpt" in err and f"{scores['epoch=0-step=200.ckpt']:+.4f}" in err
        assert "WARNING" not in err
        package = load_inference_file(out.strip())
        expected = generator_state(load_checkpoint(run / "checkpoints" / "epoch=0-step=200.ckpt"))
        assert all(torch.equal(package["state_dict"][key], value) for key, value in expected.items())
        assert package["training"]["validation"]["score"] == scores["epoch=0-step=200.ckpt"]
        assert package["training"]["validation"]["rows"] == records["epoch=0-step=200.ckpt"]["rows"]
        assert package["training"]["do_no_harm"] == [] and package["training"]["checkpoint"] == "epoch=0-step=200.ckpt"

    code, out, err = _export([run, "--last", "--out", tmp_path / "last"], capsys)
    assert code == 0, err
    package = load_inference_file(out.strip())
    assert package["training"]["checkpoint"] == "last.ckpt"
    assert package["training"]["validation"]["score"] == scores["last.ckpt"]
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: do no harm:")]
    assert len(warnings) >= 4 and "WORSE than returning its input" in warnings[0]
    assert package["training"]["do_no_harm"] and package["training"]["do_no_harm"][0].startswith("selection score -")
    assert all(reason in err for reason in package["training"]["do_no_harm"])

    # a named checkpoint is exported as named, with the score of its weights when one is known
    code, out, err = _export([run / "checkpoints" / "epoch=0-step=260.ckpt", "--out", tmp_path / "named"], capsys)
    assert code == 0 and "no validation score" in err
    assert "validation" not in load_inference_file(out.strip())["training"]


def test_export_prefers_a_checkpoint_that_does_no_harm(songs, tmp_path, monkeypatch):
    """A higher score that hides harm to one separator loses to a lower score without harm."""
    from msgpp.training.checkpoints import choose_checkpoint, validation_records

    run = tmp_path / "run"
    records = _fake_run(run, songs)
    # the best checkpoint (the truth) made worse for one separator only: still the highest score
    best = records["epoch=0-step=200.ckpt"]
    harmed = [dict(row) for row in best["rows"]]
    harmed[0]["song_mrstft_enhanced"] = harmed[0]["song_mrstft_raw"] * 1.01
    assert selection.do_no_harm(harmed) and not selection.do_no_harm(records["epoch=0-step=100.ckpt"]["rows"])
    assert selection.selection_score(harmed) > records["epoch=0-step=100.ckpt"]["score"]

    def with_harm(checkpoint):
        return [
            dict(r, rows=harmed, score=selection.selection_score(harmed))
            if r["fingerprint"] == best["fingerprint"]
            else r
            for r in validation_records(checkpoint)
        ]

    monkeypatch.setattr("msgpp.training.checkpoints.validation_records", with_harm)
    chosen, record = choose_checkpoint(run)
    assert chosen.name == "epoch=0-step=100.ckpt" and record["score"] == records["epoch=0-step=100.ckpt"]["score"]
    # when every candidate does harm, the score alone decides
    monkeypatch.setattr("msgpp.training.selection.do_no_harm", lambda rows: ["harm"])
    chosen, _ = choose_checkpoint(run)
    assert chosen.name == "epoch=0-step=200.ckpt"


def test_export_average_is_kept_only_when_it_validates_better(songs, tmp_path, monkeypatch, capsys):
    """`--average 3`: the mean of the best checkpoint and (up to) the two before it replaces it only
    when its validation score is higher without more do-no-harm findings."""
    from msgpp.enhance.weights_file import load_inference_file
    from msgpp.training.checkpoints import average_generators, generator_state, load_checkpoint

    run = tmp_path / "run"
    records = _fake_run(run, songs)
    good, noisy = records["epoch=0-step=200.ckpt"]["rows"], records["last.ckpt"]["rows"]
    known = {record["fingerprint"] for record in records.values() if record}

    def stand_in(mean_score, mean_rows):
        class Songs:  # the validation songs, with scores set by the test
            def __init__(self, *args, **kwargs):
                pass

            def record(self, state_dict, batches):
                fingerprint = selection.generator_fingerprint(state_dict)
                assert fingerprint not in known  # only the mean is measured: the others have records
                return {"batches": batches, "score": mean_score, "rows": mean_rows, "fingerprint": fingerprint}

        return Songs

    best = records["epoch=0-step=200.ckpt"]["score"]
    # members: the best (batch 100) and what came before it: only batch 50 (130 and 150 came after)
    members = [run / "epoch=0-step=100.ckpt", run / "epoch=0-step=200.ckpt"]
    for mean_score, mean_rows, kept in (
        (best + 0.1, good, True),
        (best - 0.1, good, False),
        (best + 0.1, noisy, False),
    ):
        monkeypatch.setattr("msgpp.training.checkpoints.ValidationSongs", stand_in(mean_score, mean_rows))
        out = tmp_path / f"out-{mean_score:.3f}-{kept}-{mean_rows is good}"
        code, printed, err = _export([run, "--average", "3", "--out", out], capsys)
        assert code == 0, err
        package = load_inference_file(printed.strip())
        if kept:
            assert package["training"]["averaged"] == [path.name for path in members]
            assert "mean of 2 checkpoints" in err and package["training"]["validation"]["score"] == mean_score
            expected = average_generators(members)
        else:
            assert "averaged" not in package["training"] and package["training"]["validation"]["score"] == best
            expected = generator_state(load_checkpoint(run / "epoch=0-step=200.ckpt"))
        assert all(torch.equal(package["state_dict"][key], value) for key, value in expected.items())
    code, printed, err = _export([run, "--average", "0", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "--average must be" in err


def test_export_without_any_score_is_a_clear_error(songs, tmp_path, capsys):
    run = tmp_path / "run"
    records = _fake_run(run, songs)
    for name, record in records.items():
        if record is not None:
            (run / name).unlink()
    shutil.copy(run / "epoch=0-step=260.ckpt", run / "last.ckpt")
    code, out, err = _export([run, "--out", tmp_path / "out"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("msgpp: error:")]
    assert code == 2 and out == "" and len(errors) == 1
    assert "none of its 2 checkpoint(s) has a validation score" in errors[0] and "--last" in errors[0]
    code, out, err = _export([run, "--last", "--out", tmp_path / "out"], capsys)
    assert code == 0 and Path(out.strip()).is_file()
    code, out, err = _export([tmp_path / "nowhere", "--out", tmp_path / "out"], capsys)
    assert code == 2 and "no such checkpoint" in err


def test_export_interpolate_mixes_the_runs_start_and_its_trained_weights(fake_cache, tmp_path, capsys):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from msgpp.cli import main
    from msgpp.enhance.weights_file import load_inference_file
    from msgpp.training.checkpoints import ValidationSongs, generator_state, load_checkpoint
    from tests.helpers.enhance import tiny_weights

    root, cache = fake_cache
    start = tiny_weights(tmp_path / "start", seed=7, sample_rate=8000)
    folder = tmp_path / "checkpoints"
    trainer = tiny_trainer(
        tmp_path,
        2,
        limit_val_batches=None,
        val_check_interval=2,
        enable_checkpointing=True,
        callbacks=[ModelCheckpoint(dirpath=folder, every_n_train_steps=4, save_last=True)],
    )
    trainer.fit(tiny_module(init_generator=str(start)), tiny_datamodule(root, cache))
    trainer.save_checkpoint(folder / "last.ckpt")

    assert main(["export", str(folder / "last.ckpt"), "--interpolate", "0.25", "--out", str(tmp_path / "out")]) == 0
    assert "0.75 x start + 0.25 x trained" in capsys.readouterr().err
    package = load_inference_file(next((tmp_path / "out").glob("*.pt")))
    trained = generator_state(load_checkpoint(folder / "last.ckpt"))
    started = load_inference_file(start)["state_dict"]
    expected = {key: 0.75 * started[key] + 0.25 * value for key, value in trained.items()}
    assert all(torch.allclose(package["state_dict"][key], value) for key, value in expected.items())
    assert not torch.allclose(package["state_dict"]["unet.encoder.0.0.weight"], trained["unet.encoder.0.0.weight"])
    assert package["training"]["interpolated"] == {"start": start.name, "alpha": 0.25}
    measured = ValidationSongs(folder / "last.ckpt").record(package["state_dict"], 2)
    assert package["training"]["validation"]["score"] == pytest.approx(measured["score"])

    # a weight outside (0, 1], or a start that is gone: one line, nothing written
    assert main(["export", str(folder), "--interpolate", "0", "--out", str(tmp_path / "zero")]) == 2
    assert "--interpolate must be the trained model's weight, in (0, 1], got 0.0" in capsys.readouterr().err
    start.rename(tmp_path / "moved.pt")
    assert main(["export", str(folder), "--interpolate", "0.5", "--out", str(tmp_path / "gone")]) == 2
    error = capsys.readouterr().err
    assert "are not there" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "zero").exists() and not (tmp_path / "gone").exists()


def test_export_refuses_to_calibrate_an_identity_start_generator_before_measuring(fake_cache, tmp_path, capsys):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from msgpp.cli import main
    from tests.helpers.training import TINY_GENERATOR

    root, cache = fake_cache
    folder = tmp_path / "checkpoints"
    trainer = tiny_trainer(
        tmp_path, 1, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=folder, save_last=True)]
    )
    trainer.fit(tiny_module(generator=dict(TINY_GENERATOR, residual=True)), tiny_datamodule(root, cache))
    argv = ["export", str(folder / "last.ckpt"), "--last", "--calibrate-level", "input", "--out", str(tmp_path / "o")]
    capsys.readouterr()  # what training printed
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "identity-start (residual) generator" in error
    assert len(error.strip().splitlines()) == 1  # no validation song was loaded or measured first
    assert not (tmp_path / "o").exists()
