"""MSG training: salient windows, the DataModule, the LightningModule, resume, export, logging.

Runs on a tiny synthetic estimate cache (tones with gaps; "separators" that low-pass or add
noise), written in the real cache layout with meta.json, and tiny models: tests.helpers.training.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from msgpp.errors import MsgppError
from msgpp.training.windows import WindowIndex, salient_starts
from tests.helpers import FIXTURES, REPO
from tests.helpers.training import (
    TINY_DISCRIMINATORS,
    TINY_GENERATOR,
    TRACKS,
    tiny_datamodule,
    tiny_module,
    tiny_trainer,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LossRecorder:
    """A callback that keeps every batch's logged losses."""

    def __new__(cls):
        import lightning as L

        class _Recorder(L.Callback):
            def __init__(self):
                self.rows = []

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                metrics = trainer.callback_metrics
                self.rows.append(
                    {k: float(metrics[k]) for k in ("train/d_loss", "train/g_loss", "train/reconstruction")}
                )

        return _Recorder()


# -- windows --------------------------------------------------------------------------------------


def test_salient_starts_skip_silence_and_follow_threshold():
    window, hop = 100, 50
    signal = np.zeros(1000, dtype=np.float32)
    signal[300:600] = 0.1  # -20 dBFS
    starts = salient_starts(signal, window, hop, threshold_db=-60)
    assert all(np.mean(signal[s : s + window] ** 2) > 1e-6 for s in starts)
    assert list(starts) == [250, 300, 350, 400, 450, 500, 550]
    assert salient_starts(signal, window, hop, threshold_db=-10).size == 0  # -20 dB is below -10
    assert salient_starts(signal[:50], window, hop).size == 0  # shorter than one window


def test_window_index_numbers_tracks():
    a, b = np.ones(400, dtype=np.float32), np.zeros(400, dtype=np.float32)
    b[200:] = 0.5
    index = WindowIndex.build([a, b], window=100, hop=100)
    assert len(index) == 4 + 2
    assert list(index.tracks) == [0, 0, 0, 0, 1, 1]
    assert list(index.starts[index.tracks == 1]) == [200, 300]


# -- data module ----------------------------------------------------------------------------------


def test_datamodule_split_stream_and_swaps(fake_cache):
    root, cache = fake_cache
    datamodule = tiny_datamodule(root, cache, swap_probability=0.5)
    datamodule.setup("fit")
    stream = datamodule.train_set
    assert stream.data.tracks and datamodule.val_set is not None
    assert set(stream.data.tracks).isdisjoint(datamodule.val_set.data.tracks)  # split by track
    assert len(stream.data.tracks) + len(datamodule.val_set.data.tracks) == len(TRACKS)
    assert "unseen" not in stream.separators and datamodule.val_separators == ["sepa", "sepb", "unseen"]
    # silence (1.6–2.6 s) never starts a window; all windows in range
    starts = stream.index.starts / 8000
    assert not np.any((starts >= 1.6) & (starts + 0.5 <= 2.6))
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["estimate"].shape == batch["target"].shape == (4, 1, 4000)
    # the estimate is peak-normalised, the target carries the same gain
    assert torch.allclose(batch["estimate"].abs().amax(-1), torch.ones(4, 1), atol=1e-5)
    # swapped examples are the ground truth; others are not
    swapped = [datamodule.train_set.example(p)["swapped"].item() for p in range(200)]
    assert 0.3 < np.mean(swapped) < 0.7
    for p in range(20):
        example = datamodule.train_set.example(p)
        same = torch.equal(example["estimate"], example["target"])
        assert same == bool(example["swapped"])


def test_stream_is_seeded_and_position_addressed(fake_cache):
    root, cache = fake_cache
    first, second, other = (tiny_datamodule(root, cache, seed=s) for s in (3, 3, 4))
    for datamodule in (first, second, other):
        datamodule.setup("fit")
    a = [first.train_set.example(p)["estimate"] for p in range(12)]
    b = [second.train_set.example(p)["estimate"] for p in range(12)]
    c = [other.train_set.example(p)["estimate"] for p in range(12)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    # starting the stream at batch 2 yields exactly batches 2.. of a stream started at 0
    stream = first.train_set
    stream.start_batch = 0
    whole = torch.stack([e["estimate"] for e in stream])
    stream.start_batch = 2
    later = torch.stack([e["estimate"] for e in stream])
    assert torch.equal(later[: len(later) - 2 * stream.batch_size], whole[2 * stream.batch_size :])
    # two workers give the same batches in the same order
    loader = first.train_dataloader()
    first.num_workers = 2
    parallel = first.train_dataloader()
    assert all(torch.equal(x["estimate"], y["estimate"]) for x, y in zip(loader, parallel, strict=True))


def test_datamodule_errors_name_the_problem(fake_cache, tmp_path):
    root, cache = fake_cache
    with pytest.raises(MsgppError, match="both trained on and held out"):
        tiny_datamodule(root, cache, separators=["sepa", "unseen"], held_out=["unseen"])
    with pytest.raises(MsgppError, match="unknown source"):
        tiny_datamodule(root, cache, source="kazoo")
    with pytest.raises(MsgppError, match="no cached estimates for separator 'nope'"):
        tiny_datamodule(root, cache, separators=["nope"]).setup("fit")
    with pytest.raises(MsgppError, match=str(tmp_path / "missing")):
        tiny_datamodule(tmp_path / "missing", cache).setup("fit")


# -- module ---------------------------------------------------------------------------------------


def test_training_reduces_reconstruction_and_counts_steps(fake_cache, tmp_path):
    import lightning as L

    root, cache = fake_cache
    L.seed_everything(0)
    module, recorder = tiny_module(balance_steps=1000, lr=3e-3), LossRecorder()
    datamodule = tiny_datamodule(root, cache, batch_size=8)
    trainer = tiny_trainer(tmp_path, max_batches=20, callbacks=[recorder])
    trainer.fit(module, datamodule)
    assert trainer.global_step == 40 and module.batches_done == 20  # two optimiser steps per batch
    reconstruction = [row["train/reconstruction"] for row in recorder.rows]
    assert len(reconstruction) == 20
    assert np.mean(reconstruction[-5:]) < 0.9 * np.mean(reconstruction[:5])


def test_balancer_freezes_at_configured_step_and_lives_in_checkpoint(fake_cache, tmp_path):
    root, cache = fake_cache
    module = tiny_module(balance_steps=3)
    datamodule = tiny_datamodule(root, cache)
    trainer = tiny_trainer(tmp_path, max_batches=3)
    trainer.fit(module, datamodule)
    frozen = module.balancer.weights
    assert module.balancer.frozen and int(module.balancer.steps) == 3
    assert frozen != {name: 1 / 3 for name in frozen}
    trainer = tiny_trainer(tmp_path, max_batches=6)
    trainer.fit(module, datamodule)
    assert module.balancer.weights == frozen and int(module.balancer.steps) == 3
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    checkpoint = torch.load(tmp_path / "run.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["msgpp"]["loss_weights"] == pytest.approx(frozen)
    restored = tiny_module(balance_steps=3)
    restored.load_state_dict(checkpoint["state_dict"])
    assert restored.balancer.weights == frozen and restored.balancer.frozen


def test_resume_after_kill_continues_identically(fake_cache, tmp_path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    root, cache = fake_cache

    class Kill(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if pl_module.batches_done == 4:
                raise RuntimeError("killed")

    def run(folder, batches, callbacks, ckpt_path=None):
        L.seed_everything(0)
        recorder = LossRecorder()
        trainer = tiny_trainer(folder, batches, callbacks=[recorder, *callbacks], enable_checkpointing=True)
        # batches_per_epoch 5 (20 examples / 4): the kill lands mid-epoch 0 and the run crosses an epoch
        trainer.fit(tiny_module(), tiny_datamodule(root, cache, examples_per_epoch=20), ckpt_path=ckpt_path)
        return recorder.rows

    reference = run(tmp_path / "a", 7, [])
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "b", save_last=True, every_n_train_steps=2)
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "b", 7, [checkpoints, Kill()])
    resumed = run(
        tmp_path / "b",
        7,
        [ModelCheckpoint(dirpath=tmp_path / "b", save_last=True)],
        ckpt_path=str(tmp_path / "b" / "last.ckpt"),
    )
    assert len(resumed) == 3
    for expected, actual in zip(reference[4:], resumed, strict=True):
        assert actual == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_resume_takes_the_configured_learning_rate(fake_cache, tmp_path):
    """The optimizer state restored by --ckpt_path carries the old rate; model.lr replaces it."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    root, cache = fake_cache

    class Rates(L.Callback):
        seen: list = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.seen.append([group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups])

    trainer = tiny_trainer(
        tmp_path, 2, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)]
    )
    trainer.fit(tiny_module(lr=1e-3), tiny_datamodule(root, cache))
    rates = Rates()
    trainer = tiny_trainer(tmp_path, 4, callbacks=[rates])
    trainer.fit(tiny_module(lr=2.5e-4), tiny_datamodule(root, cache), ckpt_path=str(tmp_path / "last.ckpt"))
    assert len(rates.seen) == 2 and all(lrs == [2.5e-4, 2.5e-4] for lrs in rates.seen)


def test_cosine_schedule_follows_the_batch_count_and_survives_a_resume(fake_cache, tmp_path):
    import lightning as L

    root, cache = fake_cache
    lr, total = 1e-3, 6

    class RecordRates(L.Callback):
        def __init__(self, stop_after: int | None = None):
            self.rates, self.stop_after = [], stop_after

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])
            if module.batches_done == self.stop_after:
                trainer.should_stop = True  # a kill after this batch's checkpoint

    expected = [lr * 0.5 * (1 + math.cos(math.pi * batch / total)) for batch in range(total)]
    whole = RecordRates()
    tiny_trainer(tmp_path / "whole", total, callbacks=[whole]).fit(
        tiny_module(lr=lr, lr_schedule="cosine"), tiny_datamodule(root, cache)
    )
    assert whole.rates == pytest.approx(expected)
    first, second = RecordRates(stop_after=3), RecordRates()
    killed = tiny_trainer(tmp_path / "a", total, callbacks=[first])
    killed.fit(tiny_module(lr=lr, lr_schedule="cosine"), tiny_datamodule(root, cache))
    killed.save_checkpoint(tmp_path / "a.ckpt")
    tiny_trainer(tmp_path / "b", total, callbacks=[second]).fit(
        tiny_module(lr=lr, lr_schedule="cosine"), tiny_datamodule(root, cache), ckpt_path=str(tmp_path / "a.ckpt")
    )
    assert first.rates + second.rates == pytest.approx(expected)
    with pytest.raises(MsgppError, match="model.lr_schedule must be one of constant, cosine"):
        tiny_module(lr_schedule="step")


def test_onset_loss_is_a_fourth_balanced_term(fake_cache, tmp_path):
    root, cache = fake_cache
    module = tiny_module(onset_loss=True)
    tiny_trainer(tmp_path, 4).fit(module, tiny_datamodule(root, cache))
    weights = module.balancer.weights
    assert set(weights) == {"adversarial", "feature_matching", "reconstruction", "onset"}
    assert sum(weights.values()) == pytest.approx(1.0) and weights["onset"] > 0
    assert set(tiny_module().balancer.weights) == {"adversarial", "feature_matching", "reconstruction"}


def test_validation_logs_per_separator_metrics_and_csv_media(fake_cache, tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    from msgpp.training.callbacks import ValidationMediaLogger

    root, cache = fake_cache
    module = tiny_module()
    trainer = tiny_trainer(
        tmp_path,
        2,
        limit_val_batches=None,
        val_check_interval=2,
        logger=CSVLogger(tmp_path, name="csv"),
        callbacks=[ValidationMediaLogger(clips=2)],
    )
    trainer.fit(module, tiny_datamodule(root, cache))
    assert [row["separator"] for row in module.val_table] == ["sepa", "sepb", "unseen"]
    for row in module.val_table:
        assert row["mrstft_raw"] > 0 and math.isclose(row["change"], row["mrstft_enhanced"] - row["mrstft_raw"])
    media = Path(trainer.logger.log_dir) / "media" / "step-4"
    assert sorted(p.name for p in media.iterdir()) == sorted(
        [f"clip{n}-{kind}.wav" for n in (0, 1) for kind in ("input", "enhanced", "target")]
        + ["clip0-spectrogram.png", "clip1-spectrogram.png", "metrics_table.csv"]
    )


def test_export_writes_an_inference_file_the_generator_loads(fake_cache, tmp_path):
    from msgpp.enhance.weights_file import load_inference_file
    from msgpp.models.generator import Generator
    from msgpp.training.checkpoints import export_checkpoint

    root, cache = fake_cache
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, 4)
    trainer.fit(module, tiny_datamodule(root, cache))
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    path = export_checkpoint(tmp_path / "run.ckpt", tmp_path / "out")
    assert path.name.startswith("msg-vocals-") and path.suffix == ".pt"
    package = load_inference_file(path)
    assert package["source"] == "vocals" and package["sample_rate"] == 8000
    assert package["loss_weights"] == pytest.approx(module.balancer.weights)
    assert package["training"]["separators"] == ["sepa", "sepb"] and package["training"]["batches"] == 4
    generator = Generator(**package["generator_config"])
    generator.load_state_dict(package["state_dict"])
    audio = torch.randn(1, 1, 4000)
    with torch.no_grad():
        assert torch.allclose(generator(audio), module.generator.eval()(audio), atol=1e-6)
    assert os.path.getsize(path) < 2 * sum(p.numel() * 4 for p in generator.parameters()) + 100_000
    from msgpp.evaluation.mrstft_distance import markdown_table, measure_mrstft

    rows = measure_mrstft(str(path), str(root), str(cache), ["sepa", "unseen"], progress=False)
    assert [(row["separator"], row["songs"]) for row in rows] == [("sepa", 1), ("unseen", 1)]
    for row in rows:
        assert row["mrstft_raw"] > 0 and row["mrstft_enhanced"] > 0
        assert row["change_percent"] == pytest.approx(100 * (row["mrstft_enhanced"] / row["mrstft_raw"] - 1))
    assert "| vocals | unseen | 1 |" in markdown_table(rows)
    with pytest.raises(MsgppError, match="not a checkpoint written by `msgpp train`"):
        torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
        export_checkpoint(tmp_path / "other.ckpt", tmp_path / "out")


def test_init_generator_starts_from_an_exported_file_and_refuses_another_architecture(tmp_path):
    from msgpp.enhance.weights_file import load_inference_file
    from msgpp.models.generator import Generator
    from tests.helpers.enhance import tiny_weights

    path = tiny_weights(tmp_path, seed=7, sample_rate=8000)
    package = load_inference_file(path)
    donor = Generator(**package["generator_config"])
    donor.load_state_dict(package["state_dict"])
    fresh, started = tiny_module(), tiny_module(init_generator=str(path))
    audio = torch.randn(1, 1, 4000)
    with torch.no_grad():
        assert torch.equal(started.generator.eval()(audio), donor.eval()(audio))
        assert not torch.allclose(fresh.generator.eval()(audio), donor(audio))
    with pytest.raises(MsgppError, match=r"init_generator .*differs from model.generator \(channels: file 4, run 8"):
        tiny_module(generator=dict(TINY_GENERATOR, channels=8), init_generator=str(path))


# -- the command line (subprocesses: LightningCLI, W&B offline, DDP) -----------------------------


def _write_config(folder: Path, root: Path, cache: Path, **trainer) -> Path:
    settings = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": 4,
        "precision": "32-true",
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(folder / "run"),
        "log_every_n_steps": 1,
        **trainer,
    }
    config = {
        "seed_everything": 0,
        "trainer": settings,
        "model": {"generator": TINY_GENERATOR, "discriminators": TINY_DISCRIMINATORS, "balance_steps": 2},
        "data": {
            "root": str(root),
            "cache": str(cache),
            "source": "vocals",
            "separators": ["sepa", "sepb"],
            "held_out": ["unseen"],
            "sample_rate": 8000,
            "window_seconds": 0.5,
            "hop_seconds": 0.25,
            "batch_size": 2,
            "val_fraction": 0.25,
            "val_windows_per_track": 1,
            "seed": 1,
        },
    }
    path = folder / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _msgpp(*args, env=None, cwd=None):
    environment = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "msgpp.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow  # two subprocesses and a W&B offline run: ~1 min on a busy 2-core machine
@pytest.mark.pipeline
def test_msgpp_train_with_wandb_offline_logs_audio_then_export(fake_cache, tmp_path):
    root, cache = fake_cache
    config = _write_config(
        tmp_path,
        root,
        cache,
        limit_val_batches=2,
        val_check_interval=2,
        callbacks=[
            {"class_path": "msgpp.training.callbacks.ValidationMediaLogger", "init_args": {"clips": 1}},
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"save_last": True, "dirpath": str(tmp_path / "run" / "checkpoints")},
            },
        ],
    )
    env = {"WANDB_API_KEY": "", "WANDB_MODE": "", "NETRC": str(tmp_path / "no-netrc"), "HOME": str(tmp_path)}
    result = _msgpp("train", "--config", str(config), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, result.stderr[-2000:]
    audio = sorted(p.name for p in (runs[0] / "files" / "media" / "audio").rglob("*.wav"))
    assert len(audio) == 3 and any("clip0" in name for name in audio)
    assert list((runs[0] / "files" / "media" / "images").rglob("*.png"))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    exported = _msgpp("export", str(checkpoint), "--out", str(tmp_path / "weights"))
    assert exported.returncode == 0, exported.stderr
    assert Path(exported.stdout.strip()).is_file()
    missing = _msgpp("export", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "weights"))
    assert missing.returncode == 2 and "nope.ckpt: no such checkpoint" in missing.stderr


@pytest.mark.slow  # two DDP processes: ~1 min on a busy 2-core machine
@pytest.mark.pipeline
def test_ddp_two_cpu_processes_agree(fake_cache, tmp_path):
    root, cache = fake_cache
    script = tmp_path / "ddp_run.py"
    script.write_text(
        textwrap.dedent(f"""
        import torch
        import lightning as L
        from tests.helpers.training import tiny_module, tiny_datamodule
        from pathlib import Path
        L.seed_everything(0)
        module = tiny_module(balance_steps=2)
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_find_unused_parameters_true",
                            max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        datamodule = tiny_datamodule(Path({str(root)!r}), Path({str(cache)!r}), batch_size=2)
        trainer.fit(module, datamodule)
        first = datamodule.train_set.example(datamodule.train_set.position(0, 0))["estimate"]
        torch.save({{"state": module.state_dict(), "world": trainer.world_size, "first": first,
                    "steps": trainer.global_step}}, {str(tmp_path)!r} + f"/rank{{trainer.global_rank}}.pt")
    """)
    )
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # for tests.helpers
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world"] == 2 and ranks[0]["steps"] == ranks[1]["steps"] == 6
    assert not torch.equal(ranks[0]["first"], ranks[1]["first"])  # each rank read its own slice
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key  # weights, balancer, autoclip agree
    assert int(ranks[0]["state"]["balancer.steps"]) == 2


CONFIGS = REPO / "configs"
SOURCES = ("bass", "drums", "other", "vocals")


def composed(preset: str, source: str) -> list[str]:
    """`make train PRESET=preset SOURCE=source`'s arguments: the base, the preset, the source."""
    return [
        "--config",
        str(CONFIGS / "base.yaml"),
        "--config",
        str(CONFIGS / f"{preset}.yaml"),
        "--config",
        str(CONFIGS / preset / f"{source}.yaml"),
    ]


def printed_config(args: list[str], capsys) -> dict:
    """The configuration `msgpp train ARGS` runs with: parsed and validated by its own parser
    (--print_config), with the run folders filled in as before training."""
    import yaml

    from msgpp.training.cli import build_cli, fill_run_folders

    capsys.readouterr()
    assert build_cli([*args, "--print_config"]) is None  # parsed, validated, printed
    config = yaml.safe_load(capsys.readouterr().out)
    fill_run_folders(config)
    return config


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_shipped_configs_parse_for_every_source(preset, capsys):
    from msgpp.training.cli import build_cli

    for source in SOURCES:
        printed = printed_config(composed(preset, source), capsys)
        assert printed["data"]["source"] == source and "source" not in printed["model"]  # linked from data
        generator = printed["model"]["generator"]  # a preset name, or a preset with overrides
        assert (generator if isinstance(generator, str) else generator["preset"]) == preset
        assert printed["model"]["discriminators"] == preset
        assert "hdemucs_v3" in printed["data"]["held_out"] and "hdemucs_v3" not in printed["data"]["separators"]
        # the paper's four training separators (hdemucs_v3, newer, is the unseen one)
        assert sorted(printed["data"]["separators"]) == ["demucs_v2", "openunmix", "spleeter", "wavenet"]
        # the run folder layout docs/training.md and `msgpp export runs/<preset>/<source>` rely on
        assert printed["trainer"]["default_root_dir"] == f"runs/{preset}/{source}"
        dirpaths = {
            c["init_args"]["dirpath"] for c in printed["trainer"]["callbacks"] if "dirpath" in c.get("init_args", {})
        }
        assert dirpaths == {f"runs/{preset}/{source}/checkpoints"}
    with pytest.raises(MsgppError, match="model.lr.*Expected a .*float.*Got value: fast") as refused:
        build_cli([*composed(preset, "bass"), "--model.lr", "fast"])
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("source", ["bass", "drums", "other"])
def test_the_stage_two_configs_start_from_the_stage_one_file_in_their_own_folder(source, capsys):
    from msgpp.training.module import MSGModule

    run = f"runs/small/{source}-onset"
    printed = printed_config(["--config", f"configs/small/{source}-onset.yaml"], capsys)  # composed with its bases
    assert printed["data"]["source"] == source and printed["model"]["onset_loss"] is True
    assert printed["trainer"]["default_root_dir"] == run
    dirpaths = {
        c["init_args"]["dirpath"] for c in printed["trainer"]["callbacks"] if "dirpath" in c.get("init_args", {})
    }
    assert dirpaths == {f"{run}/checkpoints"}  # stage 1's runs/small/<source> stays apart
    assert sorted(printed["data"]["separators"]) == ["demucs_v2", "openunmix", "spleeter", "wavenet"]
    # the stage-1 file exists, verifies and fits the configured generator (the constructor loads it)
    model = {key: printed["model"][key] for key in ("generator", "init_generator", "onset_loss", "lr", "lr_schedule")}
    module = MSGModule(source=source, discriminators="small", **model)
    assert module.onset is not None and module.terms[-1] == "onset"
    assert printed["model"]["init_generator"].startswith("weights/")  # not a shipped file that a new one replaces


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_composed_configs_equal_the_per_source_files_they_replace(preset, capsys):
    """configs/base.yaml + configs/<preset>.yaml + configs/<preset>/<source>.yaml give every source
    exactly the values of its complete file before the configs were composed (kept in tests/fixtures;
    comments aside). A change to a shipped config on purpose updates those files with it."""
    before = FIXTURES / "configs_before_composition" / preset
    for source in SOURCES:
        expected = printed_config(["--config", str(before / f"{source}.yaml")], capsys)
        assert printed_config(composed(preset, source), capsys) == expected, source


def test_the_run_folders_are_filled_in_before_training(tmp_path, monkeypatch):
    """The trainer, its checkpoints and the config.yaml it saves name runs/<preset>/<source>."""
    from msgpp.training.cli import build_cli

    monkeypatch.chdir(tmp_path)  # the run folders are relative: nothing lands in the checkout
    cli = build_cli([*composed("small", "bass"), "--logger_backend", "none"])
    assert cli.config.trainer.default_root_dir == "runs/small/bass"  # what SaveConfigCallback writes
    assert Path(cli.trainer.default_root_dir) == Path("runs/small/bass")
    assert {Path(c.dirpath) for c in cli.trainer.checkpoint_callbacks} == {
        tmp_path.resolve() / "runs/small/bass/checkpoints"
    }
    # the checkpoints follow a run folder moved on the command line ({run} in the preset)
    moved = build_cli(
        [*composed("small", "bass"), "--logger_backend", "none", "--trainer.default_root_dir", "elsewhere"]
    )
    assert {Path(c.dirpath) for c in moved.trainer.checkpoint_callbacks} == {
        tmp_path.resolve() / "elsewhere/checkpoints"
    }
    assert not (tmp_path / "runs").exists() and not (tmp_path / "elsewhere").exists()


def test_a_source_file_alone_brings_its_base_and_preset(capsys, monkeypatch):
    """`--config configs/small/bass.yaml` alone (the spelling before the configs were composed)
    means base + preset + it, not the source's few lines on Lightning's defaults; a partial or
    misordered composition is one line naming the full command."""
    from msgpp.training.cli import build_cli

    monkeypatch.chdir(CONFIGS.parent)
    full = printed_config(composed("small", "bass"), capsys)
    assert printed_config(["--config", "configs/small/bass.yaml"], capsys) == full
    # a preset and a source without the base: the base goes first
    assert printed_config(
        ["--config", "configs/paper.yaml", "--config", "configs/paper/drums.yaml"], capsys
    ) == printed_config(composed("paper", "drums"), capsys)
    with pytest.raises(MsgppError) as refused:  # the wrong order
        build_cli(
            ["--config", "configs/base.yaml", "--config", "configs/small/bass.yaml", "--config", "configs/small.yaml"]
        )
    message = str(refused.value)
    assert "\n" not in message
    assert "--config configs/base.yaml --config configs/small.yaml --config configs/small/bass.yaml" in message
