"""Song in, stems out: `msgpp separate INPUT...`, msgpp.separate_song / separate_file (msgpp.stems).

Songs are 2-second synthetic mixes; the shipped hdemucs_v3 separator and MSG enhancers run on
the CPU with one thread and the PyTorch backend (no ONNX export), so the file runs in well under
a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from msgpp.audio import load_audio, save_audio
from msgpp.cli import main
from tests.helpers.reliability import BAD_AUDIO, BAD_OPTIONS, FILESYSTEM, INTERRUPTIONS
from tests.helpers.separators import build_tiny, make_root

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEMS = ("drums", "bass", "other", "vocals")  # hdemucs_v3's, in its order
FAST = ["--device", "cpu", "--backend", "torch", "--threads", "1", "-q"]


def make_song(
    path: Path, rate: int = 44100, channels: int = 2, seconds: float = 2.0, seed: int = 0, subtype: str = "PCM_16"
) -> Path:
    """Bass, a melody and noise bursts (drums-like); written in the format of the extension."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    bass = 0.25 * np.sin(2 * np.pi * 55 * (1 + seed % 3) * t)
    melody = 0.12 * np.sin(2 * np.pi * 440 * t * (1 + 0.02 * np.sin(3 * t)))
    drums = 0.1 * np.clip(rng.standard_normal(t.size), -3, 3) * ((t % 0.5) < 0.05)
    left, right = bass + melody + drums, bass + 0.5 * melody + drums
    audio = np.stack([left, right])[:channels].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_audio(path, audio, rate, subtype=subtype)


def separate(*argv) -> int:
    return main(["separate", *map(str, argv), *FAST])


def written(folder: Path) -> set[str]:
    """Every file under a folder, hidden ones included, relative and as posix strings."""
    return (
        {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
        if folder.exists()
        else set()
    )


# -- formats, rates, channels, a folder mirrored -------------------------------------------------
def test_every_format_rate_and_channel_count_gives_every_stem_at_the_input_rate_and_channels(tmp_path):
    songs = tmp_path / "songs"
    inputs = {}
    for extension, subtype in (("mp3", "PCM_16"), ("flac", "PCM_24"), ("wav", "PCM_16")):
        for rate in (44100, 48000):
            for channels in (1, 2):
                name = f"{extension}/{rate}-{channels}ch"
                inputs[name] = make_song(
                    songs / f"{name}.{extension}", rate, channels, subtype=subtype, seed=len(inputs)
                )
    out = tmp_path / "stems"
    assert separate(songs, "--out", out, "--enhance") == 0
    # The folder's layout is mirrored: <out>/<subfolder>/<file name>/<stem>.<ext>; mp3 becomes wav,
    # lossless formats stay themselves.
    extension = {"mp3": "wav", "flac": "flac", "wav": "wav"}
    expected = {f"{name}/{stem}.{extension[name.split('/')[0]]}" for name in inputs for stem in STEMS}
    assert written(out) == expected
    for name, source in inputs.items():
        info = sf.info(str(source))
        for stem in STEMS:
            stem_info = sf.info(str(out / f"{name}/{stem}.{extension[name.split('/')[0]]}"))
            assert (stem_info.samplerate, stem_info.channels, stem_info.frames) == (
                info.samplerate,
                info.channels,
                info.frames,
            ), (name, stem)
            # The input's depth is kept: 24-bit FLAC stays 24-bit, 16-bit WAV and mp3 give 16-bit.
            assert stem_info.subtype == ("PCM_24" if name.startswith("flac") else "PCM_16")
        audio, _ = load_audio(out / f"{name}/bass.{extension[name.split('/')[0]]}")
        assert np.abs(audio).max() > 1e-3  # a stem, not silence


# -- --stems, --filename ------------------------------------------------------------------------
def test_stems_writes_only_those_with_the_filename_template(tmp_path):
    song = make_song(tmp_path / "My Song.wav")
    out = tmp_path / "out"
    assert (
        separate(
            song, "--out", out, "--stems", "drums,bass", "--filename", "{stem}/{track}-{stem}.{ext}", "--format", "flac"
        )
        == 0
    )
    assert written(out) == {"drums/My Song-drums.flac", "bass/My Song-bass.flac"}


def test_filename_without_track_collides_for_two_songs_and_nothing_is_written(tmp_path, capsys):
    first, second = make_song(tmp_path / "a.wav"), make_song(tmp_path / "b.wav", seed=1)
    out = tmp_path / "out"
    assert separate(first, second, "--out", out, "--filename", "{stem}.{ext}") == 2
    assert "would both be written" in capsys.readouterr().err
    assert written(out) == set()


@pytest.mark.parametrize(
    "template, message",
    [
        ("{track}.{ext}", "must contain {stem}"),
        ("{track}/{instrument}.{ext}", "unknown field {instrument}"),
        ("../{track}/{stem}.{ext}", "inside --out"),
        ("{track}/{stem}.txt", "audio extension"),
    ],
)
def test_bad_filename_templates_are_one_line_errors(tmp_path, capsys, template, message):
    song = make_song(tmp_path / "song.wav", seconds=0.5)
    assert separate(song, "--out", tmp_path / "out", "--filename", template) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error
    assert written(tmp_path / "out") == set()


# -- --consistent, --keep-raw -------------------------------------------------------------------
def test_consistent_stems_sum_to_the_mixture(tmp_path):
    song = make_song(tmp_path / "song.wav", rate=48000, subtype="FLOAT")
    mixture, _ = load_audio(song)
    plain, consistent = tmp_path / "plain", tmp_path / "consistent"
    assert separate(song, "--out", plain, "--enhance", "--subtype", "FLOAT") == 0
    assert separate(song, "--out", consistent, "--enhance", "--subtype", "FLOAT", "--consistent") == 0

    def total(folder):
        return sum(load_audio(folder / "song" / f"{stem}.wav")[0] for stem in STEMS)

    # Without --consistent the enhanced stems do not add up (so the check below can fail) ...
    assert np.abs(total(plain) - mixture).max() > 1e-3
    # ... with it they do, to float precision.
    assert np.abs(total(consistent) - mixture).max() < 1e-4
    # The correction is a share of the residual, not a rewrite: each stem stays close to its plain version.
    for stem in STEMS:
        before = load_audio(plain / "song" / f"{stem}.wav")[0]
        after = load_audio(consistent / "song" / f"{stem}.wav")[0]
        residual = np.abs(total(plain) - mixture).max()
        assert np.abs(after - before).max() <= residual + 1e-4


def test_consistent_with_a_subset_lets_the_other_stems_take_their_share(tmp_path):
    import msgpp

    rate = 44100
    mixture = load_audio(make_song(tmp_path / "song.wav", subtype="FLOAT"))[0]
    everything = msgpp.separate_song(mixture, rate, enhance=True, consistent=True, device="cpu", backend="torch")
    subset = msgpp.separate_song(
        mixture, rate, enhance=True, consistent=True, stems="bass", device="cpu", backend="torch"
    )
    assert list(subset) == ["bass"]
    assert np.abs(sum(everything.values()) - mixture).max() < 1e-4
    # Unrequested stems take part unenhanced, so the residual they leave, and bass's share of it,
    # differ from the all-enhanced run (by how much depends on the shipped enhancers).
    assert np.abs(subset["bass"] - everything["bass"]).max() > 1e-4
    assert np.all(np.isfinite(subset["bass"])) and np.abs(subset["bass"]).max() <= 2 * np.abs(mixture).max()


def test_keep_raw_writes_the_separators_stem_beside_the_enhanced_one(tmp_path):
    import msgpp.separators

    song = make_song(tmp_path / "song.wav", subtype="FLOAT")
    out = tmp_path / "out"
    assert separate(song, "--out", out, "--enhance", "--keep-raw", "--stems", "bass,vocals") == 0
    assert written(out) == {"song/bass.wav", "song/bass_raw.wav", "song/vocals.wav", "song/vocals_raw.wav"}
    mixture, rate = load_audio(song)
    reference = msgpp.separators.get("hdemucs_v3").separate(mixture, rate)  # a song shorter than a block: whole
    for stem in ("bass", "vocals"):
        raw = load_audio(out / "song" / f"{stem}_raw.wav")[0]
        enhanced = load_audio(out / "song" / f"{stem}.wav")[0]
        assert np.abs(raw - reference[stem]).max() < 1e-6
        assert np.abs(enhanced - raw).max() > 1e-3  # the enhancer changed it


def test_keep_raw_needs_enhance(tmp_path, capsys):
    assert separate(make_song(tmp_path / "s.wav", seconds=0.5), "--out", tmp_path / "o", "--keep-raw") == 2
    assert "needs enhance" in capsys.readouterr().err


# -- the Python functions -----------------------------------------------------------------------
def test_python_functions_equal_the_command(tmp_path):
    import msgpp

    song = make_song(tmp_path / "song.wav", rate=48000, subtype="FLOAT")
    out = tmp_path / "cli"
    assert separate(song, "--out", out, "--enhance", "--consistent", "--subtype", "FLOAT", "--keep-raw") == 0
    mixture, rate = load_audio(song)
    in_memory = msgpp.separate_song(
        mixture, rate, "hdemucs_v3", enhance=True, consistent=True, keep_raw=True, device="cpu", backend="torch"
    )
    files = msgpp.separate_file(
        song,
        tmp_path / "py",
        "hdemucs_v3",
        enhance=True,
        consistent=True,
        keep_raw=True,
        subtype="FLOAT",
        device="cpu",
        backend="torch",
    )
    assert sorted(in_memory) == sorted(files) == sorted(list(STEMS) + [f"{stem}_raw" for stem in STEMS])
    for name, path in files.items():
        command = load_audio(out / "song" / f"{name}.wav")[0]
        assert in_memory[name].shape == mixture.shape
        assert np.abs(in_memory[name] - command).max() < 1e-6, name
        assert np.abs(load_audio(path)[0] - command).max() < 1e-6, name


def test_separate_song_keeps_shape_and_type(tmp_path):
    import torch

    import msgpp

    rate = 22050
    mono = load_audio(make_song(tmp_path / "m.wav", rate=rate, channels=1, seconds=1.0))[0][0]
    stems = msgpp.separate_song(mono, rate, enhance=False, stems=["vocals", "bass"])
    assert list(stems) == ["bass", "vocals"] and stems["bass"].shape == mono.shape
    as_tensor = msgpp.separate_song(torch.from_numpy(mono), rate, enhance=False, stems="bass")
    assert isinstance(as_tensor["bass"], torch.Tensor)
    assert np.allclose(as_tensor["bass"].numpy(), stems["bass"])


# -- long files: blocks ------------------------------------------------------------------------
def test_blocks_are_exact_for_a_linear_separator():
    """The block engine (overlap, edge margins, crossfades, the shifted last block) loses nothing:
    with a separator that is linear and memoryless, blocked output equals whole-song output."""
    import msgpp
    import msgpp.separators

    separator = msgpp.separators.get("hdemucs_v3")
    gains = {stem: 0.1 * (index + 1) for index, stem in enumerate(separator.sources)}
    separator.separate = lambda mixture, rate: {stem: gain * mixture for stem, gain in gains.items()}
    rng = np.random.default_rng(0)
    mixture = (0.3 * rng.standard_normal((2, 7 * 8000 + 123))).astype(np.float32)
    stems = msgpp.separate_song(mixture, 8000, separator, enhance=False, block=1.0, block_overlap=0.4)
    for stem, gain in gains.items():
        assert np.abs(stems[stem] - gain * mixture).max() < 1e-6


def test_a_long_file_goes_in_blocks_and_the_command_equals_python(tmp_path, monkeypatch):
    import msgpp
    import msgpp.separators.base as base

    song = make_song(tmp_path / "long.wav", rate=16000, seconds=5.0, subtype="FLOAT")
    lengths = []
    original = base.Separator.separate

    def spy(self, mixture, rate):
        lengths.append(np.asarray(mixture).shape[-1])
        return original(self, mixture, rate)

    monkeypatch.setattr(base.Separator, "separate", spy)
    assert separate(song, "--out", tmp_path / "out", "--block", "2", "--subtype", "FLOAT") == 0
    # Blocks of 2 s (32000 samples), never the whole 5-s song at once.
    assert lengths and max(lengths) == 32000 and len(lengths) >= 3
    mixture, rate = load_audio(song)
    stems = msgpp.separate_song(mixture, rate, enhance=False, block=2.0, block_overlap=1.0)
    for stem in STEMS:
        assert np.abs(load_audio(tmp_path / "out" / "long" / f"{stem}.wav")[0] - stems[stem]).max() < 1e-6


# -- existing outputs, interrupted runs, duplicates ----------------------------------------------
@FILESYSTEM
def test_existing_output_is_refused_without_force(tmp_path):
    song = make_song(tmp_path / "song.wav", seconds=1.0)
    out = tmp_path / "out"
    assert separate(song, "--out", out, "--stems", "bass") == 0
    target = out / "song" / "bass.wav"
    before = target.read_bytes()
    command = [sys.executable, "-m", "msgpp.cli", "separate", str(song), "--out", str(out), "--stems", "bass", *FAST]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("msgpp: error:") and "--force" in lines[0], result.stderr
    assert target.read_bytes() == before
    make_song(song, seconds=1.0, seed=5)  # a different song under the same name
    assert separate(song, "--out", out, "--stems", "bass", "--force") == 0
    assert target.read_bytes() != before


@INTERRUPTIONS
def test_an_interrupted_run_leaves_nothing_and_a_rerun_finishes(tmp_path, monkeypatch):
    import msgpp.stems

    song = make_song(tmp_path / "song.flac", seconds=1.0)
    out = tmp_path / "out"
    real = msgpp.stems._write_stem
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C while the second stem is being written
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(msgpp.stems, "_write_stem", interrupted)
    assert separate(song, "--out", out, "--enhance") == 130
    assert written(out) == set()  # no stem, no temporary, no work folder
    monkeypatch.setattr(msgpp.stems, "_write_stem", real)
    assert separate(song, "--out", out, "--enhance") == 0
    assert written(out) == {f"song/{stem}.flac" for stem in STEMS}


@INTERRUPTIONS
def test_the_work_folder_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    """SIGKILL leaves a song's work folder behind (nothing can clean up); the next run into the
    same --out removes it, and leaves alone the work folder of a run that is still working."""
    song = make_song(tmp_path / "song.wav", seconds=0.5)
    out = tmp_path / "out"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".msgpp-separate-{finished.stdout.strip()}-abcd1234"  # its process has ended
    (stale / "out").mkdir(parents=True)
    (stale / "bass.wav").write_bytes(b"RIFF")
    live = out / f".msgpp-separate-{os.getpid()}-efgh5678"  # this process: still running
    live.mkdir()
    assert separate(song, "--out", out, "--stems", "bass") == 0
    assert not stale.exists() and live.exists()
    assert written(out) == {"song/bass.wav"}


@INTERRUPTIONS
def test_skip_existing_resumes_a_batch(tmp_path, capsys):
    first = make_song(tmp_path / "in" / "a.wav", seconds=0.5)
    make_song(tmp_path / "in" / "b.wav", seconds=0.5)  # the batch's other song, new to the second run
    out = tmp_path / "out"
    assert separate(first, "--out", out, "--stems", "bass") == 0
    stamp = (out / "a" / "bass.wav").stat().st_mtime_ns
    capsys.readouterr()
    assert separate(tmp_path / "in", "--out", out, "--stems", "bass", "--skip-existing") == 0
    assert "skipped" in capsys.readouterr().err
    assert (out / "a" / "bass.wav").stat().st_mtime_ns == stamp
    assert written(out) == {"a/bass.wav", "b/bass.wav"}


def test_the_same_file_given_twice_is_done_once(tmp_path, capsys):
    folder = tmp_path / "songs"
    song = make_song(folder / "song.wav", seconds=0.5)
    out = tmp_path / "out"
    assert separate(song, folder, song, "--out", out, "--stems", "vocals") == 0
    assert capsys.readouterr().out.split() == [str(out / "song" / "vocals.wav")]


def test_the_output_folder_inside_an_input_folder_is_not_an_input(tmp_path):
    folder = tmp_path / "music"
    make_song(folder / "song.wav", seconds=0.5)
    out = folder / "stems"
    assert separate(folder, "--out", out, "--stems", "bass") == 0
    assert separate(folder, "--out", out, "--stems", "bass", "--skip-existing") == 0  # stems/ is not searched
    assert written(out) == {"song/bass.wav"}


# -- user mistakes -------------------------------------------------------------------------------
@BAD_OPTIONS
@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "nothing to separate"),
        (["{song}", "--root", "somewhere"], "not both"),
        (["{song}", "--stems", "piano"], "unknown stem 'piano'"),
        (["{song}", "--separator", "nope"], "unknown separator 'nope'"),
        (["{missing}"], "no such file or folder"),
        (["{song}", "--format", "PCM_16"], "--format 'PCM_16'"),
        (["{song}", "--enhancer", "bass=bass"], "add --enhance"),
        (["{song}", "--enhance", "--enhancer", "piano=bass"], "'piano' is not among the stems"),
        (["{song}", "--separators", "demucs_v2"], "dataset mode"),
        (["--root", "somewhere", "--separators", "demucs_v2", "--enhance"], "belongs to the song mode"),
        (["--root", "somewhere"], "needs --separators"),
        (["{garbage}"], "not a readable audio file"),
    ],
)
def test_user_mistakes_are_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    song = make_song(tmp_path / "song.wav", seconds=0.5)
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all" * 10)
    names = {"song": song, "missing": tmp_path / "missing.mp3", "garbage": tmp_path / "garbage.wav"}
    argv = [item.format(**names) for item in argv]
    assert (
        main(
            ["separate", *argv, "--out", str(tmp_path / "out"), "-q"]
            if argv and "--root" not in argv
            else ["separate", *argv]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error
    assert written(tmp_path / "out") == set()


@BAD_AUDIO
def test_nan_in_a_float_input_is_refused_before_any_work(tmp_path, capsys):
    good = make_song(tmp_path / "a.wav", seconds=0.5)
    audio = np.zeros((2, 8000), np.float32)
    audio[0, 100] = np.nan
    sf.write(tmp_path / "b.wav", audio.T, 16000, subtype="FLOAT")
    assert separate(good, tmp_path / "b.wav", "--out", tmp_path / "out") == 2
    assert "NaN" in capsys.readouterr().err
    assert written(tmp_path / "out") == set()


# -- the dataset mode is unchanged ---------------------------------------------------------------
def test_dataset_mode_still_fills_the_cache(tmp_path):
    from msgpp.separators import cache

    root = make_root(tmp_path / "songs", {"test": 1}, seconds=0.5)
    build_tiny("demucs_v2").save_weights(tmp_path / "weights")
    argv = [
        "separate",
        "--root",
        str(root),
        "--separators",
        "demucs_v2",
        "--cache",
        str(tmp_path / "cache"),
        "--weights",
        f"demucs_v2={tmp_path / 'weights'}",
        "--threads",
        "1",
        "--subset",
        "test",
    ]
    assert main(argv) == 0
    found = cache.find_estimates(tmp_path / "cache", "demucs_v2", "test")
    assert len(found) == 1 and sorted(next(iter(found.values()))) == sorted(STEMS)
    info = sf.info(str(next(iter(next(iter(found.values())).values()))))
    assert info.subtype == "PCM_16"  # the default --format of the dataset mode
