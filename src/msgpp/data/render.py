"""Render a song plan to four float stereo stems with FluidSynth, and mix them on the int16 grid.

Each stem is rendered by a fresh synthesiser, so nothing (reverb tails, controller state, the
64-sample block phase) carries from one stem or song into the next: a song's audio depends on its
plan only, whatever else the worker rendered before. Creating a synthesiser is cheap because
FluidSynth shares the samples of a soundfont that is already loaded in the process; the
`Renderer` keeps one synthesiser alive holding the soundfont for that reason (loading it is the
slow part, ~0.3 s for FluidR3_GM).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from msgpp.constants import MUSDB_SAMPLE_RATE, SOURCES
from msgpp.data.plan import BLOCK, GATE_FADE, GATE_MIN_GAP, GATE_TAIL, Part, SongPlan, StemPlan
from msgpp.errors import MsgppError

SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian/Ubuntu fluid-soundfont-gm
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora/Arch
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
BEND_RANGE_CENTS = 200.0  # pitch-bend range set on every channel (RPN 0), ±2 semitones
FULL_SCALE = 32767


def default_soundfont() -> Path:
    """The General MIDI soundfont to use when none is given: $MSGPP_SOUNDFONT, else a system one."""
    import os

    configured = os.environ.get("MSGPP_SOUNDFONT")
    if configured:
        return check_soundfont(configured)
    for candidate in SOUNDFONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise MsgppError(
        "no General MIDI soundfont found; install one (Debian: apt-get install fluid-soundfont-gm) "
        "or pass --soundfont PATH (or set MSGPP_SOUNDFONT)"
    )


def check_soundfont(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: soundfont not found")
    if path.suffix.lower() not in (".sf2", ".sf3"):
        raise MsgppError(f"{path}: not a soundfont (expected a .sf2 or .sf3 file)")
    return path


def _fluidsynth():
    try:
        import fluidsynth
    except ImportError as error:  # pyfluidsynth raises ImportError when libfluidsynth is missing
        raise MsgppError(
            f"FluidSynth is not available ({error}); install it (Debian: apt-get install fluidsynth)"
        ) from None
    return fluidsynth


class Renderer:
    """Turns song plans into float32 stems shaped (2, samples). One per worker process."""

    def __init__(self, soundfont, sample_rate: int = MUSDB_SAMPLE_RATE):
        self.fluidsynth = _fluidsynth()
        self.soundfont = str(check_soundfont(soundfont))
        self.sample_rate = sample_rate
        self._silence_fluidsynth_log()
        self._write_float = self.fluidsynth._fl.fluid_synth_write_float
        self._write_float.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        self._write_float.restype = ctypes.c_int
        self._keeper, _ = self._new_synth()  # holds the soundfont's samples in FluidSynth's cache

    def _silence_fluidsynth_log(self) -> None:
        # FluidSynth prints warnings (e.g. missing presets) to stderr; keep only errors.
        library = self.fluidsynth._fl
        if hasattr(library, "fluid_set_log_function"):
            library.fluid_set_log_function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
            for level in (2, 3, 4):  # FLUID_WARN, FLUID_INFO, FLUID_DBG
                library.fluid_set_log_function(level, None, None)

    def _new_synth(self):
        synth = self.fluidsynth.Synth(
            gain=0.5,
            samplerate=self.sample_rate,
            **{"synth.cpu-cores": 1, "synth.polyphony": 256, "synth.reverb.active": 1, "synth.chorus.active": 1},
        )
        soundfont_id = synth.sfload(self.soundfont)
        if soundfont_id < 0:
            synth.delete()
            raise MsgppError(f"{self.soundfont}: FluidSynth could not load this soundfont")
        return synth, soundfont_id

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.delete()
            self._keeper = None

    def render_song(self, plan: SongPlan) -> dict[str, np.ndarray]:
        """{source: float32 (2, samples)}, each high-passed and with no negative L/R correlation."""
        return {source: self.render_stem(plan.stems[source], plan.duration) for source in SOURCES}

    def render_stem(self, stem: StemPlan, duration: float) -> np.ndarray:
        samples = int(round(duration * self.sample_rate))
        total = -(-samples // BLOCK) * BLOCK
        synth, soundfont_id = self._new_synth()
        try:
            audio = self._play(synth, soundfont_id, stem.parts, total)
        finally:
            synth.delete()
        audio = highpass(audio[:, :samples], stem.highpass_hz, self.sample_rate)
        if stem.gated:
            audio *= gate_envelope(stem, samples, self.sample_rate)
        return narrow_stereo(audio)

    def _play(self, synth, soundfont_id: int, parts: list[Part], total: int) -> np.ndarray:
        for part in parts:
            if synth.program_select(part.channel, soundfont_id, part.bank, part.program) != 0:
                raise MsgppError(
                    f"{self.soundfont}: no preset bank {part.bank} program {part.program} "
                    "(a General MIDI soundfont is needed)"
                )
            for control, value in (
                (7, part.volume),
                (10, part.pan),
                (91, part.reverb),
                (93, part.chorus),
                (101, 0),
                (100, 0),
                (6, int(BEND_RANGE_CENTS // 100)),
                (38, 0),
            ):
                synth.cc(part.channel, control, int(value))
        events = _events(parts, self.sample_rate, total)
        out = np.zeros((total, 2), dtype=np.float32)
        position = 0
        for block, _order, kind, channel, a, b in events:
            frame = block * BLOCK
            if frame > position:
                self._render_into(synth, out, position, frame)
                position = frame
            if kind == "bend":
                synth.pitch_bend(channel, a)
            elif kind == "on":
                synth.noteon(channel, a, b)
            else:
                synth.noteoff(channel, a)
        self._render_into(synth, out, position, total)
        return np.ascontiguousarray(out.T)

    def _render_into(self, synth, out: np.ndarray, start: int, end: int) -> None:
        if end <= start:
            return
        view = out[start:end]
        pointer = view.ctypes.data
        status = self._write_float(synth.synth, end - start, pointer, 0, 2, pointer, 1, 2)
        if status != 0:
            raise RuntimeError("FluidSynth failed to render audio")


def _events(parts: list[Part], sample_rate: int, total: int) -> list[tuple]:
    """All MIDI events of a stem, on 64-sample blocks, in play order. Within a block: note-offs,
    then pitch bends, then note-ons (a re-struck key is released before it sounds again, and a
    note starts at the bend value meant for it)."""
    last_block = total // BLOCK
    events = []

    def block_of(seconds: float) -> int:
        return min(last_block, int(round(seconds * sample_rate / BLOCK)))

    for part in parts:
        for note in part.notes:
            on = block_of(note.start)
            off = max(on + 1, block_of(note.start + note.duration))
            events.append((on, 2, "on", part.channel, note.key, note.velocity))
            events.append((off, 0, "off", part.channel, note.key, 0))
        for seconds, cents in part.bends:
            value = int(round(np.clip(cents / BEND_RANGE_CENTS, -1, 1) * 8191))
            events.append((block_of(seconds), 1, "bend", part.channel, value, 0))
    events.sort(key=lambda e: (e[0], e[1], e[3], e[4]))
    return events


def gate_envelope(stem: StemPlan, samples: int, sample_rate: int) -> np.ndarray:
    """1 while a phrase sounds and for GATE_TAIL s after it, a raised-cosine close over GATE_FADE s,
    then exactly 0 until 10 ms before the next phrase: real silence between vocal phrases, as in
    an edited vocal track, with the release and reverb tail left intact."""
    envelope = np.zeros(samples, dtype=np.float32)
    fade = np.float32(0.5) * (1 + np.cos(np.linspace(0, np.pi, int(GATE_FADE * sample_rate), dtype=np.float32)))
    for start, end in stem.active_spans(min_gap=GATE_MIN_GAP):
        a = max(0, int((start - 0.01) * sample_rate))
        b = min(samples, int((end + GATE_TAIL) * sample_rate))
        envelope[a:b] = 1
        c = min(samples, b + len(fade))
        envelope[b:c] = np.maximum(envelope[b:c], fade[: c - b])
    return envelope


def highpass(audio: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """Second-order Butterworth high-pass (removes DC and sub-bass rumble some presets carry)."""
    from scipy.signal import butter, sosfilt

    sos = butter(2, cutoff_hz, btype="highpass", fs=sample_rate, output="sos")
    return sosfilt(sos, audio.astype(np.float64), axis=-1).astype(np.float32)


def narrow_stereo(audio: np.ndarray) -> np.ndarray:
    """Shrink the side signal when left and right are negatively correlated (some presets are
    out of phase between channels, which real stems almost never are). With L = M + wS and
    R = M - wS, E[LR] = E[M²] - w²E[S²]; w is chosen so E[LR] = E[M²]/2 > 0."""
    mid = (audio[0] + audio[1]) / 2
    side = (audio[0] - audio[1]) / 2
    mid_power = float(np.mean(np.square(mid, dtype=np.float64)))
    side_power = float(np.mean(np.square(side, dtype=np.float64)))
    if side_power == 0 or mid_power - side_power >= 0:
        return audio
    width = np.float32(np.sqrt(0.5 * mid_power / side_power))
    return np.stack([mid + width * side, mid - width * side]).astype(np.float32)


def active_rms(audio: np.ndarray, sample_rate: int, frame_seconds: float = 0.1) -> float:
    """RMS of the louder half of 100-ms frames: a level that ignores rests (vocal gaps)."""
    frame = int(frame_seconds * sample_rate)
    count = audio.shape[-1] // frame
    if count == 0:
        return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    frames = audio[:, : count * frame].reshape(audio.shape[0], count, frame)
    power = np.mean(np.square(frames, dtype=np.float64), axis=(0, 2))
    loud = np.sort(power)[count // 2 :]
    return float(np.sqrt(np.mean(loud)))


def mix_to_int16(stems: dict[str, np.ndarray], plan: SongPlan, sample_rate: int) -> dict[str, np.ndarray]:
    """Balance the stems, quantise each to int16 and sum the integers into the mixture.

    The stems are first brought to the same active level, then each gets its plan's gain; one
    overall gain puts the mixture's peak at `plan.mix_peak`. Rounding moves a sample by at most
    half a step per stem, so the integer sum stays below full scale: nothing clips, and the
    mixture file is exactly the sum of the stem files.
    Returns {"mixture": int16 (2, n), source: int16 (2, n), ...}.
    """
    balanced = {}
    for source, audio in stems.items():
        level = active_rms(audio, sample_rate)
        gain = 10 ** (plan.stems[source].gain_db / 20) / level if level > 0 else 0.0
        balanced[source] = audio.astype(np.float64) * gain
    total = sum(balanced.values())
    peak = max([float(np.abs(total).max())] + [float(np.abs(a).max()) for a in balanced.values()])
    scale = plan.mix_peak * FULL_SCALE / peak if peak > 0 else 0.0
    out = {source: np.round(audio * scale).astype(np.int16) for source, audio in balanced.items()}
    mixture = sum(a.astype(np.int32) for a in out.values())
    if np.abs(mixture).max() > FULL_SCALE:  # cannot happen with mix_peak < 1 - 4/32767; kept as a guard
        raise RuntimeError(f"{plan.name}: mixture exceeds full scale")
    return {"mixture": mixture.astype(np.int16), **out}
