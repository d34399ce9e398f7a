"""The embedded benchmark: layout, exact mixtures, reproducibility, manifest, resume, refusals."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from msgpp.cli import main
from msgpp.constants import SOURCES, STEMS
from msgpp.data.benchmark import (
    BENCHMARK_PRESETS,
    MANIFEST,
    Preset,
    generate_benchmark,
    read_manifest,
    verify_benchmark,
)
from msgpp.data.plan import make_song_plan
from msgpp.errors import MsgppError


def _tracks(root):
    return sorted(p for subset in ("train", "test") for p in (root / subset).iterdir())


def _sha(root):
    return read_manifest(root)["files"]


def test_layout_format_and_manifest(tiny_root):
    tiny = BENCHMARK_PRESETS["tiny"]
    assert [p.name for p in sorted((tiny_root / "train").iterdir())] == ["train-000", "train-001"]
    assert len(list((tiny_root / "test").iterdir())) == tiny.test
    for track in _tracks(tiny_root):
        assert sorted(p.name for p in track.iterdir()) == sorted(f"{s}.wav" for s in STEMS)
        for stem in STEMS:
            with wave.open(str(track / f"{stem}.wav")) as reader:
                assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (2, 2, 44100)
                assert reader.getnframes() == int(tiny.seconds * 44100)
    manifest = read_manifest(tiny_root)
    assert manifest["seed"] == 0 and manifest["preset"] == "tiny"
    assert manifest["soundfont"]["name"].endswith((".sf2", ".sf3")) and len(manifest["soundfont"]["sha256"]) == 64
    assert {"msgpp", "numpy", "libfluidsynth"} <= set(manifest["versions"])
    assert len(manifest["files"]) == (tiny.train + tiny.test) * len(STEMS)
    assert not (tiny_root / ".progress.json").exists()


def _samples(path: Path) -> np.ndarray:
    """A PCM_16 file's integer samples (exact sums, no float rounding)."""
    return sf.read(str(path), dtype="int16")[0].astype(np.int64)


def test_mixture_is_exactly_the_sum_of_the_stem_files(tiny_root):
    for track in _tracks(tiny_root):
        mixture = _samples(track / "mixture.wav")
        assert np.array_equal(mixture, sum(_samples(track / f"{s}.wav") for s in SOURCES)), track.name
        assert 0 < np.abs(mixture).max() < 32767  # loud enough, never at full scale (no clipping)


def test_stems_play_where_the_plan_says(tiny_root):
    """Each stem is clearly audible inside its plan's note spans and silent before its first note."""
    for track in _tracks(tiny_root):
        subset, index = track.parent.name, int(track.name.split("-")[1])
        plan = make_song_plan(0, subset, index, BENCHMARK_PRESETS["tiny"].seconds)
        for source in SOURCES:
            audio = sf.read(str(track / f"{source}.wav"), dtype="float32")[0]
            spans = plan.stems[source].active_spans()
            assert spans, (track.name, source)
            inside = np.concatenate([audio[int(a * 44100) : int(b * 44100)] for a, b in spans])
            assert np.sqrt(np.mean(inside**2)) > 10 ** (-40 / 20), (track.name, source)
            first = int(spans[0][0] * 44100) - 2 * 64
            if first > 4410:
                assert np.abs(audio[:first]).max() <= 2 / 32768, (track.name, source)


def test_vocal_phrase_gaps_are_silent():
    """Rendered with the benchmark's own renderer: between phrases, once the release and reverb
    tail have died away, the vocal stem is digital silence; the phrases themselves are loud."""
    from msgpp.data.render import Renderer, default_soundfont

    plan = make_song_plan(0, "train", 2, 20.0)
    renderer = Renderer(default_soundfont())
    try:
        vocals = renderer.render_stem(plan.stems["vocals"], plan.duration)
    finally:
        renderer.close()
    spans = plan.stems["vocals"].active_spans()
    sung = np.concatenate([vocals[:, int(a * 44100) : int(b * 44100)] for a, b in spans], axis=1)
    assert np.sqrt(np.mean(sung**2)) > 1e-3
    gaps = [g for g in plan.vocal_gaps() if g[0] > 0]
    assert gaps and all(end - start > 0.5 for start, end in gaps)
    for start, end in gaps:
        assert not np.any(vocals[:, int(start * 44100) + 1 : int(end * 44100)]), (start, end)
    # just after a phrase the tail is still there (the gate does not chop notes)
    end = spans[0][1]
    assert np.abs(vocals[:, int((end + 0.05) * 44100) : int((end + 0.2) * 44100)]).max() > 0


def test_vocal_gaps_in_the_files_are_silent(tiny_root):
    checked = 0
    for track in _tracks(tiny_root):
        plan = make_song_plan(0, track.parent.name, int(track.name.split("-")[1]), BENCHMARK_PRESETS["tiny"].seconds)
        vocals = sf.read(str(track / "vocals.wav"), dtype="int16")[0]
        for start, end in plan.vocal_gaps():
            assert not np.any(vocals[int(start * 44100) + 1 : int(end * 44100)]), (track.name, start, end)
            checked += 1
    assert checked


def test_same_seed_identical_bytes_any_worker_count(tiny_root, tmp_path):
    again = generate_benchmark(tmp_path / "again", preset="tiny", seed=0, workers=2, progress=False)
    assert again["files"] == _sha(tiny_root)  # tiny_root was made with 1 worker


def test_other_seed_differs(tmp_path, monkeypatch):
    monkeypatch.setitem(BENCHMARK_PRESETS, "micro", Preset(train=1, test=1, seconds=2.0))
    first = generate_benchmark(tmp_path / "a", preset="micro", seed=0, workers=1, progress=False)["files"]
    second = generate_benchmark(tmp_path / "b", preset="micro", seed=1, workers=1, progress=False)["files"]
    assert set(first) == set(second)  # same names ...
    assert all(first[k] != second[k] for k in first)  # ... different audio


def test_verify_detects_a_modified_and_a_missing_file(tiny_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    assert verify_benchmark(root) == []
    target = root / "test" / "test-000" / "vocals.wav"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1  # flip one bit of one sample
    target.write_bytes(bytes(data))
    (root / "train" / "train-001" / "bass.wav").unlink()
    assert verify_benchmark(root) == ["test/test-000/vocals.wav", "train/train-001/bass.wav"]
    assert main(["data", "--root", str(root), "--verify"]) == 1
    # a rerun regenerates exactly the broken songs, and the folder verifies again
    generate_benchmark(root, preset="tiny", seed=0, workers=1, progress=False)
    assert verify_benchmark(root) == []
    assert main(["data", "--root", str(root), "--verify"]) == 0


def test_resume_keeps_finished_songs(tiny_root, tmp_path):
    root = tmp_path / "partial"
    shutil.copytree(tiny_root, root)
    manifest = json.loads((root / MANIFEST).read_text())
    kept = root / "train" / "train-000" / "drums.wav"
    before = kept.stat().st_mtime_ns
    shutil.rmtree(root / "test" / "test-001")
    generate_benchmark(root, preset="tiny", seed=0, workers=1, progress=False)
    assert kept.stat().st_mtime_ns == before  # not rewritten
    assert read_manifest(root)["files"] == manifest["files"]


def test_refuses_a_folder_of_another_benchmark_or_other_files(tiny_root, tmp_path, monkeypatch):
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    with pytest.raises(MsgppError, match="different benchmark"):
        generate_benchmark(root, preset="tiny", seed=7, progress=False)
    with pytest.raises(MsgppError, match="different benchmark"):
        generate_benchmark(root, preset="default", seed=0, progress=False)
    monkeypatch.setattr("msgpp.data.benchmark.GENERATOR", 999)  # made by an older generator
    with pytest.raises(MsgppError, match="different benchmark"):
        generate_benchmark(root, preset="tiny", seed=0, progress=False)
    unrelated = tmp_path / "music"
    unrelated.mkdir()
    (unrelated / "song.mp3").write_bytes(b"x")
    with pytest.raises(MsgppError, match="not empty"):
        generate_benchmark(unrelated, preset="tiny", progress=False)
    assert main(["data", "--root", str(unrelated), "--preset", "tiny"]) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preset": "huge"}, "unknown preset"),
        ({"soundfont": "no/such/font.sf2"}, "soundfont not found"),
        ({"seed": -1}, "seed"),
        ({"seed": "3"}, "seed"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(MsgppError, match=message):
        generate_benchmark(tmp_path / "out", **{"preset": "tiny", "progress": False, **kwargs})


def test_not_a_soundfont(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(MsgppError, match="not a soundfont"):
        generate_benchmark(tmp_path / "out", preset="tiny", soundfont=text, progress=False)
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF0000sfbk")
    with pytest.raises(MsgppError, match="could not load"):
        generate_benchmark(tmp_path / "out2", preset="tiny", soundfont=broken, progress=False)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "--root", str(tmp_path / "x"), "--soundfont", str(tmp_path / "none.sf2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "soundfont not found" in err
    assert main(["data", "--root", str(tmp_path / "missing"), "--verify"]) == 2
    assert "no manifest" in capsys.readouterr().err
