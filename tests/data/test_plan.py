"""Song plans: seeded, within the ranges the benchmark promises, musically consistent."""

from __future__ import annotations

import pytest

from msgpp.constants import SOURCES
from msgpp.data.plan import (
    BASS_PROGRAMS,
    DRUM_CHANNEL,
    MAJOR,
    MINOR,
    STYLE_TEMPI,
    VOCAL_PROGRAMS,
    Clock,
    _voicing,
    chord_tones,
    make_song_plan,
)


def _notes(plan):
    return {
        s: [(p.channel, n.start, n.duration, n.key, n.velocity) for p in plan.stems[s].parts for n in p.notes]
        for s in SOURCES
    }


def test_same_seed_same_plan_other_seed_or_song_differs():
    a = make_song_plan(0, "train", 5, 20.0)
    b = make_song_plan(0, "train", 5, 20.0)
    assert _notes(a) == _notes(b) and a.summary() == b.summary()
    assert _notes(make_song_plan(1, "train", 5, 20.0)) != _notes(a)
    assert _notes(make_song_plan(0, "test", 5, 20.0)) != _notes(a)
    assert _notes(make_song_plan(0, "train", 6, 20.0)) != _notes(a)


@pytest.mark.parametrize("index", range(12))
def test_plan_ranges(index):
    plan = make_song_plan(3, "train", index, 20.0)
    assert 78 <= plan.tempo <= 150
    low, high = STYLE_TEMPI[plan.style]
    assert low <= plan.tempo <= high
    assert list(plan.stems) == list(SOURCES)
    assert plan.stems["drums"].parts[0].channel == DRUM_CHANNEL and plan.stems["drums"].parts[0].bank == 128
    bass = plan.stems["bass"].parts[0]
    assert 32 <= bass.program <= 39 and bass.program in BASS_PROGRAMS[plan.style]
    assert plan.stems["vocals"].parts[0].program in VOCAL_PROGRAMS
    assert plan.stems["vocals"].highpass_hz == 60 and plan.stems["bass"].highpass_hz == 20
    for stem in plan.stems.values():
        assert stem.parts[0].notes, stem.source
        for part in stem.parts:
            for note in part.notes:
                assert 0 <= note.start < plan.duration and note.duration > 0
                assert 0 <= note.key <= 127 and 1 <= note.velocity <= 127
    # the sections cover the whole excerpt
    last = plan.sections[-1]
    assert (last.start_bar + last.bars) * plan.bar_seconds >= plan.duration
    assert 0 < plan.mix_peak < 1


def test_bass_follows_chord_roots():
    """Every bar's first bass note is the chord root (the patterns start on it)."""
    for index in range(8):
        plan = make_song_plan(0, "test", index, 20.0)
        notes = sorted(plan.stems["bass"].parts[0].notes, key=lambda n: n.start)
        for bar, (root_pc, _quality) in enumerate(plan.chords):
            start = bar * plan.bar_seconds
            if start >= plan.duration - 0.1:
                break
            first = min((n for n in notes if n.start >= start - 0.05), key=lambda n: n.start, default=None)
            assert first is not None and first.key % 12 == root_pc, (index, bar)


def test_vocal_melody_is_in_key_and_has_gaps():
    plan = make_song_plan(0, "train", 2, 20.0)
    scale = MAJOR if plan.mode == "major" else MINOR
    lead = plan.stems["vocals"].parts[0]
    assert all((n.key - plan.key) % 12 in scale for n in lead.notes)
    assert all(55 <= n.key <= 80 for n in lead.notes)
    gaps = plan.vocal_gaps()
    inner = [g for g in gaps if g[0] > 0 and g[1] < plan.duration]
    assert inner, "a 20-s song has silences between its vocal phrases"
    for start, end in inner:
        assert not any(start < n.start < end for n in lead.notes)


def test_vocal_expression_has_scoops_and_vibrato():
    bends = [b for i in range(6) for b in make_song_plan(0, "train", i, 20.0).stems["vocals"].parts[0].bends]
    assert min(c for _, c in bends) < -50  # a scoop starts well below the note
    assert max(c for _, c in bends) > 10  # vibrato goes above it
    assert all(-200 <= c <= 200 for _, c in bends)


def test_styles_and_programs_vary_across_songs():
    plans = [make_song_plan(0, "train", i, 20.0) for i in range(30)]
    assert len({p.style for p in plans}) >= 4
    assert len({p.stems["bass"].parts[0].program for p in plans}) >= 4
    assert len({p.stems["other"].parts[0].program for p in plans}) >= 6
    assert {s.kind for p in plans for s in p.sections} == {"verse", "chorus", "fill"}


def test_clock_swing():
    straight, swung = Clock(120, 0.5), Clock(120, 2 / 3)
    assert straight.time(1.5) == pytest.approx(0.75)
    assert swung.time(1.0) == pytest.approx(0.5) and swung.time(1.5) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_voicing_is_close_and_contains_the_chord():
    tones = chord_tones(7, "maj")  # G major
    voicing = _voicing(tones, None)
    assert sorted(k % 12 for k in voicing) == sorted(tones)
    assert voicing[-1] - voicing[0] < 12 and 52 <= voicing[0] and voicing[-1] <= 74
    following = _voicing(chord_tones(0, "maj"), voicing)
    assert abs(sum(following) / 3 - sum(voicing) / 3) <= 4  # voice leading: stays near
