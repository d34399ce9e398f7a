"""Rendering and mixing: stereo repair, high-pass, exact integer mixing, and synthesiser isolation."""

from __future__ import annotations

import numpy as np
import pytest

from msgpp.constants import SOURCES
from msgpp.data.plan import Note, Part, StemPlan, make_song_plan
from msgpp.data.render import FULL_SCALE, Renderer, default_soundfont, highpass, mix_to_int16, narrow_stereo

SR = 44100


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(default_soundfont())
    yield r
    r.close()


def _correlation(audio):
    return float(np.corrcoef(audio[0], audio[1])[0, 1])


def test_narrow_stereo_removes_negative_correlation_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    mid, side = rng.normal(size=SR).astype(np.float32), rng.normal(size=SR).astype(np.float32)
    anti = np.stack([0.3 * mid + side, 0.3 * mid - side])
    assert _correlation(anti) < -0.5
    fixed = narrow_stereo(anti)
    assert _correlation(fixed) > 0.2
    np.testing.assert_allclose((fixed[0] + fixed[1]) / 2, 0.3 * mid, atol=1e-5)  # the mid is untouched
    ordinary = np.stack([mid + 0.2 * side, mid - 0.2 * side])
    assert narrow_stereo(ordinary) is ordinary


def test_highpass_removes_dc_and_keeps_the_midrange():
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = highpass(np.stack([tone + 0.5, tone + 0.5]), 20, SR)
    assert abs(float(out[:, SR // 2 :].mean())) < 1e-3
    assert np.std(out[:, SR // 2 :]) == pytest.approx(np.std(tone), rel=0.01)
    low = np.sin(2 * np.pi * 30 * t).astype(np.float32)
    assert np.std(highpass(low[None], 60, SR)[:, SR // 2 :]) < 0.4 * np.std(low)  # vocals' 60 Hz cut


def test_mixture_is_the_integer_sum_of_the_stems_and_does_not_clip():
    plan = make_song_plan(0, "train", 0, 1.0)
    rng = np.random.default_rng(1)
    stems = {s: rng.normal(scale=3.0, size=(2, SR)).astype(np.float32) for s in SOURCES}
    stems["bass"][:, 100] = 50.0  # a spike far beyond full scale in float
    out = mix_to_int16(stems, plan, SR)
    total = sum(out[s].astype(np.int64) for s in SOURCES)
    assert np.array_equal(out["mixture"].astype(np.int64), total)
    assert all(out[k].dtype == np.int16 for k in out)
    peak = np.abs(out["mixture"].astype(np.int64)).max()
    assert peak <= FULL_SCALE
    assert peak == pytest.approx(plan.mix_peak * FULL_SCALE, abs=4) or max(
        np.abs(out[s]).max() for s in SOURCES
    ) == pytest.approx(plan.mix_peak * FULL_SCALE, abs=1)


def _stem(notes, program=0, channel=0, bank=0):
    return StemPlan("other", [Part("piano", channel, bank, program, notes, reverb=0)], gain_db=0.0, highpass_hz=20.0)


def test_rendered_stem_sounds_only_where_its_notes_are(renderer):
    audio = renderer.render_stem(_stem([Note(0.5, 0.4, 60, 100)]), 2.0)
    assert audio.shape == (2, 2 * SR) and audio.dtype == np.float32

    def rms(a, b):
        return float(np.sqrt(np.mean(np.square(audio[:, int(a * SR) : int(b * SR)]))))

    assert rms(0.0, 0.45) < 1e-6  # nothing (below -120 dB) before the note
    assert rms(0.5, 0.9) > 1e-3
    assert rms(1.6, 2.0) < 0.01 * rms(0.5, 0.9)  # released and decayed


def test_render_does_not_depend_on_what_was_rendered_before(renderer):
    song, other = make_song_plan(0, "test", 1, 2.0), make_song_plan(5, "train", 9, 2.0)
    first = renderer.render_song(song)
    renderer.render_song(other)
    again = renderer.render_song(song)
    assert all(np.array_equal(first[s], again[s]) for s in SOURCES)


def test_pitch_bend_moves_the_pitch(renderer):
    """A +100-cent bend held over a note raises its fundamental by a semitone."""

    def pitch(bends):
        part = Part("voice", 0, 0, 80, [Note(0.1, 0.8, 69, 100)], reverb=0, bends=bends)  # GM 80: square lead
        audio = renderer.render_stem(StemPlan("vocals", [part], 0.0, 60.0), 1.0)[0, int(0.3 * SR) : int(0.8 * SR)]
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), n=1 << 17))
        return float(np.argmax(spectrum[: int(1000 * (1 << 17) / SR)]) * SR / (1 << 17))

    flat, raised = pitch([]), pitch([(0.1, 100.0)])
    assert flat == pytest.approx(440, rel=0.01)
    assert raised == pytest.approx(440 * 2 ** (1 / 12), rel=0.01)
