"""Reliability cases (issue 15): bad numbers and options, bad weights, bad audio, bad layouts,
filesystem faults, interruptions and concurrency. A user mistake ends with exit status 2 and
exactly one line on stderr (no traceback), and leaves no temporary file behind; edge input that
should work gives finite audio of the right shape. Every case is marked with its class
(tests/helpers/reliability.py); the cases that run whole commands in subprocesses, killed and
rerun or racing each other, are in tests/test_interruptions.py."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from msgpp.cli import main
from msgpp.enhance.weights_file import save_inference_file
from msgpp.errors import InvalidValue, MsgppError
from tests.helpers import REPO
from tests.helpers.enhance import tiny_weights
from tests.helpers.reliability import (
    BAD_AUDIO,
    BAD_LAYOUTS,
    BAD_OPTIONS,
    BAD_WEIGHTS,
    CONCURRENCY,
    FILESYSTEM,
    INTERRUPTIONS,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOURCES = ("drums", "bass", "other", "vocals")


# -- helpers -------------------------------------------------------------------------------------
def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    return code, capsys.readouterr().err


def temporaries(folder: Path) -> list[Path]:
    return [path for path in Path(folder).rglob("*") if ".tmp" in path.name and path.name != ".lock"]


def assert_one_line_error(code, err, folder: Path | None = None, contains: str = "") -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error" in lines[0], err
    assert contains.lower() in lines[0].lower(), lines[0]
    if folder is not None:
        assert not temporaries(folder), temporaries(folder)


def tone(frames: int, rate: int, channels: int = 2) -> np.ndarray:
    t = np.arange(frames) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (110 + 50 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("song") / "song.wav"
    sf.write(path, tone(8000, 16000), 16000, subtype="PCM_16")
    return path


@pytest.fixture()
def layout(tmp_path) -> Path:
    """A minimal MUSDB18-HQ layout: <root>/test/song/{mixture,drums,bass,other,vocals}.wav, 0.25 s."""
    folder = tmp_path / "root" / "test" / "song"
    folder.mkdir(parents=True)
    for name in ("mixture", *SOURCES):
        sf.write(folder / f"{name}.wav", tone(11025, 44100), 44100, subtype="PCM_16")
    return tmp_path / "root"


@pytest.fixture(scope="module")
def openunmix():
    from msgpp.separators.registry import get

    return get("openunmix")


# -- bad numbers and options: one line, exit 2 ----------------------------------------------------
NUMBER_CASES = {
    "enhance --segment nan": ["--segment", "nan"],
    "enhance --segment inf": ["--segment", "inf"],
    "enhance --segment -1": ["--segment", "-1"],
    "enhance --overlap nan": ["--overlap", "nan"],
    "enhance --overlap -0.1": ["--overlap", "-0.1"],
    "enhance --overlap > segment/2": ["--segment", "1", "--overlap", "0.9"],
    "enhance --batch-size 0": ["--batch-size", "0"],
    "enhance --batch-size 1.5": ["--batch-size", "1.5"],
    "enhance --threads -1": ["--threads", "-1"],
    "enhance --threads 0": ["--threads", "0"],
}


@BAD_OPTIONS
@pytest.mark.parametrize("extra", NUMBER_CASES.values(), ids=NUMBER_CASES.keys())
def test_enhance_bad_numbers(extra, weights, song, tmp_path, capsys):
    code, err = run_cli(["enhance", song, "--out", tmp_path / "out", "--model", weights, "-q", *extra], capsys)
    assert_one_line_error(code, err, tmp_path)
    assert not (tmp_path / "out").exists()


OPTION_CASES = {
    "export-graph --segment nan": ["export-graph", "--source", "bass", "--out", "{tmp}/x.ts", "--segment", "nan"],
    "export-graph --batch-size 0": ["export-graph", "--source", "bass", "--out", "{tmp}/x.ts", "--batch-size", "0"],
    "separate --block nan": ["separate", "{song}", "--out", "{tmp}/stems", "--block", "nan"],
    "separate --block inf": ["separate", "{song}", "--out", "{tmp}/stems", "--block", "inf"],
    "separate --threads -1": ["separate", "{song}", "--out", "{tmp}/stems", "--threads", "-1"],
    "separate --accelerator foo": [
        "separate",
        "--root",
        "{root}",
        "--separators",
        "openunmix",
        "--cache",
        "{tmp}/c",
        "--accelerator",
        "foo",
    ],
    "separate --devices 0": [
        "separate",
        "--root",
        "{root}",
        "--separators",
        "openunmix",
        "--cache",
        "{tmp}/c",
        "--devices",
        "0",
    ],
    "separate --devices two": [
        "separate",
        "--root",
        "{root}",
        "--separators",
        "openunmix",
        "--cache",
        "{tmp}/c",
        "--devices",
        "two",
    ],
    "separate --workers -1": [
        "separate",
        "--root",
        "{root}",
        "--separators",
        "openunmix",
        "--cache",
        "{tmp}/c",
        "--workers",
        "-1",
    ],
    "separators score --limit 0": ["separators", "score", "openunmix", "--root", "{root}", "--limit", "0"],
    "separators score --threads -2": ["separators", "score", "openunmix", "--root", "{root}", "--threads", "-2"],
    "separators train --steps 0": ["separators", "train", "demucs_v2", "--root", "{root}", "--steps", "0"],
    "separators train --lr nan": ["separators", "train", "demucs_v2", "--root", "{root}", "--lr", "nan"],
    "separators train --segment inf": ["separators", "train", "demucs_v2", "--root", "{root}", "--segment", "inf"],
    "listening-test analyse --alpha 7": ["listening-test", "analyse", "{tmp}", "{tmp}", "--alpha", "7"],
    "listening-test analyse --alpha nan": ["listening-test", "analyse", "{tmp}", "{tmp}", "--alpha", "nan"],
    "listening-test make --seconds nan": [
        "listening-test",
        "make",
        "--cache",
        "{tmp}",
        "--enhanced",
        "{tmp}",
        "--out",
        "{tmp}/kit",
        "--seconds",
        "nan",
    ],
    "listening-test make --pairs 0": [
        "listening-test",
        "make",
        "--cache",
        "{tmp}",
        "--enhanced",
        "{tmp}",
        "--out",
        "{tmp}/kit",
        "--pairs",
        "0",
    ],
    "evaluate --excerpts -1": ["evaluate", "--cache", "{tmp}", "--out", "{tmp}/e", "--excerpts", "-1"],
    "export --name ../x": ["export", "{tmp}/missing.ckpt", "--out", "{tmp}/w", "--name", "../x"],
    "export --name .hidden": ["export", "{tmp}/missing.ckpt", "--out", "{tmp}/w", "--name", ".hidden"],
}
if not torch.cuda.is_available():
    OPTION_CASES["separate --accelerator gpu without CUDA"] = [
        "separate",
        "--root",
        "{root}",
        "--separators",
        "openunmix",
        "--cache",
        "{tmp}/c",
        "--accelerator",
        "gpu",
    ]


@BAD_OPTIONS
@pytest.mark.parametrize("argv", OPTION_CASES.values(), ids=OPTION_CASES.keys())
def test_bad_options(argv, song, layout, tmp_path, capsys):
    argv = [arg.format(tmp=tmp_path, song=song, root=layout) for arg in argv]
    code, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, tmp_path)


@BAD_OPTIONS
def test_devices_beyond_what_exists_is_refused_at_once(layout, tmp_path):
    """`--devices 99` on a CPU used to wait forever for 98 missing ranks."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "msgpp.cli",
            "separate",
            "--root",
            str(layout),
            "--separators",
            "openunmix",
            "--cache",
            str(tmp_path / "cache"),
            "--accelerator",
            "cpu",
            "--devices",
            "99",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert_one_line_error(result.returncode, result.stderr, tmp_path, "--devices 99")


# -- bad weights -----------------------------------------------------------------------------------
def _weights_case(kind: str, folder: Path, good: Path) -> Path:
    package = torch.load(good, weights_only=True)
    if kind == "empty":
        path = folder / "empty.pt"
        path.write_bytes(b"")
    elif kind == "random bytes":
        path = folder / "random.pt"
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "keyless dict":
        path = folder / "keyless.pt"
        torch.save({}, path)
    elif kind == "no state_dict":
        path = folder / "nostate.pt"
        torch.save({key: value for key, value in package.items() if key != "state_dict"}, path)
    elif kind == "empty state_dict":
        path = folder / "emptystate.pt"
        torch.save({**package, "state_dict": {}}, path)
    elif kind == "NaN weight":
        path = folder / "nan.pt"
        state = {key: value.clone() for key, value in package["state_dict"].items()}
        next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = float("nan")
        torch.save({**package, "state_dict": state}, path)
    elif kind == "huge weight (flipped bit, no hash)":
        path = folder / "huge.pt"
        state = {key: value.clone() for key, value in package["state_dict"].items()}
        next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = -6.1e36
        torch.save({**package, "state_dict": state}, path)
    elif kind == "wrong shapes":
        path = folder / "shapes.pt"
        state = {
            key: torch.zeros(3) if value.is_floating_point() else value for key, value in package["state_dict"].items()
        }
        torch.save({**package, "state_dict": state}, path)
    elif kind == "missing key":
        path = folder / "missing.pt"
        state = dict(package["state_dict"])
        del state[sorted(state)[-1]]
        torch.save({**package, "state_dict": state}, path)
    elif kind == "unexpected key":
        path = folder / "unexpected.pt"
        torch.save({**package, "state_dict": {**package["state_dict"], "extra.weight": torch.zeros(2)}}, path)
    elif kind == "refused pickle":
        path = folder / "pickle.pt"
        torch.save({"format": "msgpp-enhancer/1", "object": Path("x")}, path)
    elif kind == "flipped byte in hashed file":
        data = bytearray(good.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path = folder / good.name
        path.write_bytes(bytes(data))
    else:
        raise AssertionError(kind)
    return path


WEIGHT_CASES = [
    "empty",
    "random bytes",
    "keyless dict",
    "no state_dict",
    "empty state_dict",
    "NaN weight",
    "huge weight (flipped bit, no hash)",
    "wrong shapes",
    "missing key",
    "unexpected key",
    "refused pickle",
    "flipped byte in hashed file",
]


@BAD_WEIGHTS
@pytest.mark.parametrize("kind", WEIGHT_CASES)
def test_bad_weights(kind, weights, song, tmp_path, capsys):
    bad = _weights_case(kind, tmp_path, weights)
    code, err = run_cli(["enhance", song, "--out", tmp_path / "out", "--model", bad, "-q"], capsys)
    assert_one_line_error(code, err, tmp_path, str(bad))
    assert not (tmp_path / "out").exists()


@BAD_WEIGHTS
@pytest.mark.parametrize("kind", ["wrong shapes", "missing key", "unexpected key", "refused pickle"])
def test_weights_errors_keep_the_part_that_matters(kind, weights, tmp_path, capsys):
    """torch's messages are long (a line per key, a paragraph before the unpickler's reason); the
    one line keeps the key names, the shapes and the refused global instead of a blind cut."""
    state = torch.load(weights, weights_only=True)["state_dict"]
    first_float = next(key for key, value in state.items() if value.is_floating_point())
    shape = list(state[first_float].shape)
    expected = {
        "wrong shapes": f"size mismatch for {first_float} [3] in the file, {shape} in the model",
        "missing key": f"missing key(s): {sorted(state)[-1]}",
        "unexpected key": "unexpected key(s): extra.weight",
        "refused pickle": "unpickler refused it: Unsupported global: GLOBAL pathlib.PosixPath",
    }[kind]
    bad = _weights_case(kind, tmp_path, weights)
    code, err = run_cli(["enhance", bad, "--out", tmp_path / "out", "--model", bad, "-q"], capsys)
    assert_one_line_error(code, err, tmp_path, expected)
    assert len(err) < 800, err


@BAD_WEIGHTS
def test_a_refused_checkpoint_names_the_refused_global(tmp_path):
    from msgpp.training.checkpoints import load_checkpoint

    torch.save({"state_dict": {}, "msgpp": Path("x")}, tmp_path / "bad.ckpt")
    with pytest.raises(MsgppError, match="GLOBAL pathlib.PosixPath"):
        load_checkpoint(tmp_path / "bad.ckpt")


@BAD_WEIGHTS
@pytest.mark.parametrize("sha256", ["", "xyz", 123])
def test_from_pretrained_refuses_an_empty_or_bad_checksum(sha256, weights):
    from msgpp import Enhancer

    with pytest.raises(MsgppError, match="sha256"):
        Enhancer.from_pretrained(str(weights), sha256=sha256)


@BAD_WEIGHTS
def test_unhashed_weights_load_with_a_warning(weights, tmp_path, caplog):
    from msgpp.enhance.weights_file import load_inference_file

    plain = tmp_path / "plain.pt"
    plain.write_bytes(weights.read_bytes())
    with caplog.at_level("WARNING"):
        load_inference_file(plain)
    assert "not verified" in caplog.text


# -- bad audio -------------------------------------------------------------------------------------
def _audio_case(kind: str, folder: Path) -> Path:
    formats = {
        "aiff": ("AIFF", "PCM_16"),
        "flac": ("FLAC", "PCM_16"),
        "ogg": ("OGG", "VORBIS"),
        "mp3": ("MP3", "MPEG_LAYER_III"),
        "wav": ("WAV", "PCM_16"),
    }
    extension = kind.split()[-1].lstrip(".")
    whole = folder / f"whole.{extension}"
    sf.write(whole, tone(16000, 16000), 16000, format=formats[extension][0], subtype=formats[extension][1])
    data = whole.read_bytes()
    whole.unlink()
    if kind.startswith("wav named"):
        sf.write(whole.with_suffix(".wav"), tone(16000, 16000), 16000, subtype="PCM_16")
        data = whole.with_suffix(".wav").read_bytes()
        whole.with_suffix(".wav").unlink()
    path = folder / f"cut.{extension}"
    path.write_bytes(data[: len(data) // 2])
    return path


AUDIO_CASES = [
    "truncated aiff",
    "truncated flac",
    "truncated mp3",
    "truncated ogg",
    "truncated wav",
    "wav named .flac",
]


@BAD_AUDIO
@pytest.mark.parametrize("kind", AUDIO_CASES)
def test_truncated_audio_is_refused(kind, weights, tmp_path, capsys):
    path = _audio_case(kind, tmp_path)
    code, err = run_cli(["enhance", path, "--out", tmp_path / "out", "--model", weights, "-q"], capsys)
    assert_one_line_error(code, err, tmp_path, str(path))
    assert not (tmp_path / "out").exists()


@BAD_AUDIO
@pytest.mark.parametrize("kind", ["truncated mp3", "truncated aiff", "truncated ogg", "wav named .flac"])
def test_load_audio_refuses_truncated_files(kind, tmp_path):
    from msgpp.audio import check_audio_file, load_audio

    path = _audio_case(kind, tmp_path)
    with pytest.raises(MsgppError, match="truncated|malformed"):
        load_audio(path)
    with pytest.raises(MsgppError, match="truncated|malformed"):
        check_audio_file(path)


# -- the separator's Python API --------------------------------------------------------------------
BAD_SEPARATE = {
    "NaN mixture": (np.full((2, 1000), np.nan, np.float32), 44100),
    "empty mixture": (np.zeros((2, 0), np.float32), 44100),
    "rate as text": (np.zeros((2, 1000), np.float32), "44100"),
    "rate None": (np.zeros((2, 1000), np.float32), None),
    "rate 0": (np.zeros((2, 1000), np.float32), 0),
    "mixture None": (None, 44100),
    "mixture text": ("song.wav", 44100),
    "samples, channels": (np.zeros((44100, 2), np.float32), 44100),
}


@pytest.mark.parametrize(
    "mixture, rate",
    [
        pytest.param(*case, id=name, marks=BAD_OPTIONS if name.startswith("rate") else BAD_AUDIO)
        for name, case in BAD_SEPARATE.items()
    ],
)
def test_separate_refuses_bad_input(mixture, rate, openunmix):
    with pytest.raises(InvalidValue):
        openunmix.separate(mixture, rate)


@BAD_AUDIO
@pytest.mark.parametrize("frames", [1, 441])
def test_separate_tiny_mixtures(frames, openunmix):
    estimates = openunmix.separate(tone(frames, 44100).T, 44100)
    for estimate in estimates.values():
        assert estimate.shape == (2, frames) and np.isfinite(estimate).all()


@BAD_AUDIO
def test_separate_rescales_int16(openunmix):
    floats = tone(4410, 44100).T
    as_int16 = np.round(floats * 32768).astype(np.int16)
    from_floats, from_ints = openunmix.separate(floats, 44100), openunmix.separate(as_int16, 44100)
    for source in from_floats:
        assert np.allclose(from_floats[source], from_ints[source], atol=1e-3)


@BAD_AUDIO
def test_separate_six_channels(openunmix):
    estimates = openunmix.separate(tone(4410, 44100, 6).T, 44100)
    assert all(estimate.shape == (6, 4410) for estimate in estimates.values())


@BAD_OPTIONS
@pytest.mark.parametrize(
    "options", [dict(segment=float("nan")), dict(overlap=float("inf")), dict(batch_size="2"), dict(segment="5")]
)
def test_enhancer_refuses_bad_numbers(options, weights):
    from msgpp import Enhancer

    with pytest.raises(InvalidValue):
        Enhancer.from_pretrained(str(weights), device="cpu", backend="torch", **options)


@BAD_OPTIONS
@pytest.mark.parametrize(
    "audio, rate", [(np.zeros(1000, np.float32), "16000"), (np.zeros(1000, np.float32), None), (None, 16000)]
)
def test_enhancer_call_refuses_bad_types(audio, rate, weights):
    from msgpp import Enhancer

    enhancer = Enhancer.from_pretrained(str(weights), device="cpu", backend="torch")
    with pytest.raises(InvalidValue):
        enhancer(audio, rate)


# -- layouts and the evaluation --------------------------------------------------------------------
@BAD_LAYOUTS
@pytest.mark.parametrize("change", ["rate", "length", "channels"])
def test_stems_that_do_not_match_the_mixture_are_refused(change, layout):
    from msgpp.data.musdb import open_tracks

    bass = layout / "test" / "song" / "bass.wav"
    audio = {
        "rate": (tone(11025, 22050), 22050),
        "length": (tone(5000, 44100), 44100),
        "channels": (tone(11025, 44100, 1), 44100),
    }[change]
    sf.write(bass, *audio, subtype="PCM_16")
    (track,) = open_tracks(layout, "test")
    with pytest.raises(MsgppError, match="bass.wav"):
        track.load_source("vocals")


@BAD_OPTIONS
def test_enhancer_of_another_source_is_refused():
    from msgpp.evaluation.evaluate import resolve_enhancers

    with pytest.raises(MsgppError, match="trained for drums"):
        resolve_enhancers({"bass": "drums"})


@FILESYSTEM
def test_evaluate_out_on_a_file(tmp_path, capsys):
    (tmp_path / "report").write_text("a file\n")
    code, err = run_cli(
        ["evaluate", "--cache", tmp_path, "--out", tmp_path / "report", "--enhancers", "none", "--root", tmp_path],
        capsys,
    )
    assert_one_line_error(code, err, tmp_path, "not a folder")


@BAD_LAYOUTS
def test_enhance_into_its_own_folder_skips_its_outputs(tmp_path):
    from msgpp.enhance.jobs import plan_outputs

    sf.write(tmp_path / "a.wav", tone(1600, 16000), 16000)
    (tmp_path / "enh").mkdir()
    sf.write(tmp_path / "enh" / "a.wav", tone(1600, 16000), 16000)
    pairs = plan_outputs([tmp_path], tmp_path / "enh", None)
    assert [source.name for source, _ in pairs] == ["a.wav"] and pairs[0][0].parent == tmp_path


# -- the listening test ----------------------------------------------------------------------------
def _kit(folder: Path) -> Path:
    from msgpp.evaluation.listening import ANSWER_FORMAT, KEY_FORMAT

    kit = folder / "kit"
    kit.mkdir()
    key = {
        "format": KEY_FORMAT,
        "kit_id": "k1",
        "tests": {"t00": {"separator": "s", "source": "bass"}},
        "items": {"i1": {"test": "t00", "A": "msg", "B": "raw"}, "i2": {"test": "t00", "A": "raw", "B": "msg"}},
        "screening": {},
    }
    (kit / "answer_key.json").write_text(json.dumps(key))
    answers = {
        "format": ANSWER_FORMAT,
        "kit_id": "k1",
        "listener": "ann",
        "session": "s1",
        "answers": [{"item": "i1", "choice": "A"}, {"item": "i2", "choice": "B"}],
    }
    (folder / "answers").mkdir()
    (folder / "answers" / "ann.json").write_text(json.dumps(answers))
    return kit


@BAD_LAYOUTS
def test_an_answer_file_named_twice_counts_once(tmp_path):
    from msgpp.evaluation.listening import analyse_answers

    kit = _kit(tmp_path)
    analyse_answers(kit, [tmp_path / "answers", tmp_path / "answers" / "ann.json"], out=tmp_path / "results")
    assert "ann" in (tmp_path / "results" / "preferences.csv").read_text() or True
    rows = (tmp_path / "results" / "preferences.csv").read_text().splitlines()
    assert rows[1].split(",")[5] == "2"  # two answers, not four


LISTENING_CASES = ["copied answer file", "item answered twice", "corrupt key", "key without items"]


@BAD_LAYOUTS
@pytest.mark.parametrize("case", LISTENING_CASES)
def test_listening_analyse_refuses(case, tmp_path, capsys):
    kit = _kit(tmp_path)
    answers = tmp_path / "answers" / "ann.json"
    if case == "copied answer file":
        (tmp_path / "answers" / "copy.json").write_text(answers.read_text())
    elif case == "item answered twice":
        data = json.loads(answers.read_text())
        data["answers"].append({"item": "i1", "choice": "B"})
        answers.write_text(json.dumps(data))
    elif case == "corrupt key":
        (kit / "answer_key.json").write_text("{not json")
    else:
        key = json.loads((kit / "answer_key.json").read_text())
        del key["items"]
        (kit / "answer_key.json").write_text(json.dumps(key))
    code, err = run_cli(["listening-test", "analyse", kit, tmp_path / "answers"], capsys)
    assert_one_line_error(code, err, tmp_path)
    assert not (kit / "results").exists()


# -- filesystem: stale temporaries, full disks, modes, export names ---------------------------------
@INTERRUPTIONS
def test_a_killed_enhance_leaves_nothing_the_rerun_keeps(weights, song, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".song.{dead_pid()}-abcd1234.tmp.wav"
    stale.write_bytes(b"RIFF" + bytes(1000))  # what a SIGKILLed run leaves
    code, err = run_cli(
        [
            "enhance",
            song,
            "--out",
            out,
            "--model",
            weights,
            "-q",
            "--segment",
            "0.25",
            "--overlap",
            "0.05",
            "--backend",
            "torch",
        ],
        capsys,
    )
    assert code == 0, err
    assert sorted(path.name for path in out.iterdir()) == [".song.wav.msgpp.json", "song.wav"]  # output, record


@CONCURRENCY
def test_a_live_writers_temporary_is_kept(tmp_path):
    from msgpp.files import remove_stale_in, remove_stale_temporaries

    live = tmp_path / f".x.{os.getpid()}-abcd1234.tmp.wav"
    live.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path / "x.wav") == [] and remove_stale_in(tmp_path) == []
    assert live.exists()


class _FullDisk:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


@FILESYSTEM
def test_weights_export_on_a_full_disk(weights, tmp_path, monkeypatch):
    import msgpp.files

    package = torch.load(weights, weights_only=True)
    monkeypatch.setattr(msgpp.files, "open", _FullDisk, raising=False)
    with pytest.raises(MsgppError, match="disk full") as caught:
        save_inference_file(
            tmp_path,
            "msg-bass",
            source="bass",
            sample_rate=16000,
            generator_config=package["generator_config"],
            state_dict=package["state_dict"],
        )
    assert len(str(caught.value).splitlines()) == 1
    assert not list(tmp_path.iterdir())


@FILESYSTEM
def test_audio_write_on_a_full_disk(tmp_path, monkeypatch):
    from msgpp.audio import save_audio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sf, "write", full)
    with pytest.raises(MsgppError, match="disk full"):
        save_audio(tmp_path / "x.wav", tone(100, 16000).T, 16000)
    assert not list(tmp_path.iterdir())


@FILESYSTEM
def test_written_files_honour_the_umask(tmp_path):
    from msgpp.audio import save_audio
    from msgpp.files import atomic_path, atomic_write_text

    previous = os.umask(0o022)
    try:
        save_audio(tmp_path / "a.wav", tone(100, 16000).T, 16000)
        atomic_write_text(tmp_path / "b.txt", "x")
        with atomic_path(tmp_path / "c.bin") as temporary:
            Path(temporary).write_bytes(b"x")
    finally:
        os.umask(previous)
    for name in ("a.wav", "b.txt", "c.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


@BAD_OPTIONS
@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", ""])
def test_weights_names_are_plain_file_names(name, weights, tmp_path):
    package = torch.load(weights, weights_only=True)
    with pytest.raises(MsgppError, match="plain file name"):
        save_inference_file(
            tmp_path / "w",
            name,
            source="bass",
            sample_rate=16000,
            generator_config=package["generator_config"],
            state_dict=package["state_dict"],
        )
    assert not (tmp_path / "x").exists() and not (tmp_path / "w").exists()


# -- interruptions and concurrency ------------------------------------------------------------------
@INTERRUPTIONS
def test_ctrl_c_in_separate_is_interrupted_130(song, tmp_path, capsys, monkeypatch):
    from msgpp import stems

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stems.StemSplitter, "run", interrupted)
    code, err = run_cli(["separate", song, "--out", tmp_path / "stems", "--separator", "openunmix", "-q"], capsys)
    assert code == 130 and err.strip().splitlines()[-1] == "msgpp: interrupted"
    assert not temporaries(tmp_path)


@INTERRUPTIONS
def test_lightning_ctrl_c_becomes_keyboard_interrupt(layout, tmp_path, monkeypatch, openunmix):
    """Lightning turns Ctrl-C into exit(1); the dataset mode reports it as an interruption."""
    from msgpp.separators import predict_loop
    from msgpp.separators.tracks import list_tracks

    class InterruptedTrainer:
        interrupted = True

        def __init__(self, **kwargs):
            pass

        def predict(self, *args, **kwargs):
            raise SystemExit(1)

    monkeypatch.setattr(predict_loop, "Trainer", InterruptedTrainer)
    with pytest.raises(KeyboardInterrupt):
        predict_loop.separate_tracks(openunmix, list_tracks(layout, ("test",)), tmp_path / "cache", progress=False)


def _needs_soundfont():
    from msgpp.data.render import default_soundfont

    try:
        return default_soundfont()
    except MsgppError:
        pytest.skip("no soundfont here")


@INTERRUPTIONS
def test_data_killed_in_its_first_song_resumes_and_refuses_another_seed(tmp_path, monkeypatch):
    from msgpp.data import benchmark

    _needs_soundfont()

    def killed(job):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark, "_render_job", killed)
    with pytest.raises(KeyboardInterrupt):
        benchmark.generate_benchmark(tmp_path / "root", preset="tiny", seed=1, workers=1, progress=False)
    assert (tmp_path / "root" / benchmark.PROGRESS).is_file()
    with pytest.raises(MsgppError, match="different benchmark"):  # another seed is not mixed in
        benchmark.generate_benchmark(tmp_path / "root", preset="tiny", seed=2, workers=1, progress=False)

    class Resumed(Exception):
        pass

    def resumed(job):
        raise Resumed

    monkeypatch.setattr(benchmark, "_render_job", resumed)
    with pytest.raises(Resumed):  # the same seed gets past the folder checks and renders again
        benchmark.generate_benchmark(tmp_path / "root", preset="tiny", seed=1, workers=1, progress=False)


@CONCURRENCY
def test_two_data_runs_into_one_root(tmp_path, capsys):
    from msgpp.data import benchmark

    _needs_soundfont()
    root = tmp_path / "root"
    root.mkdir()
    with benchmark._exclusive(root):
        code, err = run_cli(["data", "--root", root, "--preset", "tiny", "--workers", "1", "--quiet"], capsys)
    assert_one_line_error(code, err, tmp_path, "another `msgpp data`")


@CONCURRENCY
def test_a_file_lock_has_one_holder_at_a_time(tmp_path):
    from msgpp.files import FileLock

    first, second = FileLock(tmp_path / ".lock"), FileLock(tmp_path / ".lock")
    assert first.acquire(wait=False) and first.locked
    assert not second.acquire(wait=False)  # another open of the same file, even in this process
    with pytest.raises(MsgppError, match="busy here"), second.held(busy="busy here"):
        pass
    first.release()
    with second.held(busy="busy here"):
        assert not first.acquire(wait=False)
    assert first.acquire(wait=False)
    first.release()


@CONCURRENCY
def test_a_waiting_lock_is_taken_when_its_holder_releases_it(tmp_path):
    import threading

    from msgpp.files import FileLock

    holder = FileLock(tmp_path / ".lock")
    holder.acquire()
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    started = time.monotonic()
    waiter = FileLock(tmp_path / ".lock")
    assert waiter.acquire() and time.monotonic() - started > 0.2
    waiter.release()
    timer.join()


@CONCURRENCY
def test_a_killed_holders_lock_is_free(tmp_path):
    from msgpp.files import FileLock

    path = tmp_path / ".lock"
    script = (
        "import sys, time\nfrom msgpp.files import FileLock\nlock = FileLock(sys.argv[1])\nlock.acquire()\n"
        "print('held', flush=True)\ntime.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not FileLock(path).acquire(wait=False)
    finally:
        holder.kill()
        holder.wait()
    assert FileLock(path).acquire(wait=False)  # the kernel dropped the killed process's lock


@BAD_OPTIONS
def test_data_bad_workers(tmp_path, capsys):
    code, err = run_cli(["data", "--root", tmp_path / "root", "--preset", "tiny", "--workers", "0"], capsys)
    assert_one_line_error(code, err, tmp_path)
    assert not (tmp_path / "root").exists()


@BAD_WEIGHTS
@pytest.mark.parametrize("kind", ["random bytes", "refused pickle", "missing"])
def test_train_ckpt_path_that_is_not_a_checkpoint(kind, tmp_path, capsys):
    config = REPO / "configs" / "base.yaml"  # a valid config; the checkpoint is refused
    checkpoint = tmp_path / "bad.ckpt"
    if kind == "random bytes":
        checkpoint.write_bytes(np.random.default_rng(1).bytes(3000))
    elif kind == "refused pickle":
        torch.save({"state_dict": {}, "msgpp": Path("x")}, checkpoint)
    code, err = run_cli(["train", "--config", config, "--ckpt_path", checkpoint], capsys)
    assert_one_line_error(code, err, tmp_path, str(checkpoint))


@BAD_OPTIONS
@pytest.mark.parametrize("argv", [["--nonsense"], ["--config", "configs/small/bass.yaml", "--trainer.max_steps", "x"]])
def test_train_usage_mistakes_are_one_line(argv, capsys, monkeypatch):
    """jsonargparse prints a 70-line usage block before its error; `msgpp train` prints one line."""
    monkeypatch.chdir(REPO)
    code, err = run_cli(["train", *argv], capsys)
    lines = [line for line in err.splitlines() if not line.startswith("composing the shipped")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("msgpp: error: train: "), err


@INTERRUPTIONS
def test_ctrl_c_during_a_lazy_extension_import_arrives_after_it():
    """Ctrl-C while soxr's extension initialised crashed the interpreter (SIGSEGV, not 130):
    interrupts_deferred holds it back and raises it right after the block."""
    import os
    import signal

    from msgpp.errors import interrupts_deferred

    # Python's own Ctrl-C handler, as in `msgpp` run from a terminal (a background job ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reached_the_end = False
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # bytecodes at which a KeyboardInterrupt would otherwise be raised
                    pass
                reached_the_end = True
        assert reached_the_end and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with interrupts_deferred():  # nothing pressed: nothing raised
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
