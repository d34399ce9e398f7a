"""msgpp.enhance.jobs and `msgpp enhance` over many files: a rerun resumes (keeps what the same model
and settings wrote, refuses anything else), --skip-existing, and one decoding pass to check a file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from msgpp.cli import main
from msgpp.enhance.jobs import record_path
from tests.helpers.enhance import tiny_weights
from tests.helpers.reliability import BAD_AUDIO, BAD_OPTIONS, FILESYSTEM, INTERRUPTIONS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def inputs(tmp_path) -> Path:
    folder = tmp_path / "estimates"
    (folder / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b/c.wav", "d.flac"):
        sf.write(folder / name, (0.3 * rng.uniform(-1, 1, (4000, 2))).astype(np.float32), 16000, subtype="PCM_16")
    return folder


def enhance(inputs, out, weights, capsys, *extra) -> tuple[int, str]:
    argv = ["enhance", inputs, "--out", out, "--model", weights, "--segment", "0.1", "--overlap", "0.02", "-q", *extra]
    code = main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


def contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


OUTPUTS = ["a.wav", "b/c.wav", "d.flac"]


@INTERRUPTIONS
def test_a_rerun_keeps_what_the_same_model_and_settings_wrote_and_does_the_rest(inputs, weights, tmp_path, capsys):
    reference = tmp_path / "reference"
    assert enhance(inputs, reference, weights, capsys)[0] == 0
    out = tmp_path / "out"
    assert enhance(inputs, out, weights, capsys)[0] == 0
    (out / "b" / "c.wav").unlink()  # what an interrupted run had not written yet
    (out / "d.flac").unlink()
    kept = {name: (out / name).stat().st_mtime_ns for name in ["a.wav"]}
    code, err = enhance(inputs, out, weights, capsys)
    assert code == 0 and "kept 1 output(s)" in err, err
    assert (out / "a.wav").stat().st_mtime_ns == kept["a.wav"]  # not redone
    assert contents(out) == contents(reference)  # the outputs and their records, byte for byte


@FILESYSTEM
def test_an_output_the_run_did_not_write_is_refused_or_skipped(inputs, weights, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.wav").write_bytes(b"someone else's file")
    code, err = enhance(inputs, out, weights, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "a.wav: exists; pass --force to replace it, or --skip-existing to keep it" in err
    assert sorted(path.name for path in out.iterdir()) == ["a.wav"]  # nothing written
    code, err = enhance(inputs, out, weights, capsys, "--skip-existing")
    assert code == 0 and "skipped 1 input(s)" in err, err
    assert (out / "a.wav").read_bytes() == b"someone else's file" and (out / "d.flac").is_file()
    assert enhance(inputs, out, weights, capsys, "--force")[0] == 0
    assert sf.info(str(out / "a.wav")).frames == 4000


@FILESYSTEM
@pytest.mark.parametrize("change", ["other settings", "other model", "changed input", "changed output"])
def test_an_output_written_otherwise_is_refused(change, inputs, weights, tmp_path, capsys):
    out = tmp_path / "out"
    assert enhance(inputs, out, weights, capsys)[0] == 0
    extra = []
    if change == "other settings":
        extra = ["--subtype", "FLOAT"]
    elif change == "other model":
        weights = tiny_weights(tmp_path / "other", seed=1)
    elif change == "changed input":
        sf.write(inputs / "a.wav", np.zeros((4000, 2), np.float32), 16000, subtype="PCM_16")
    else:
        audio, rate = sf.read(out / "a.wav")
        sf.write(out / "a.wav", audio * 0.5, rate, subtype="PCM_16")  # edited by hand
    before = contents(out)
    code, err = enhance(inputs, out, weights, capsys, *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "a.wav: written with another model, settings or input; pass --force" in err
    assert contents(out) == before


@FILESYSTEM
def test_a_damaged_record_is_no_record(inputs, weights, tmp_path, capsys):
    out = tmp_path / "out"
    assert enhance(inputs, out, weights, capsys)[0] == 0
    record_path(out / "a.wav").write_text("{not json")
    code, err = enhance(inputs, out, weights, capsys)
    assert code == 2 and "a.wav: exists; pass --force" in err
    record = json.loads(record_path(out / "d.flac").read_text())
    assert record["settings"]["segment"] == 0.1 and len(record["output_sha256"]) == 64


@BAD_OPTIONS
def test_force_and_skip_existing_exclude_each_other(inputs, weights, tmp_path, capsys):
    try:
        code = main(["enhance", str(inputs), "--source", "bass", "--force", "--skip-existing"])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not allowed with argument" in err


@BAD_AUDIO
@pytest.mark.parametrize("kind", ["mp3", "truncated mp3"])
def test_an_mp3_is_decoded_once_to_check_it_and_find_its_peaks(kind, weights, tmp_path, monkeypatch):
    """plan_file used to decode a compressed file twice (once to count its frames, once for its
    peaks); the peaks pass now also checks that every declared frame decodes."""
    from msgpp.enhance import jobs
    from msgpp.errors import AudioError

    path = tmp_path / "song.mp3"
    t = np.arange(44100) / 44100
    sf.write(path, 0.3 * np.sin(2 * np.pi * 110 * t), 44100, format="MP3")
    if kind == "truncated mp3":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    decoded = []
    read = sf.SoundFile.read

    def counting(self, *args, **kwargs):
        block = read(self, *args, **kwargs)
        decoded.append(len(block))
        return block

    monkeypatch.setattr(sf.SoundFile, "read", counting)
    if kind == "truncated mp3":
        with pytest.raises(AudioError, match="truncated"):
            jobs.plan_file(path, tmp_path / "out.mp3")
        assert 0 < sum(decoded) < 44100  # one pass, stopped where the file ends
    else:
        job = jobs.plan_file(path, tmp_path / "out.mp3")
        assert job.info.frames == 44100 and 0.25 < job.gains.max() ** -1 < 0.35
        assert sum(decoded) == 44100  # every frame decoded once, not twice
