"""The dataset reader: the embedded set, MUSDB_PATH, the real datasets' layouts, and bad folders."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from msgpp.constants import SOURCES
from msgpp.data.musdb import open_tracks
from msgpp.errors import MsgppError


def test_musdb_reads_the_embedded_set(tiny_root):
    import musdb

    database = musdb.DB(root=str(tiny_root), is_wav=True)
    assert sorted(t.name for t in database.tracks) == ["test-000", "test-001", "train-000", "train-001"]
    track = database.tracks[0]
    mixture = track.audio
    assert mixture.shape == (6 * 44100, 2) and track.rate == 44100
    for source in SOURCES:
        assert track.targets[source].audio.shape == mixture.shape
    total = sum(track.sources[s].audio for s in SOURCES)
    np.testing.assert_allclose(total, mixture, atol=1e-6)  # exact in int16, so exact in float too


def test_open_tracks(tiny_root):
    tracks = open_tracks(tiny_root, subset="test")
    assert [t.name for t in tracks] == ["test-000", "test-001"]
    track = tracks[1]
    assert track.subset == "test" and track.sample_rate == 44100
    mixture = track.load_mixture()
    assert mixture.dtype == np.float32 and mixture.shape == (2, 6 * 44100) and mixture.flags.c_contiguous
    expected = sf.read(str(tiny_root / "test" / "test-001" / "vocals.wav"), dtype="float32")[0].T
    np.testing.assert_array_equal(track.load_source("vocals"), expected)
    assert [t.name for t in open_tracks(tiny_root, "train", names=["train-001"])] == ["train-001"]
    with pytest.raises(MsgppError, match="unknown source"):
        track.load_source("piano")


def test_musdb_path_environment(tiny_root, monkeypatch):
    monkeypatch.setenv("MUSDB_PATH", str(tiny_root))
    assert len(open_tracks(subset="train")) == 2
    monkeypatch.delenv("MUSDB_PATH")
    with pytest.raises(MsgppError, match="MUSDB_PATH"):
        open_tracks()


def test_bad_folders_and_names(tiny_root, tmp_path):
    with pytest.raises(MsgppError, match="not found"):
        open_tracks(tmp_path / "nowhere")
    with pytest.raises(MsgppError, match="no test/ folder"):
        open_tracks(tmp_path)
    (tmp_path / "test" / "song").mkdir(parents=True)
    (tmp_path / "test" / "song" / "notes.txt").write_text("x")
    with pytest.raises(MsgppError, match="not a MUSDB layout"):
        open_tracks(tmp_path)
    with pytest.raises(MsgppError, match="no track named 'nope'"):
        open_tracks(tiny_root, names=["nope"])
    with pytest.raises(MsgppError, match="unknown subset"):
        open_tracks(tiny_root, subset="valid")


def test_reads_musdb18_stem_mp4(tmp_path):
    """MUSDB18's .stem.mp4 files (detected from the folder) go through musdb with is_wav=False."""
    stempeg = pytest.importorskip("stempeg")
    rng = np.random.default_rng(0)
    stems = (rng.uniform(-0.2, 0.2, size=(5, 44100, 2))).astype(np.float32)
    (tmp_path / "test").mkdir()
    stempeg.write_stems(
        str(tmp_path / "test" / "Artist - Song.stem.mp4"),
        stems,
        sample_rate=44100,
        writer=stempeg.StreamsWriter(codec="aac", bitrate=128000),
    )
    tracks = open_tracks(tmp_path, "test")
    assert [t.name for t in tracks] == ["Artist - Song"]
    mixture = tracks[0].load_mixture()
    assert mixture.shape[0] == 2 and abs(mixture.shape[1] - 44100) < 4096
    assert tracks[0].load_source("drums").shape == mixture.shape
