"""`msgpp evaluate` on a tiny synthetic setup: the table, its cache, the figures and the HTML report
(opened in a real headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from msgpp.audio import load_audio
from msgpp.evaluation.evaluate import EnhancerSpec, evaluate
from msgpp.evaluation.report import build_report
from msgpp.evaluation.results import ResultTable, load_frames
from tests.helpers.evaluation import TRACKS, chromium, lowpass, make_tiny_setup


def denoiser(source: str) -> EnhancerSpec:
    """A stand-in enhancer: a 5 kHz low-pass, which removes the 'waveform' separator's HF noise."""
    return EnhancerSpec(
        source=source,
        id=f"lowpass5k-{source}",
        name="lowpass 5 kHz",
        load=lambda: lambda audio, rate: lowpass(audio, rate, 5000),
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("evaluate")
    root, cache = make_tiny_setup(base)
    out = base / "report"
    enhancers = {"bass": denoiser("bass"), "vocals": denoiser("vocals")}
    run = evaluate(root, cache, out, enhancers=enhancers, progress=False)
    return root, cache, out, enhancers, run


def test_table_has_every_row(setup):
    _, _, out, _, run = setup
    table = ResultTable(out / "results.csv")
    # 2 tracks × 2 separators × (4 raw + 2 enhanced sources)
    assert len(table) == 2 * 2 * (4 + 2) == run.computed_rows
    assert {r["variant"] for r in table.select(source="drums")} == {"raw"}  # no drums enhancer: raw only
    assert all(np.isfinite(r["onset_f1"]) and np.isfinite(r["rolloff_cents"]) for r in table.rows.values())
    for row in table.rows.values():
        frames = load_frames(out / "frames", row)
        assert frames is not None and frames.size == row["rolloff_frames"]


def test_degradations_have_the_expected_signs(setup):
    _, _, out, _, _ = setup
    table = ResultTable(out / "results.csv")
    for row in table.select(variant="raw"):
        if row["separator"] == "demucs_v2":
            assert row["rolloff_cents"] > 20, row
        else:
            assert row["rolloff_cents"] < -200, row
    # the low-pass "enhancer" removes the waveform separator's noise: its error shrinks
    for track in TRACKS:
        raw = table.select(track=track, separator="demucs_v2", source="bass", variant="raw")[0]
        msg = table.select(track=track, separator="demucs_v2", source="bass", variant="msg")[0]
        assert abs(msg["rolloff_cents"]) < abs(raw["rolloff_cents"])
        assert msg["si_sdr"] > raw["si_sdr"]


def test_rerun_reuses_rows_and_a_new_enhancer_recomputes_only_its_rows(setup, tmp_path):
    root, cache, out, enhancers, _ = setup
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    again = evaluate(root, cache, copy, enhancers=enhancers, progress=False)
    assert again.computed_rows == 0 and again.reused_rows == 24
    changed = dict(enhancers, bass=EnhancerSpec("bass", "other-id", "x", enhancers["bass"].load))
    third = evaluate(root, cache, copy, enhancers=changed, progress=False)
    assert third.computed_rows == 2 * 2  # bass msg rows of 2 tracks × 2 separators
    assert (copy / "enhanced" / "other-id" / "demucs_v2").is_dir()


def test_evaluate_rejects_bad_input(tmp_path, setup):
    from msgpp.errors import MsgppError

    root, cache, _, _, _ = setup
    with pytest.raises(MsgppError, match="not found"):
        evaluate(tmp_path / "missing", cache, tmp_path / "o", progress=False)
    with pytest.raises(MsgppError, match="spleeter"):
        evaluate(root, cache, tmp_path / "o", separators=["spleeter"], progress=False)


def test_report_builds_and_opens_in_headless_chromium(setup, tmp_path):
    _, _, out, _, run = setup
    run_info = json.loads((out / "run.json").read_text())
    page = build_report(out, run.table, run_info, seed=0, excerpts=2)
    text = page.read_text()
    assert "Table 1" in text and "Fig. 4" in text and "Fig. 5" in text and "<audio" in text
    for name in ("onset_f1.png", "fig4_rolloff_abs.png", "fig5_rolloff_hist_bass.png", "si_sdr.png"):
        assert (out / "figures" / name).stat().st_size > 5000
    assert (out / "tables" / "table1_onset_f1.md").read_text().startswith("| source |")
    sign = (out / "tables" / "sign_check.csv").read_text()
    assert "demucs_v2,waveform,all,1" in sign and "agrees" in sign

    browser = chromium()
    assert browser, "chromium is not installed (make apt installs it)"
    profile = tmp_path / "chromium-profile"
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    check = re.search(r'id="page-check"[^>]*>', dom)
    assert check, dom[-2000:]
    attributes = dict(re.findall(r'data-([a-z-]+)="(\d+)"', check.group(0)))
    assert int(attributes["images-total"]) >= 6
    assert attributes["images-loaded"] == attributes["images-total"]  # every figure file loaded
    assert int(attributes["audio-total"]) >= 4 and attributes["audio-errors"] == "0"
    assert attributes["audio-ready"] == attributes["audio-total"]  # every player could read its wav


def test_evaluate_command_with_a_real_enhancer_file(setup, tmp_path):
    """The CLI path: an inference file (a tiny untrained generator) enhances, is keyed by its hash."""
    import torch

    from msgpp.cli import main
    from msgpp.files import sha256_file
    from msgpp.models.generator import build_generator
    from tests.helpers.enhance import save_generator

    root, cache, _, _, _ = setup
    torch.manual_seed(0)
    generator = build_generator("small", channels=4, depth=3)
    weights = save_generator(tmp_path / "weights", generator, training={"separators": ["demucs_v2"]})
    out = tmp_path / "out"
    argv = [
        "evaluate",
        "--root",
        str(root),
        "--cache",
        str(cache),
        "--out",
        str(out),
        "--enhancers",
        f"bass={weights}",
        "--separators",
        "demucs_v2",
        "--sources",
        "bass",
        "--mono16k",
        "--no-report",
        "--quiet",
    ]
    assert main(argv) == 0
    table = ResultTable(out / "results.csv")
    enhancer_id = sha256_file(weights)[:12] + "-m16k"  # 16-kHz-mono enhancement is keyed apart
    assert len(table) == 2 * 2 and {r["enhancer_id"] for r in table.select(variant="msg")} == {enhancer_id}
    enhanced = sorted((out / "enhanced" / enhancer_id).rglob("bass.wav"))
    assert len(enhanced) == 2
    audio, rate = load_audio(enhanced[0])
    assert rate == 16000 and audio.shape[0] == 1
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["enhancers"]["bass"]["training_separators"] == ["demucs_v2"]  # the report marks others "unseen"
    assert main(argv + ["--enhancers", "bass=no/such/file.pt"]) == 2  # a user error: one line, status 2


@pytest.mark.slow
def test_museval_columns_are_filled_on_request(setup, tmp_path):
    root, cache, out, enhancers, _ = setup
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    run = evaluate(root, cache, copy, enhancers=enhancers, separators=["openunmix"], museval=True, progress=False)
    assert run.computed_rows == 2 * (4 + 2)  # rows existed but lacked SDR: only museval ran again
    rows = run.table.select(separator="openunmix")
    assert all(np.isfinite(r["sdr"]) and np.isfinite(r["sar"]) for r in rows)
    clean = run.table.select(separator="openunmix", source="bass", variant="raw")[0]
    assert clean["sdr"] > 0
