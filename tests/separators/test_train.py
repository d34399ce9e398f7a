"""`msgpp separators train NAME`: one command for every family, its old spellings, its options."""

from __future__ import annotations

import inspect
import json

import pytest

from msgpp.cli import main
from msgpp.separators.registry import BUILTIN, separator_class


@pytest.fixture
def recorded(monkeypatch):
    """Each family's recipe replaced by one that records its arguments (same signature)."""
    from importlib import import_module

    calls = []
    for trainer in {separator_class(name).trainer for name in BUILTIN}:  # demucs and openunmix share one
        module_name, _, function_name = trainer.partition(":")
        module = import_module(module_name)
        recipe = getattr(module, function_name)

        def fake(*args, _recipe=recipe, **kwargs):
            bound = inspect.signature(_recipe).bind(*args, **kwargs)
            calls.append((_recipe.__name__, dict(bound.arguments)))
            return {"weights": "w", "weights_id": "id", "training": {}, "scores": {}}

        fake.__signature__ = inspect.signature(recipe)
        monkeypatch.setattr(module, function_name, fake)
    return calls


def test_every_builtin_separator_names_a_recipe():
    for name in BUILTIN:
        assert separator_class(name).trainer, name


@pytest.mark.parametrize(
    "argv, recipe, expected",
    [
        (
            ["separators", "train", "demucs_v2", "--arch", '{"channels": 4}'],
            "train_small_architecture",
            {"name": "demucs_v2", "arch": {"channels": 4}},
        ),
        (
            ["separators", "train", "wavenet", "--preset", "small", "--steps", "5"],
            "train_wavenet",
            {"preset": "small", "steps": 5},
        ),
        (["separators", "train", "spleeter", "--songs", "2", "--seed", "4"], "train_spleeter", {"songs": 2, "seed": 4}),
        (["wavenet-train", "--segment", "0.25"], "train_wavenet", {"segment_seconds": 0.25}),
        (["spleeter", "train", "--max-minutes", "1"], "train_spleeter", {"max_minutes": 1.0}),
    ],
)
def test_options_given_reach_the_recipe_and_the_rest_keep_its_defaults(
    recorded, tmp_path, capsys, argv, recipe, expected
):
    assert main(argv + ["--root", str(tmp_path), "--out", str(tmp_path / "w")]) == 0
    ((called, arguments),) = recorded
    assert called == recipe
    # Only what was given (and the shared root, out, threads) is passed: the recipe's own defaults hold.
    assert arguments == {"root": tmp_path, "out": tmp_path / "w", "threads": 1, **expected}
    assert json.loads(capsys.readouterr().out)["weights_id"] == "id"


@pytest.mark.parametrize("old, name", [(["wavenet-train"], "wavenet"), (["spleeter", "train"], "spleeter")])
def test_old_spellings_say_the_new_one_in_one_line(recorded, tmp_path, capsys, old, name):
    assert main(old + ["--root", str(tmp_path)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"msgpp separators train {name}" in err[0] and " ".join(old) in err[0]


def test_new_spelling_says_nothing_about_aliases(recorded, tmp_path, capsys):
    assert main(["separators", "train", "openunmix", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["separators", "train", "openunmix", "--songs", "3"], "--songs: not an option for openunmix"),
        (
            ["separators", "train", "spleeter", "--arch", "{}", "--lr", "0.1"],
            "--lr, --arch: not an option for spleeter",
        ),
        (["wavenet-train", "--arch", "{}"], "--arch: not an option for wavenet"),
        (["separators", "train", "demucs_v2", "--arch", "[1]"], "--arch '[1]': expected a JSON object"),
        (["separators", "train", "nope"], "unknown separator 'nope'"),
    ],
)
def test_options_a_family_has_no_use_for_are_one_line_errors(recorded, tmp_path, capsys, argv, message):
    assert main(argv + ["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("msgpp: error:") and message in err[-1], err
    assert not recorded


@pytest.mark.pipeline
def test_the_new_spelling_trains_wavenet_end_to_end(tiny_root, tmp_path, capsys):
    out = tmp_path / "wavenet"
    argv = [
        "separators",
        "train",
        "wavenet",
        "--root",
        str(tiny_root),
        "--out",
        str(out),
        "--steps",
        "2",
        "--max-minutes",
        "0",
        "--batch-size",
        "2",
        "--segment",
        "0.3",
        "--score-tracks",
        "1",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out  # Lightning's progress bar, then the result
    result = json.loads(printed[printed.index('{\n  "weights"') :])
    assert result["training"]["steps"] == 2 and result["training"]["preset"] == "small"
    assert "Command: `msgpp separators train wavenet " in (out / "MODEL_CARD.md").read_text()
