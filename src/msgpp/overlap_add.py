"""Chunked inference in one place: overlapping segments, a crossfade that sums to one, batches,
and streaming, so a signal of any length goes through a model with bounded memory.

Layout at the model's rate, for a signal of n samples, segment length L and overlap O
(hop H = L - O):

    segment k (all but the last) covers [kH, kH + L)
    the last segment covers [max(0, n - L), n): shifted back so it ends at the signal's end and
    never sees zero padding (a signal shorter than L is zero-padded to L instead)

Two consecutive segments share O samples. In that overlap each discards an edge margin of O/4
(a model's output is least reliable near the edges of what it was given), and they crossfade
over the central O/2 with raised-cosine weights, sin² in and cos² out, which sum to exactly one.
The first segment keeps its start and the last its end. So the weights sum to one at every
sample: an identity model returns its input exactly (the reference implementation's Hamming
overlap-add did not, and lost gain), and a model that looks at most O/4 samples either side
gives the same output chunked as unchunked.

Every segment handed to the model has exactly L samples, so a model traced for one length
(graph_export) works too. Segments of all channels are batched together as mono rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

# (rows, L) float32 → (rows, L) float32: one batch of mono segments through the model.
ProcessBatch = Callable[[np.ndarray], np.ndarray]


def crossfade(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Raised-cosine (fade_in, fade_out) of `length` samples; fade_in + fade_out == 1."""
    phase = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    fade_in = np.sin(0.5 * np.pi * phase) ** 2
    return fade_in.astype(np.float32), (1.0 - fade_in).astype(np.float32)


def segment_starts(length: int, segment: int, overlap: int) -> list[int]:
    """Start of every segment for a signal of `length` samples (the layout in the module doc)."""
    hop = segment - overlap
    if length <= segment:
        return [0]
    count = 1 + math.ceil((length - segment) / hop)
    return [k * hop for k in range(count - 1)] + [length - segment]


class OverlapAdd:
    """Streams (channels, samples) blocks at the model's rate through `process`.

    `push(block)` returns the output samples that are final so far; `finish()` returns the rest.
    The output has exactly as many samples as went in. Memory holds about one segment of input
    and output per channel, plus one batch of segments, whatever the signal's length.
    """

    def __init__(
        self,
        process: ProcessBatch,
        channels: int,
        segment: int,
        overlap: int,
        batch_size: int = 1,
        fixed_batch: bool = False,
    ):
        if segment < 1:
            raise ValueError(f"segment must be at least one sample, got {segment}")
        if not 0 <= overlap <= segment // 2:
            # Beyond half a segment, three segments would overlap and the crossfades would not sum to one.
            raise ValueError(f"overlap must be between 0 and half the segment, got {overlap} for segment {segment}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.process, self.channels = process, channels
        self.segment, self.overlap, self.hop = segment, overlap, segment - overlap
        self.batch_size = batch_size
        self.fixed_batch = fixed_batch  # pad the last batch with silent rows (fixed-shape graphs)
        self.margin = overlap // 4
        self.fade_in, self.fade_out = crossfade(overlap - 2 * self.margin)
        self._input = np.zeros((channels, 0), np.float32)  # input samples from _input_start on
        self._input_start = 0
        self._received = 0
        self._output = np.zeros((channels, 0), np.float32)  # weighted sums from _output_start on
        self._output_start = 0
        self._next_segment = 0  # index of the next regular segment to cut
        self._rows: list[tuple[int, int, int, np.ndarray]] = []  # (segment index, start, channel, samples)
        self._weights: dict[int, np.ndarray] = {}  # segment index → its crossfade weights
        self._rows_left: dict[int, int] = {}  # segment index → rows not yet through the model
        self._cut_segments = 0
        self._finished = False

    # -- public -------------------------------------------------------------------------------
    def push(self, block: np.ndarray) -> np.ndarray:
        """Add input samples; return the output samples that no later segment can change."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, samples) blocks, got {block.shape}")
        self._input = np.concatenate([self._input, block], axis=1)
        self._received += block.shape[1]
        # Regular segment k is known not to be the last once a sample exists beyond its end.
        while self._received > self._next_segment * self.hop + self.segment:
            self._cut(self._next_segment * self.hop, first=self._next_segment == 0, last=False)
            self._next_segment += 1
        while len(self._rows) >= self.batch_size:
            self._run_batch()
        return self._emit(final=False)

    def finish(self) -> np.ndarray:
        """Process the last segment and return every remaining output sample."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        if self._received:
            start = max(0, self._received - self.segment)
            self._cut(start, first=self._next_segment == 0, last=True)
        while self._rows:
            self._run_batch()
        return self._emit(final=True)

    def run(self, audio: np.ndarray) -> np.ndarray:
        """The whole (channels, samples) signal at once."""
        return np.concatenate([self.push(audio), self.finish()], axis=1)

    # -- internals ----------------------------------------------------------------------------
    def _cut(self, start: int, first: bool, last: bool) -> None:
        """Queue one segment (all channels) and add its weights' bookkeeping."""
        offset = start - self._input_start
        samples = self._input[:, offset : offset + self.segment]
        if samples.shape[1] < self.segment:  # only a signal shorter than one segment
            samples = np.pad(samples, ((0, 0), (0, self.segment - samples.shape[1])))
        weights = np.ones(self.segment, np.float32)
        fade = self.fade_in.shape[0]
        if not first:
            # The crossfade with the previous segment starts at k·hop + margin in absolute terms,
            # which is further into the segment when the last segment was shifted back.
            fade_at = self._next_segment * self.hop + self.margin - start
            weights[:fade_at] = 0.0
            weights[fade_at : fade_at + fade] = self.fade_in
        if not last:
            fade_at = self.segment - self.overlap + self.margin
            weights[fade_at : fade_at + fade] *= self.fade_out
            weights[fade_at + fade :] = 0.0
        index = self._cut_segments
        self._cut_segments += 1
        for channel in range(self.channels):
            self._rows.append((index, start, channel, samples[channel].copy()))
        self._weights[index] = weights
        self._rows_left[index] = self.channels
        # Later segments start after this one's start (the shifted-back last one too), so the
        # input before it is no longer needed.
        drop = (self._received if last else start) - self._input_start
        if drop > 0:
            self._input = self._input[:, drop:]
            self._input_start += drop

    def _run_batch(self) -> None:
        rows, self._rows = self._rows[: self.batch_size], self._rows[self.batch_size :]
        batch = np.stack([row[3] for row in rows])
        if self.fixed_batch and len(rows) < self.batch_size:
            batch = np.pad(batch, ((0, self.batch_size - len(rows)), (0, 0)))
        result = np.asarray(self.process(batch), dtype=np.float32)
        if result.shape != batch.shape:
            raise ValueError(f"the model returned shape {result.shape} for input {batch.shape}; it must keep the shape")
        for (index, start, channel, _), out in zip(rows, result, strict=False):  # the padding rows are dropped
            self._add(start, channel, out * self._weights[index])
            self._rows_left[index] -= 1
            if not self._rows_left[index]:
                del self._rows_left[index], self._weights[index]

    def _add(self, start: int, channel: int, weighted: np.ndarray) -> None:
        offset = start - self._output_start
        end = offset + weighted.shape[0]
        if end > self._output.shape[1]:
            self._output = np.pad(self._output, ((0, 0), (0, end - self._output.shape[1])))
        lo = max(offset, 0)  # the part before _output_start has zero weight (already emitted)
        self._output[channel, lo:end] += weighted[lo - offset :]

    def _emit(self, final: bool) -> np.ndarray:
        """Hand out the output that is complete: before the oldest segment still queued or
        not yet cut (its fade-in starts at its own regular start)."""
        if final:
            ready = self._received
        else:
            pending = [start for _, start, _, _ in self._rows]
            ready = min(pending + [self._next_segment * self.hop])
        count = max(0, min(ready, self._received) - self._output_start)
        count = min(count, self._output.shape[1]) if not final else count
        if final and self._output.shape[1] < count:
            self._output = np.pad(self._output, ((0, 0), (0, count - self._output.shape[1])))
        out, self._output = self._output[:, :count], self._output[:, count:]
        self._output_start += count
        return np.ascontiguousarray(out)
