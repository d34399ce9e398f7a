"""`msgpp evaluate` on a tiny synthetic setup: the table, its cache, the figures and the HTML report
(opened in a real headless Chromium)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from msgpp.audio import load_audio, save_audio
from msgpp.constants import SOURCES
from msgpp.evaluation.evaluate import EnhancerSpec, evaluate
from msgpp.evaluation.report import build_report
from msgpp.evaluation.results import ResultTable, load_frames
from msgpp.separators.cache import write_meta

RATE = 44100
TRACKS = ("Alpha Song", "Beta Song")


def _song(seed: int, seconds: float = 3.0) -> dict[str, np.ndarray]:
    """Four stereo stems with partials up to ~4 kHz, note onsets and a silent stretch."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    gate = (np.sin(2 * np.pi * 2.0 * t) > -0.2).astype(np.float32)  # notes with gaps
    stems = {}
    for index, source in enumerate(SOURCES):
        f0 = {"bass": 55.0, "drums": 180.0, "other": 220.0, "vocals": 330.0}[source] * (1 + 0.05 * seed)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, int(4000 / f0)))
        if source == "drums":
            tone = tone * np.exp(-((t * 4) % 1.0) * 12) + 0.3 * rng.standard_normal(t.size) * np.exp(-((t * 4) % 1.0) * 30)
        mono = (0.15 * tone * gate).astype(np.float32)
        mono[int(0.1 * t.size):int(0.2 * t.size)] = 0.0  # a silent stretch the metrics must ignore
        stems[source] = np.stack([mono, 0.9 * mono])
    return stems


def lowpass(audio: np.ndarray, sample_rate: int, cutoff: float) -> np.ndarray:
    sos = sps.butter(8, cutoff, fs=sample_rate, output="sos")
    return sps.sosfiltfilt(sos, audio, axis=-1).astype(np.float32)


def add_hf_noise(audio: np.ndarray, sample_rate: int, seed: int, level: float = 0.05) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(audio.shape)
    sos = sps.butter(4, 6000, btype="high", fs=sample_rate, output="sos")
    return (audio + level * sps.sosfilt(sos, noise, axis=-1) * (np.abs(audio) > 1e-6)).astype(np.float32)


def make_tiny_setup(base: Path) -> tuple[Path, Path]:
    """Ground truth + a cache with a 'waveform' separator (HF noise added) and a 'spectrogram' one
    (low-passed at 1.5 kHz)."""
    root, cache = base / "musdb", base / "cache"
    for number, track in enumerate(TRACKS):
        stems = _song(number)
        for source, audio in stems.items():
            save_audio(root / "test" / track / f"{source}.wav", audio, RATE, subtype="FLOAT")
        save_audio(root / "test" / track / "mixture.wav", sum(stems.values()), RATE, subtype="FLOAT")
        for separator, degrade in (
            ("demucs_v2", lambda a, s: add_hf_noise(a, RATE, seed=number * 10 + SOURCES.index(s))),
            ("openunmix", lambda a, s: lowpass(a, RATE, 1500)),
        ):
            folder = cache / separator / "abc123def456" / "test" / track
            for source, audio in stems.items():
                save_audio(folder / f"{source}.wav", degrade(audio, source), RATE, subtype="FLOAT")
            write_meta(folder, {"separator": separator, "sample_rate": RATE})
    return root, cache


def denoiser(source: str) -> EnhancerSpec:
    """A stand-in enhancer: a 5 kHz low-pass, which removes the 'waveform' separator's HF noise."""
    return EnhancerSpec(source=source, id=f"lowpass5k-{source}", name="lowpass 5 kHz",
                        load=lambda: (lambda audio, rate: lowpass(audio, rate, 5000)))


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


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


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

    browser = _chromium()
    assert browser, "chromium is not installed (make apt installs it)"
    profile = tmp_path / "chromium-profile"
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--mute-audio", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri(),
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
    from msgpp.enhance.weights_file import save_inference_file
    from msgpp.files import sha256_file
    from msgpp.models.generator import build_generator

    root, cache, _, _, _ = setup
    torch.manual_seed(0)
    generator = build_generator("small", channels=4, depth=3)
    weights = save_inference_file(tmp_path / "weights", "msg-bass", source="bass", sample_rate=16000,
                                  generator_config=generator.config, state_dict=generator.state_dict(),
                                  training={"separators": ["demucs_v2"]})
    out = tmp_path / "out"
    argv = ["evaluate", "--root", str(root), "--cache", str(cache), "--out", str(out), "--enhancers", f"bass={weights}",
            "--separators", "demucs_v2", "--sources", "bass", "--mono16k", "--no-report", "--quiet"]
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
