"""Chunked inference (msgpp.overlap_add): layout, crossfade sums to one, streaming, chunked == unchunked."""

from itertools import pairwise

import numpy as np
import pytest

from msgpp.overlap_add import OverlapAdd, crossfade, segment_starts


def identity(batch):
    return batch.copy()


def moving_average(batch, width=9):
    """A shift-invariant model that looks 4 samples either side (zero padding at its edges)."""
    kernel = np.ones(width) / width
    return np.stack([np.convolve(row, kernel, mode="same") for row in batch]).astype(np.float32)


def stream(overlap_add, audio, rng, largest=300):
    outputs, position = [], 0
    while position < audio.shape[1]:
        size = int(rng.integers(1, largest))
        outputs.append(overlap_add.push(audio[:, position : position + size]))
        position += size
    outputs.append(overlap_add.finish())
    return np.concatenate(outputs, axis=1)


def test_crossfade_sums_to_one():
    fade_in, fade_out = crossfade(37)
    np.testing.assert_allclose(fade_in + fade_out, 1.0, atol=1e-7)
    assert fade_in[0] < 0.01 and fade_in[-1] > 0.99 and np.all(np.diff(fade_in) > 0)


def test_segment_starts_cover_the_signal_and_last_ends_at_the_end():
    assert segment_starts(50, 100, 20) == [0]
    starts = segment_starts(1000, 100, 20)
    assert starts[:3] == [0, 80, 160]
    assert starts[-1] == 900  # shifted back: ends exactly at the signal's end
    assert all(b - a <= 80 for a, b in pairwise(starts))


@pytest.mark.parametrize("length", [1, 7, 100, 101, 555, 2048])
@pytest.mark.parametrize("segment,overlap,batch_size", [(100, 20, 1), (100, 0, 3), (64, 32, 2), (9, 4, 5)])
def test_identity_model_returns_input_exactly_when_streamed(length, segment, overlap, batch_size):
    rng = np.random.default_rng(length + segment)
    audio = rng.standard_normal((2, length)).astype(np.float32)
    out = stream(OverlapAdd(identity, 2, segment, overlap, batch_size), audio, rng)
    assert out.shape == audio.shape
    np.testing.assert_allclose(out, audio, atol=1e-6)


def test_chunked_matches_unchunked_for_a_local_model():
    """With a receptive field within the O/4 margin, chunking changes nothing (tolerance 1e-4)."""
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((1, 20_000)).astype(np.float32)
    whole = moving_average(audio)
    chunked = OverlapAdd(moving_average, 1, segment=1000, overlap=40, batch_size=4).run(audio)
    np.testing.assert_allclose(chunked, whole, atol=1e-4)
    # Without margins (the reference's layout) the segment edges would show: the test can fail.
    edges = np.concatenate([moving_average(audio[:, i : i + 1000]) for i in range(0, 20_000, 1000)], axis=1)
    assert np.abs(edges - whole).max() > 1e-3


def test_segments_are_batched_and_always_full_length():
    shapes = []

    def record(batch):
        shapes.append(batch.shape)
        return batch

    OverlapAdd(record, 2, segment=100, overlap=20, batch_size=3).run(np.ones((2, 950), np.float32))
    assert all(shape[1] == 100 for shape in shapes)
    assert max(shape[0] for shape in shapes) == 3
    assert sum(shape[0] for shape in shapes) == 2 * len(segment_starts(950, 100, 20))


def test_fixed_batch_pads_the_last_batch():
    shapes = []

    def record(batch):
        shapes.append(batch.shape)
        return batch

    out = OverlapAdd(record, 1, segment=100, overlap=20, batch_size=4, fixed_batch=True).run(
        np.ones((1, 250), np.float32)
    )
    assert {shape[0] for shape in shapes} == {4}
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


def test_memory_stays_bounded_while_streaming():
    overlap_add = OverlapAdd(identity, 1, segment=200, overlap=40, batch_size=2)
    block = np.zeros((1, 128), np.float32)
    for _ in range(500):  # 64 000 samples, 320 segments
        overlap_add.push(block)
        assert overlap_add._input.shape[1] <= 2 * 200 + 128
        assert overlap_add._output.shape[1] <= 3 * 200


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        OverlapAdd(identity, 1, segment=100, overlap=60)  # beyond half a segment
    with pytest.raises(ValueError):
        OverlapAdd(identity, 1, segment=100, overlap=10, batch_size=0)
    with pytest.raises(ValueError, match="keep the shape"):
        OverlapAdd(lambda batch: batch[:, :-1], 1, 100, 10).run(np.ones((1, 300), np.float32))
