"""Seeded song plans: what each of the four stems plays, as MIDI-like notes in seconds.

A plan is pure data made from `(seed, subset, index)` alone, so any worker can rebuild any song
and the result does not depend on the order songs are made in. The renderer turns a plan into
audio; nothing here touches a synthesiser.

Musical model (4/4, one chord per bar):
- tempo 78–150 BPM, a key (major or minor), a verse and a chorus progression;
- sections verse / chorus / fill (a one-bar break where the drums play a fill);
- drums: GM kits in styles rock / funk / half-time / shuffle / four-on-the-floor, with fills at
  section ends, crashes on section starts, swing and timing/velocity jitter;
- bass: GM programs 32–39 following the chord roots (roots, root-fifth, octaves, walking,
  syncopated);
- vocals: a voice-like GM program singing phrases with gaps of real silence, scoops into
  notes and delayed vibrato (both as pitch-bend curves), sometimes a harmony in the chorus;
- other: a comping instrument (piano, e-piano, organ, guitars) and sometimes a pad or strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from msgpp.constants import SOURCES, SUBSETS

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
KEY_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")

# Progressions as 0-based scale degrees, one chord per bar.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 3), (0, 3, 5, 4), (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (5, 6, 0, 0)),
}

DRUM_STYLES = ("rock", "funk", "half-time", "shuffle", "four")
STYLE_TEMPI = {  # BPM range in which each groove sounds natural; together they cover 78–150
    "rock": (78, 150),
    "funk": (78, 124),
    "half-time": (100, 150),
    "shuffle": (78, 140),
    "four": (100, 150),
}
DRUM_KITS = {  # GM drum-kit presets (bank 128) that suit each style
    "rock": (0, 8, 16),
    "funk": (0, 8, 24),
    "half-time": (0, 16, 24, 25),
    "shuffle": (0, 8, 32, 40),
    "four": (0, 24, 25),
}
BASS_PATTERNS = {  # style → the bass patterns that fit it
    "rock": ("roots", "root-fifth", "octaves"),
    "funk": ("syncopated", "octaves"),
    "half-time": ("root-fifth", "syncopated", "roots"),
    "shuffle": ("walking", "root-fifth"),
    "four": ("octaves", "roots", "syncopated"),
}
BASS_PROGRAMS = {  # GM 32–39
    "rock": (33, 34, 37),
    "funk": (36, 37, 33),
    "half-time": (33, 35, 38, 39),
    "shuffle": (32, 33, 35),
    "four": (38, 39, 33),
}
VOCAL_PROGRAMS = (52, 53, 54, 85)  # Choir Aahs, Voice Oohs, Synth Voice, Solo Vox (lead)
COMP_PROGRAMS = {
    "piano": (0, 1, 2),
    "e-piano": (4, 5),
    "organ": (16, 17, 18),
    "guitar": (24, 25, 26, 27),
    "drive-guitar": (29, 30),
}
PAD_PROGRAMS = (48, 49, 50, 88, 89, 90, 91, 92, 94, 95)

# GM drum notes
KICK, SNARE, RIM, CLAP, HAT, PEDAL_HAT, OPEN_HAT, RIDE, CRASH, CRASH2 = 36, 38, 37, 39, 42, 44, 46, 51, 49, 57
TOMS = (50, 48, 47, 45, 43, 41)  # high to low

DRUM_CHANNEL = 9
# The vocal gate: open from a phrase's first note to GATE_TAIL s after its last note ends, then
# closing over GATE_FADE s; phrases closer than GATE_MIN_GAP s count as one.
GATE_TAIL, GATE_FADE, GATE_MIN_GAP = 0.5, 0.25, 0.3
BLOCK = 64  # FluidSynth renders in blocks of 64 samples; events are placed on block edges


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    duration: float
    key: int
    velocity: int


@dataclass
class Part:
    """One instrument on one MIDI channel."""

    name: str
    channel: int
    bank: int
    program: int
    notes: list[Note] = field(default_factory=list)
    pan: int = 64  # CC10, 0 = left, 127 = right
    volume: int = 100  # CC7
    reverb: int = 40  # CC91 send
    chorus: int = 0  # CC93 send
    bends: list[tuple[float, float]] = field(default_factory=list)  # (seconds, cents), pitch-bend curve


@dataclass
class StemPlan:
    source: str
    parts: list[Part]
    gain_db: float  # level relative to the other stems in the mix
    highpass_hz: float
    gated: bool = False  # silence between phrases, past the release/reverb tail (vocals)

    def active_spans(self, min_gap: float = 0.0) -> list[tuple[float, float]]:
        """(start, end) seconds during which some note of this stem is held; spans closer than
        `min_gap` are merged."""
        spans = sorted((n.start, n.start + n.duration) for part in self.parts for n in part.notes)
        merged: list[list[float]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1] + min_gap:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return [(a, b) for a, b in merged]


@dataclass(frozen=True)
class Section:
    kind: str  # verse, chorus, fill
    start_bar: int
    bars: int


@dataclass
class SongPlan:
    name: str
    subset: str
    index: int
    seed: int
    duration: float
    tempo: float
    key: int
    mode: str
    swing: float
    style: str
    sections: list[Section]
    chords: list[tuple[int, str]]  # per bar: (root pitch class, "maj"/"min"/"dim")
    stems: dict[str, StemPlan]
    mix_peak: float  # peak of the mixture, as a fraction of full scale

    @property
    def bar_seconds(self) -> float:
        return 4 * 60.0 / self.tempo

    def vocal_gaps(self, release: float = GATE_TAIL + GATE_FADE) -> list[tuple[float, float]]:
        """Stretches where the vocals are silent: before the first phrase and between phrases,
        starting `release` seconds after a phrase's last note ends (when the gate has closed).
        Only stretches of at least 0.25 s are returned."""
        spans = self.stems["vocals"].active_spans(min_gap=GATE_MIN_GAP)
        gaps, previous_end = [], 0.0
        for start, end in spans + [(self.duration, self.duration)]:
            gap_start = previous_end + (release if previous_end > 0 else 0.0)
            gap_end = min(start - 0.02, self.duration)  # the gate opens 10 ms before a phrase: stay clear
            if gap_end - gap_start >= 0.25:
                gaps.append((gap_start, gap_end))
            previous_end = end
        return gaps

    def summary(self) -> dict:
        """A short JSON-able description (for the manifest and for people)."""
        return {
            "tempo": round(self.tempo, 2),
            "key": f"{KEY_NAMES[self.key]} {self.mode}",
            "style": self.style,
            "swing": round(self.swing, 3),
            "sections": [f"{s.kind}:{s.bars}" for s in self.sections],
            "programs": {
                source: [f"{p.name}:{p.bank}:{p.program}" for p in stem.parts] for source, stem in self.stems.items()
            },
        }


def track_name(subset: str, index: int) -> str:
    return f"{subset}-{index:03d}"


def song_rng(seed: int, subset: str, index: int) -> np.random.Generator:
    """The random stream of one song: a function of (seed, subset, index) only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SUBSETS.index(subset), int(index)]))


def make_song_plan(seed: int, subset: str, index: int, duration: float) -> SongPlan:
    rng = song_rng(seed, subset, index)
    tempo = float(rng.uniform(78, 150))
    style = str(rng.choice([name for name in DRUM_STYLES if STYLE_TEMPI[name][0] <= tempo <= STYLE_TEMPI[name][1]]))
    # (all three draws happen whatever the style, which keeps the random stream's layout fixed)
    swing = {"shuffle": rng.uniform(0.62, 0.68), "funk": rng.uniform(0.5, 0.56)}.get(
        style, rng.choice([0.5, 0.5, 0.54])
    )
    key = int(rng.integers(12))
    mode = str(rng.choice(["major", "minor"]))
    bar = 4 * 60.0 / tempo
    sections = _make_sections(rng, bars_needed=math.ceil(duration / bar) + 1)
    chords = _make_chords(rng, key, mode, sections)
    clock = Clock(tempo, float(swing))
    stems = {
        "drums": _drums(rng, clock, style, sections),
        "bass": _bass(rng, clock, style, key, mode, chords, sections),
        "other": _other(rng, clock, style, chords, sections),
        "vocals": _vocals(rng, clock, key, mode, chords, sections, duration),
    }
    for stem in stems.values():  # the excerpt ends at `duration`: drop notes that start after it
        for part in stem.parts:
            part.notes = [n for n in part.notes if n.start < duration - 0.05]
            part.bends = [b for b in part.bends if b[0] < duration]
    return SongPlan(
        name=track_name(subset, index),
        subset=subset,
        index=index,
        seed=seed,
        duration=duration,
        tempo=tempo,
        key=key,
        mode=mode,
        swing=float(swing),
        style=style,
        sections=sections,
        chords=chords,
        stems={source: stems[source] for source in SOURCES},
        mix_peak=float(10 ** (rng.uniform(-6, -1) / 20)),
    )


class Clock:
    """Beats → seconds, with swing on the off-beat eighths (and the sixteenths around them)."""

    def __init__(self, tempo: float, swing: float):
        self.beat = 60.0 / tempo
        self.swing = swing

    def time(self, beats: float) -> float:
        whole = math.floor(beats)
        frac = beats - whole
        s = self.swing
        if frac < 0.5:  # first eighth stretched (or squeezed) to length s
            swung = frac / 0.5 * s
        else:
            swung = s + (frac - 0.5) / 0.5 * (1 - s)
        return (whole + swung) * self.beat


def _make_sections(rng, bars_needed: int) -> list[Section]:
    sections, bar = [], 0
    kind = str(rng.choice(["verse", "verse", "chorus"]))
    while bar < bars_needed:
        if kind == "fill":
            bars = 1
        else:
            bars = int(rng.choice([4, 8])) if kind == "verse" else 4
        sections.append(Section(kind, bar, bars))
        bar += bars
        if kind == "verse":
            kind = "fill" if rng.random() < 0.35 else "chorus"
        elif kind == "fill":
            kind = "chorus"
        else:
            kind = "verse"
    return sections


def _triad(key: int, mode: str, degree: int) -> tuple[int, str]:
    scale = MAJOR if mode == "major" else MINOR
    root = scale[degree % 7]
    third = (scale[(degree + 2) % 7] - root) % 12
    fifth = (scale[(degree + 4) % 7] - root) % 12
    quality = "maj" if third == 4 else ("dim" if fifth == 6 else "min")
    return (key + root) % 12, quality


def _make_chords(rng, key, mode, sections) -> list[tuple[int, str]]:
    options = PROGRESSIONS[mode]
    verse, chorus = (options[i] for i in rng.choice(len(options), size=2, replace=False))
    chords = []
    for section in sections:
        for b in range(section.bars):
            if section.kind == "fill":
                degree = 4  # the dominant, leading into the next section
            else:
                degree = (verse if section.kind == "verse" else chorus)[b % 4]
            chords.append(_triad(key, mode, degree))
    return chords


def chord_tones(root: int, quality: str, seventh: bool = False) -> list[int]:
    third = {"maj": 4, "min": 3, "dim": 3}[quality]
    fifth = 6 if quality == "dim" else 7
    tones = [0, third, fifth] + ([10 if quality != "maj" else 11] if seventh else [])
    return [(root + t) % 12 for t in tones]


def _jitter(rng, seconds: float, velocity: float, t_sd: float, v_sd: float) -> tuple[float, int]:
    t = max(0.0, seconds + rng.normal(0, t_sd))
    v = int(np.clip(round(velocity + rng.normal(0, v_sd)), 1, 127))
    return t, v


# ----------------------------------------------------------------------------------------- drums
def _drum_bar(rng, style: str, kind: str) -> list[tuple[int, int, int]]:
    """(sixteenth step 0–15, drum note, base velocity) of one groove bar."""
    hits = []
    big = kind == "chorus"
    cymbal = (RIDE if rng.random() < 0.5 else OPEN_HAT) if big else HAT
    if style == "rock":
        kicks = [0, 8] + [int(s) for s in rng.choice([6, 10, 14], size=rng.integers(0, 2), replace=False)]
        hits += [(s, KICK, 105) for s in kicks] + [(4, SNARE, 110), (12, SNARE, 110)]
        hits += [(s, cymbal, 95 if s % 4 == 0 else 70) for s in range(0, 16, 2)]
    elif style == "funk":
        kicks = [0, 3, 10] if rng.random() < 0.5 else [0, 6, 10, 13]
        hits += [(s, KICK, 100) for s in kicks] + [(4, SNARE, 112), (12, SNARE, 112)]
        hits += [(int(s), SNARE, 32) for s in rng.choice([2, 7, 9, 11, 15], size=2, replace=False)]  # ghost notes
        hits += [(s, HAT, 85 if s % 2 == 0 else 55) for s in range(16) if not (big and s == 14)]
        if big:
            hits.append((14, OPEN_HAT, 85))
    elif style == "half-time":
        hits += [(0, KICK, 108), (int(rng.choice([7, 10, 11])), KICK, 95), (8, SNARE, 115)]
        step = 1 if rng.random() < 0.4 else 2
        hits += [(s, cymbal, 88 if s % 4 == 0 else 62) for s in range(0, 16, step)]
    elif style == "shuffle":
        hits += [(0, KICK, 105), (8, KICK, 100), (4, SNARE, 108), (12, SNARE, 108)]
        if rng.random() < 0.5:
            hits.append((10, KICK, 85))
        hits += [(s, RIDE if big else HAT, 92 if s % 4 == 0 else 66) for s in range(0, 16, 2)]
    else:  # four on the floor
        hits += [(s, KICK, 108) for s in (0, 4, 8, 12)]
        hits += [(4, CLAP if rng.random() < 0.5 else SNARE, 100), (12, SNARE, 105)]
        hits += [(s, OPEN_HAT if s % 4 == 2 else HAT, 80 if s % 4 == 2 else 60) for s in range(2, 16, 2)]
    return hits


def _drum_fill(rng, beats: int) -> list[tuple[int, int, int]]:
    """A fill over the last `beats` beats of a bar: sixteenths down the toms, getting louder."""
    start = 16 - 4 * beats
    order = [SNARE] * 2 + list(TOMS)
    steps = list(range(start, 16, 1 if rng.random() < 0.6 else 2))
    hits = []
    for i, s in enumerate(steps):
        drum = order[min(len(order) - 1, i * len(order) // len(steps))]
        hits.append((s, drum, int(80 + 40 * i / max(1, len(steps) - 1))))
    return hits + [(start, KICK, 100)]


def _drums(rng, clock: Clock, style: str, sections: list[Section]) -> StemPlan:
    kit = int(rng.choice(DRUM_KITS[style]))
    notes = []
    for si, section in enumerate(sections):
        for b in range(section.bars):
            bar = section.start_bar + b
            last_of_section = b == section.bars - 1
            if section.kind == "fill":
                hits = [h for h in _drum_bar(rng, style, "verse") if h[0] < 8] + _drum_fill(rng, 2)
            elif last_of_section and si + 1 < len(sections) and rng.random() < 0.8:
                beats = int(rng.choice([1, 2]))
                groove = [h for h in _drum_bar(rng, style, section.kind) if h[0] < 16 - 4 * beats]
                hits = groove + _drum_fill(rng, beats)
            else:
                hits = _drum_bar(rng, style, section.kind)
            if b == 0 and (si > 0 or rng.random() < 0.5):
                hits.append((0, CRASH if rng.random() < 0.7 else CRASH2, 110))
            for step, drum, velocity in hits:
                t, v = _jitter(rng, clock.time(4 * bar + step / 4), velocity, 0.003, 6)
                length = 1.2 if drum in (CRASH, CRASH2, RIDE, OPEN_HAT) else 0.25
                notes.append(Note(t, length, drum, v))
    part = Part("kit", DRUM_CHANNEL, 128, kit, notes, pan=64, volume=110, reverb=int(rng.integers(20, 60)))
    return StemPlan("drums", [part], gain_db=0.0, highpass_hz=20.0)


# ------------------------------------------------------------------------------------------ bass
def _bass(rng, clock, style, key, mode, chords, sections) -> StemPlan:
    program = int(rng.choice(BASS_PROGRAMS[style]))
    patterns = BASS_PATTERNS[style]
    verse_pattern, chorus_pattern = str(rng.choice(patterns)), str(rng.choice(patterns))
    scale = MAJOR if mode == "major" else MINOR
    staccato = rng.random() < 0.4
    notes = []
    for section, bar, root_pc, quality in _section_bars(sections, chords):
        next_pc = chords[bar + 1][0] if bar + 1 < len(chords) else root_pc
        root = 28 + (root_pc - 4) % 12  # E1 .. Eb2
        fifth = root + (6 if quality == "dim" else 7)
        third = root + (4 if quality == "maj" else 3)
        if section.kind == "fill":
            events = [(0, root, 2.0, 105)]
        else:
            pattern = verse_pattern if section.kind == "verse" else chorus_pattern
            events = _bass_bar(rng, pattern, root, third, fifth, next_pc, key, scale)
        for beat, key_number, length, velocity in events:
            start = clock.time(4 * bar + beat)
            end = clock.time(4 * bar + beat + length * (0.55 if staccato else 0.92))
            t, v = _jitter(rng, start, velocity, 0.005, 7)
            notes.append(Note(t, max(0.05, end - start), int(key_number), v))
    part = Part("bass", 0, 0, program, notes, pan=64, volume=110, reverb=int(rng.integers(0, 25)))
    return StemPlan("bass", [part], gain_db=float(rng.uniform(-2, 1)), highpass_hz=20.0)


def _bass_bar(rng, pattern, root, third, fifth, next_pc, key, scale):
    """(beat, key, length in beats, velocity) of one bar."""
    if pattern == "roots":
        step = 0.5 if rng.random() < 0.7 else 1.0
        return [(i * step, root, step, 100 if (i * step) % 1 == 0 else 88) for i in range(int(4 / step))]
    if pattern == "root-fifth":
        pickup = fifth if rng.random() < 0.5 else root + 12
        return [(0, root, 1.5, 105), (1.5, root, 0.5, 85), (2, fifth, 1.5, 100), (3.5, pickup, 0.5, 85)]
    if pattern == "octaves":
        return [(i * 0.5, root + (12 if i % 2 else 0), 0.5, 100 if i % 2 == 0 else 90) for i in range(8)]
    if pattern == "walking":
        target = 28 + (next_pc - 4) % 12
        approach = target + int(rng.choice([-1, 1, -2, 2]))
        middle = int(rng.choice([third, fifth, root + 12]))
        return [(0, root, 1, 105), (1, middle, 1, 92), (2, fifth, 1, 95), (3, approach, 1, 90)]
    # syncopated: a sixteenth-grid figure that lands around the kick
    steps = sorted({0, 3, 6, 10} | {int(s) for s in rng.choice([8, 11, 13, 14], size=2, replace=False)})
    keys = [root, root, root + 12, fifth, root, root + 12, fifth]
    out = []
    for i, s in enumerate(steps):
        nxt = steps[i + 1] if i + 1 < len(steps) else 16
        out.append((s / 4, keys[i % len(keys)] if i else root, (nxt - s) / 4, 108 if s % 4 == 0 else 92))
    return out


# ----------------------------------------------------------------------------------------- other
def _voicing(tones_pc: list[int], previous: list[int] | None, low: int = 52, high: int = 74) -> list[int]:
    """Close-position voicing of the chord's pitch classes, as near the previous voicing as possible."""
    candidates = []
    for inversion in range(len(tones_pc)):
        order = tones_pc[inversion:] + tones_pc[:inversion]
        for base in range(low, low + 12):
            if base % 12 != order[0]:
                continue
            voicing = [base]
            for pc in order[1:]:
                k = voicing[-1] + 1
                while k % 12 != pc:
                    k += 1
                voicing.append(k)
            if voicing[-1] <= high:
                candidates.append(voicing)
    reference = previous or [62] * len(tones_pc)
    centre = sum(reference) / len(reference)
    return min(candidates, key=lambda v: (abs(sum(v) / len(v) - centre), v))


def _other(rng, clock, style, chords, sections) -> StemPlan:
    families = ["piano", "e-piano", "organ", "guitar"] + (["drive-guitar"] if style != "shuffle" else [])
    family = str(rng.choice(families))
    program = int(rng.choice(COMP_PROGRAMS[family]))
    comp_style = {
        "piano": ("block", "arpeggio", "offbeat"),
        "e-piano": ("block", "offbeat", "arpeggio"),
        "organ": ("sustain", "offbeat"),
        "guitar": ("strum", "arpeggio", "offbeat"),
        "drive-guitar": ("power",),
    }[family]
    pattern = str(rng.choice(comp_style))
    sevenths = family in ("e-piano", "piano") and rng.random() < 0.5
    side = 1 if rng.random() < 0.5 else -1
    comp = Part(
        family,
        0,
        0,
        program,
        pan=int(64 + side * rng.integers(20, 50)),
        volume=100,
        reverb=int(rng.integers(25, 70)),
        chorus=int(rng.integers(0, 40)),
    )
    pad = None
    if rng.random() < 0.6:
        pad = Part(
            "pad",
            1,
            0,
            int(rng.choice(PAD_PROGRAMS)),
            pan=int(64 - side * rng.integers(10, 40)),
            volume=int(rng.integers(70, 95)),
            reverb=int(rng.integers(40, 90)),
            chorus=int(rng.integers(20, 60)),
        )
        pad_everywhere = rng.random() < 0.4
    previous = None
    for section, bar, root_pc, quality in _section_bars(sections, chords):
        tones = chord_tones(root_pc, quality, seventh=sevenths)
        voicing = _voicing(tones, previous)
        previous = voicing
        for beat, keys, length, velocity, spread in _comp_bar(rng, pattern, voicing, root_pc, section.kind):
            for i, k in enumerate(keys):
                start = clock.time(4 * bar + beat) + i * spread
                end = clock.time(4 * bar + beat + length)
                t, v = _jitter(rng, start, velocity, 0.006, 8)
                comp.notes.append(Note(t, max(0.05, end - start - 0.02), int(k), v))
        if pad is not None and (section.kind == "chorus" or pad_everywhere):
            for k in _voicing(chord_tones(root_pc, quality), None, 55, 79):
                start = clock.time(4 * bar)
                pad.notes.append(Note(start, clock.time(4 * bar + 4) - start - 0.01, k, int(rng.integers(60, 85))))
    parts = [comp] + ([pad] if pad is not None and pad.notes else [])
    return StemPlan("other", parts, gain_db=float(rng.uniform(-3, 0)), highpass_hz=20.0)


def _comp_bar(rng, pattern, voicing, root_pc, kind):
    """(beat, keys, length in beats, velocity, seconds between the keys) of one bar."""
    loud = 8 if kind == "chorus" else 0
    if kind == "fill":
        return [(0, voicing, 2.0, 85 + loud, 0.0)]
    if pattern == "block":
        step = 1.0 if rng.random() < 0.6 else 2.0
        return [(i * step, voicing, step * 0.9, 80 + loud, 0.0) for i in range(int(4 / step))]
    if pattern == "arpeggio":
        order = voicing + [voicing[0] + 12] + voicing[1:][::-1]
        return [(i * 0.5, [order[i % len(order)]], 0.9, 78 + loud, 0.0) for i in range(8)]
    if pattern == "offbeat":
        return [(b + 0.5, voicing, 0.35, 82 + loud, 0.0) for b in range(4)]
    if pattern == "sustain":
        return [(0, voicing, 3.9, 88 + loud, 0.0)]
    if pattern == "strum":
        # down on the beats, up on some off-beats; strings 8–18 ms apart
        out = []
        for eighth in range(8):
            if eighth % 2 == 0 or rng.random() < 0.5:
                keys = [voicing[0] - 12] + voicing if eighth % 2 == 0 else voicing[::-1]
                velocity = (88 if eighth % 2 == 0 else 70) + loud
                out.append((eighth * 0.5, keys, 0.5, velocity, float(rng.uniform(0.008, 0.018))))
        return out
    # power chords: root + fifth + octave, palm-muted eighths
    low = 40 + (root_pc - 4) % 12
    return [(i * 0.5, [low, low + 7, low + 12], 0.45, (100 if i % 2 == 0 else 85) + loud, 0.0) for i in range(8)]


# ---------------------------------------------------------------------------------------- vocals
def _vocals(rng, clock, key, mode, chords, sections, duration) -> StemPlan:
    program = int(rng.choice(VOCAL_PROGRAMS))
    scale = MAJOR if mode == "major" else MINOR
    # the singable scale notes, about G3..A5, sung around the key's tonic
    low = 55 + rng.integers(0, 5)
    pitches = [k for k in range(low, low + 19) if (k - key) % 12 in scale]
    lead = Part(
        "lead", 0, 0, program, pan=64, volume=110, reverb=int(rng.integers(30, 70)), chorus=int(rng.integers(0, 30))
    )
    harmony = None
    if rng.random() < 0.5:
        harmony = Part(
            "harmony",
            1,
            0,
            int(rng.choice(VOCAL_PROGRAMS)),
            pan=int(64 + rng.choice([-1, 1]) * rng.integers(15, 35)),
            volume=90,
            reverb=lead.reverb,
        )
    current = int(rng.integers(len(pitches) // 3, 2 * len(pitches) // 3))
    # the voice comes in on one of the first bars, but within the first 40 % of a short excerpt
    first_bar = min(int(rng.choice([0, 1, 2])), int(0.4 * duration / (4 * clock.beat)))
    phrase_ends: list[float] = []
    for section in sections:
        if section.kind == "fill":
            continue
        bar = max(section.start_bar, first_bar)
        end_bar = section.start_bar + section.bars
        while bar < end_bar:
            phrase_bars = int(min(rng.choice([1, 2, 2, 3]), end_bar - bar))
            if phrase_bars <= 0:
                break
            start_beat = 4 * bar + float(rng.choice([0, 0.5, 1.0]))
            end_beat = 4 * (bar + phrase_bars) - float(rng.choice([0.5, 1.0]))
            notes, current = _phrase(rng, clock, start_beat, end_beat, chords, pitches, current)
            lead.notes.extend(notes)
            if harmony is not None and section.kind == "chorus":
                for n in notes:
                    index = pitches.index(n.key) if n.key in pitches else None
                    if index is not None and index >= 2:
                        harmony.notes.append(Note(n.start, n.duration, pitches[index - 2], max(1, n.velocity - 15)))
            phrase_ends.append(notes[-1].start + notes[-1].duration if notes else 0.0)
            bar += phrase_bars + int(rng.choice([1, 1, 2]))  # the gap: at least one bar of silence
    lead.bends = _expression(rng, lead.notes)
    parts = [lead]
    if harmony is not None and harmony.notes:
        harmony.bends = list(lead.bends)  # the same singer's inflections
        parts.append(harmony)
    return StemPlan("vocals", parts, gain_db=float(rng.uniform(0, 3)), highpass_hz=60.0, gated=True)


def _phrase(rng, clock, start_beat, end_beat, chords, pitches, current):
    """A melodic phrase on an eighth-note grid: mostly steps, chord tones on strong beats, a
    long last note."""
    onsets = [start_beat]
    beat = start_beat
    while True:
        beat += float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
        if beat >= end_beat - 0.5:
            break
        onsets.append(beat)
    notes = []
    for i, onset in enumerate(onsets):
        following = onsets[i + 1] if i + 1 < len(onsets) else end_beat
        bar = int(onset // 4)
        root_pc, quality = chords[min(bar, len(chords) - 1)]
        tones = chord_tones(root_pc, quality)
        if rng.random() < 0.7:
            current = int(np.clip(current + rng.choice([-2, -1, -1, 1, 1, 2, 0]), 0, len(pitches) - 1))
        else:
            current = int(rng.integers(0, len(pitches)))
        if onset % 2 == 0:  # strong beat: move to the nearest chord tone
            near = [j for j in range(len(pitches)) if pitches[j] % 12 in tones]
            current = min(near, key=lambda j: abs(j - current))
        start = clock.time(onset)
        end = clock.time(following) - (0.03 if i + 1 < len(onsets) else 0.0)
        t, v = _jitter(rng, start, 92 if onset % 1 == 0 else 82, 0.01, 8)
        notes.append(Note(t, max(0.08, end - t), pitches[current], v))
    return notes, current


def _expression(rng, notes: list[Note]) -> list[tuple[float, float]]:
    """A pitch-bend curve in cents: scoops up into some notes, vibrato that fades in on long ones.
    Every note starts from its own first point, so no bend leaks from one note into the next."""
    bends = []
    step = BLOCK * 3 / 44100  # ~4.4 ms between points
    for n in notes:
        points = [(n.start, 0.0)]
        if rng.random() < 0.35:
            depth = -float(rng.uniform(60, 200))
            length = float(rng.uniform(0.06, 0.14))
            points = [(n.start + t, depth * (1 - t / length) ** 2) for t in np.arange(0, length, step)]
            points.append((n.start + length, 0.0))
        if n.duration > 0.45:
            rate = float(rng.uniform(4.8, 6.5))
            depth = float(rng.uniform(15, 40))
            onset = float(rng.uniform(0.15, 0.3))
            for t in np.arange(onset, n.duration, 2 * step):
                fade = min(1.0, (t - onset) / 0.25)
                points.append((n.start + t, fade * depth * math.sin(2 * math.pi * rate * (t - onset))))
        bends.extend(points)
    bends.sort()
    return bends


def _section_bars(sections, chords):
    """(section, bar, root pitch class, chord quality) for every bar of every section that has a chord."""
    for section in sections:
        for bar in range(section.start_bar, section.start_bar + section.bars):
            if bar >= len(chords):
                break
            root_pc, quality = chords[bar]
            yield section, bar, root_pc, quality
