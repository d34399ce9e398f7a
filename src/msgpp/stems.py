"""Song in, stems out: separate songs with a registered separator, enhance each stem with its MSG
enhancer, optionally make the stems add up to the song again, and write them.

    stems = msgpp.separate_song(mixture, 44100)          # {"drums": array, "bass": ..., ...}
    msgpp.separate_file("song.mp3", "stems/")            # stems/song/{drums,bass,other,vocals}.wav
    msgpp separate song.mp3 --enhance --out stems/       # the command line (msgpp.stems_commands)

One pipeline serves arrays and files (`StemSplitter`), so the Python functions and the command
give the same samples:

1. **Separation in blocks.** The song is read in blocks and cut into overlapping blocks of
   `block` seconds (default 30) at its own rate, overlapping by `block_overlap` seconds (default 3). Each
   block goes through `separator.separate` (which resamples to the model's rate, chunks and
   crossfades inside the block); neighbouring blocks drop a quarter of the overlap at their edges
   and crossfade over the middle half with weights that sum to one (msgpp.overlap_add). A song
   shorter than one block is separated in one piece, exactly as `separator.separate` would.
2. **Enhancement** of each requested stem by the Enhancer's streaming pipeline (per-channel
   peak gain from the whole stem, 16 kHz model, full band kept), one enhancer per source,
   loaded once per run.
3. **Consistency** (`consistent=True`): the residual r = mixture − Σ stems is shared among the
   separator's stems, bin by bin in an STFT (2048-point Hann, hop 512): stem i gets the share
   |S_i|² / Σ_j |S_j|² of R in each bin (an equal share where every stem is silent), like a
   Wiener filter applied to what the stems miss or add. After the inverse STFT a last sample-wise
   correction splits the rounding error equally, so the stems sum to the mixture to float
   precision (about 1e-7 on float output). All the separator's stems take part: with `stems=`
   a subset, the stems not asked for absorb their share and are not returned, so the ones
   returned do not add up to the mixture on their own.
4. **Output.** Files are written in the input's rate and channel count, at the input's depth by
   default, under temporary names in a hidden work folder inside the output folder; when every
   stem of a song is complete they are renamed into place. An error or Ctrl-C leaves none of that
   song's files (and removes the work folder).

Memory. For files every intermediate stem lives in a float32 file in the work folder, never in
memory, so what is held is one block per stage: the separator's input and output for one block
(`block` seconds × channels × sources, plus the separator's own chunk), one enhancer segment
batch, and the consistency step's 10-s segments — flat in the song's length. Disk: the work
folder holds up to 3 float32 copies of each stem while a song is processed (a 5-minute stereo
song at 44.1 kHz: about 100 MB per copy of one stem). `separate_song` keeps its intermediates
in memory (it returns whole arrays anyway).
"""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from msgpp.audio import FLOAT_SUBTYPES, channel_gains, check_audio_file, checked_signal, load_audio
from msgpp.constants import AUDIO_FORMATS, CLIP_POLICIES, OUTPUT_FORMATS
from msgpp.enhance.jobs import (
    FileJob,
    check_output,
    output_subtype,
    progress_bar,
    read_blocks,
    scan_peaks,
    write_blocks,
)
from msgpp.errors import AudioError, MsgppError
from msgpp.files import work_folder
from msgpp.overlap_add import OverlapAdd

DEFAULT_SEPARATOR = "hdemucs_v3"
DEFAULT_FILENAME = "{track}/{stem}.{ext}"
FILENAME_FIELDS = ("track", "stem", "ext")
BLOCK_SECONDS = 30.0  # separation block at the song's rate
BLOCK_OVERLAP = 3.0  # seconds shared by neighbouring blocks
RAW_SUFFIX = "_raw"  # --keep-raw: the separator's stem is written as "<stem>_raw"
READ_FRAMES = 1 << 16  # frames per block read from a file or handed between stages
CONSISTENT_SEGMENT = 10.0  # seconds per STFT segment of the consistency step
CONSISTENT_OVERLAP = 1.0
N_FFT, HOP = 2048, 512
_EPS = 1e-12
# Inputs in a lossless format give outputs in their own format by default ({ext}); others give wav.
LOSSLESS_FORMATS = {
    ext: container.lower() for ext, container in AUDIO_FORMATS.items() if container in ("WAV", "FLAC", "AIFF")
}
# Formats read through ffmpeg (decoded to a float WAV in the work folder first).
FFMPEG_EXTENSIONS = (".m4a", ".aac", ".alac", ".opus", ".wma", ".mp4", ".webm", ".mka", ".ape", ".wv")
AUDIO_EXTENSIONS = tuple(AUDIO_FORMATS) + FFMPEG_EXTENSIONS


# -- the Python API ----------------------------------------------------------------------------
def separate_song(
    audio,
    sample_rate: int,
    separator="hdemucs_v3",
    enhance: bool = True,
    stems=None,
    consistent: bool = False,
    **options,
) -> dict:
    """Separate a song held in memory into {stem: array}, each the input's shape, rate and type.

    audio       (channels, samples) or (samples,) floats, any rate (NumPy, or a torch tensor:
                tensors come back as tensors)
    separator   a registered name (msgpp.separators.names()) or a loaded Separator
    enhance     put each stem through the MSG enhancer for its source
    stems       the stems to return (names or "bass,drums"; default: all the separator's)
    consistent  the returned stems (with the ones not asked for) sum to the mixture
    options     keep_raw (also return "<stem>_raw": the separator's own estimate), enhancers
                ({source: shipped name, weights file or Enhancer}), weights (the separator's),
                device, backend, block, block_overlap, progress (True: a bar)

    To separate many songs, build one `StemSplitter` (models loaded once) and call its
    `separate_array`.
    """
    progress = options.pop("progress", False)
    splitter = StemSplitter(separator, enhance=enhance, stems=stems, consistent=consistent, **options)
    return splitter.separate_array(audio, sample_rate, progress=progress)


def separate_file(
    path,
    out_dir,
    separator="hdemucs_v3",
    enhance: bool = True,
    stems=None,
    consistent: bool = False,
    *,
    filename: str = DEFAULT_FILENAME,
    file_format: str | None = None,
    subtype: str | None = None,
    clip: str = "error",
    overwrite: bool = False,
    progress: bool = False,
    **options,
) -> dict[str, Path]:
    """Separate one audio file into stem files under `out_dir`; returns {stem: path written}.

    filename     the output path inside out_dir, with {track} (the file's name without its
                 extension), {stem} and {ext} (default "{track}/{stem}.{ext}")
    file_format  wav, flac, ogg, mp3 or aiff (default: the input's when it is wav, flac or aiff,
                 else wav); subtype PCM_16, PCM_24 or FLOAT (default: the input's depth)
    clip         a PCM peak above full scale: "error" (nothing written), "clip", "normalize"
    overwrite    replace existing outputs (else they are refused before any work)
    The rest as `separate_song`. Long files stream in blocks (see the module documentation).
    """
    splitter = StemSplitter(separator, enhance=enhance, stems=stems, consistent=consistent, **options)
    job = splitter.plan(
        path, out_dir, filename=filename, file_format=file_format, subtype=subtype, clip=clip, overwrite=overwrite
    )
    return splitter.run(job, progress=progress)


# -- jobs --------------------------------------------------------------------------------------
@dataclass
class SongJob:
    """One input song checked, and every output it will write."""

    input: Path
    track: str
    out_dir: Path
    sample_rate: int
    channels: int
    frames: int  # as the file's header says (an estimate for ffmpeg inputs)
    decode: bool  # read through ffmpeg
    outputs: dict[str, OutputSpec] = field(default_factory=dict)  # name → spec

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


@dataclass
class OutputSpec:
    path: Path
    subtype: str
    format: str
    clip: str


# -- the pipeline ------------------------------------------------------------------------------
class StemSplitter:
    """A separator and its enhancers, loaded once, for any number of songs.

    separator      a registered name or a loaded msgpp Separator
    enhance        enhance each requested stem; `enhancers` maps a source to a shipped enhancer
                   name, a weights file or an Enhancer (default: the shipped one named like the stem)
    stems          the stems to produce (default: all the separator's)
    consistent     stems sum to the mixture (module documentation, step 3)
    keep_raw       also produce the separator's stem as "<stem>_raw" (with enhance)
    weights        the separator's weights (a local folder/file or an upstream name)
    device         "cpu", "cuda", ... for the separator and the enhancers (default: CUDA when available)
    backend        the enhancers' backend ("auto", "torch", "onnxruntime")
    block, block_overlap   seconds per separation block and shared by neighbouring blocks
    """

    def __init__(
        self,
        separator="hdemucs_v3",
        *,
        enhance: bool = True,
        stems=None,
        consistent: bool = False,
        keep_raw: bool = False,
        enhancers: dict | None = None,
        weights=None,
        device: str | None = None,
        backend: str = "auto",
        block: float = BLOCK_SECONDS,
        block_overlap: float = BLOCK_OVERLAP,
    ):
        import torch

        if block <= 0 or block_overlap < 0 or block_overlap > block / 2:
            raise MsgppError(
                f"block must be positive and block_overlap between 0 and half of it, got {block} and {block_overlap}"
            )
        if keep_raw and not enhance:
            raise MsgppError(
                "keep_raw (--keep-raw) writes the separator's stem beside the enhanced one: "
                "it needs enhance (--enhance)"
            )
        enhancers = dict(enhancers or {})
        if enhancers and not enhance:
            raise MsgppError("an enhancer was named (--enhancer) but enhancement is off; add --enhance")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.separator = _load_separator(separator, weights, device)
        sources = tuple(self.separator.sources)
        self.stems = _parse_stems(stems, sources, self.separator.name)
        self.work_stems = sources if consistent else self.stems  # what the separator must deliver
        self.enhance, self.consistent, self.keep_raw = bool(enhance), bool(consistent), bool(keep_raw)
        self.block, self.block_overlap = float(block), float(block_overlap)
        unknown = sorted(set(enhancers) - set(self.stems))
        if unknown:
            raise MsgppError(
                f"--enhancer {unknown[0]}=...: {unknown[0]!r} is not among the stems produced ({', '.join(self.stems)})"
            )
        self.enhancers = {}
        if self.enhance:
            for stem in self.stems:
                self.enhancers[stem] = _load_enhancer(stem, enhancers.get(stem), device, backend)

    @property
    def names(self) -> list[str]:
        """The outputs of one song: each stem, then "<stem>_raw" for each with keep_raw."""
        return list(self.stems) + ([stem + RAW_SUFFIX for stem in self.stems] if self.keep_raw else [])

    def work_factor(self) -> int:
        """Passes of the song's length through a model: separation plus one per enhanced stem."""
        return 1 + (len(self.stems) if self.enhance else 0)

    # -- arrays ---------------------------------------------------------------------------------
    def separate_array(self, audio, sample_rate: int, progress=False) -> dict:
        """{name: array} for a song in memory (see separate_song)."""
        array, mixture, is_tensor = checked_signal(audio)
        mixture = np.ascontiguousarray(mixture)
        if mixture.shape[1] == 0:
            raise MsgppError("audio holds no samples")
        if int(sample_rate) <= 0:
            raise MsgppError(f"sample_rate must be positive, got {sample_rate}")
        channels, frames = mixture.shape
        bar, own = progress_bar(progress, frames / sample_rate * self.work_factor(), "song", unit="s audio")
        try:
            stores = self._pipeline(
                lambda: _array_blocks(mixture),
                int(sample_rate),
                channels,
                frames,
                lambda name: _MemoryStore(channels),
                bar,
                "audio",
            )
        finally:
            if own:
                bar.close()
        result = {}
        for name, store in stores.items():
            out = store.array().reshape(array.shape)
            if is_tensor:
                import torch

                out = torch.from_numpy(out).to(device=audio.device, dtype=audio.dtype)
            result[name] = out
        return result

    # -- files ----------------------------------------------------------------------------------
    def plan(
        self,
        path,
        out_dir,
        *,
        track: str | None = None,
        filename: str = DEFAULT_FILENAME,
        file_format: str | None = None,
        subtype: str | None = None,
        clip: str = "error",
        overwrite: bool = False,
    ) -> SongJob:
        """Check an input and its outputs before any model work (readable, complete, finite,
        long enough, outputs valid and not already there unless `overwrite`)."""
        path, out_dir = Path(path), Path(out_dir)
        if clip not in CLIP_POLICIES:
            raise MsgppError(f"unknown clip policy {clip!r}; choose one of {', '.join(CLIP_POLICIES)}")
        if file_format is not None and file_format not in OUTPUT_FORMATS:
            raise MsgppError(f"unknown output format {file_format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        check_filename_template(filename)
        info = inspect_input(path)
        track = track if track is not None else path.stem
        ext = file_format or LOSSLESS_FORMATS.get(path.suffix.lower(), "wav")
        job = SongJob(path, track, out_dir, info.samplerate, info.channels, info.frames, info.decode)
        for name in self.names:
            relative = render_filename(filename, track=track, stem=name, ext=ext)
            target = out_dir / relative
            job.outputs[name] = _output_spec(target, info.subtype, subtype, clip, overwrite, path)
        for enhancer in self.enhancers.values():
            enhancer._check_length(job.frames, job.sample_rate, str(path))
        return job

    def run(self, job: SongJob, progress=False) -> dict[str, Path]:
        """Separate a planned song and write its outputs; returns {name: path}."""
        bar, own = progress_bar(progress, job.seconds * self.work_factor(), job.input.name, unit="s audio")
        created = not job.out_dir.exists()
        try:
            job.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MsgppError(f"{job.out_dir}: cannot create the output folder ({error.strerror})") from None
        work = work_folder(job.out_dir, ".msgpp-separate-")  # and what a killed run left there goes
        try:
            source = _decode_with_ffmpeg(job.input, work / "input.wav") if job.decode else job.input
            frames = job.frames
            if job.decode:
                frames = _file_frames(source)
            stores = self._pipeline(
                lambda: _file_blocks(source),
                job.sample_rate,
                job.channels,
                frames,
                lambda name: _FileStore(work / f"{name}.wav", job.sample_rate, job.channels),
                bar,
                str(job.input),
            )
            for name, store in stores.items():
                _check_clip(job.outputs[name], store)
            staged = {}
            for number, (name, store) in enumerate(stores.items()):
                spec = job.outputs[name]
                staging = work / "out" / f"{number}{spec.path.suffix}"
                _write_stem(store, staging, spec, job)
                staged[name] = staging
            for name, staging in staged.items():
                target = job.outputs[name].path
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging, target)
        except OSError as error:
            raise MsgppError(f"{job.input}: cannot write under {job.out_dir} ({error.strerror or error})") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if own:
                bar.close()
            if created and not any(job.out_dir.iterdir()):
                job.out_dir.rmdir()
        return {name: spec.path for name, spec in job.outputs.items()}

    # -- the shared pipeline --------------------------------------------------------------------
    def _pipeline(
        self,
        read_mixture: Callable[[], Iterator[np.ndarray]],
        rate: int,
        channels: int,
        frames: int,
        new_store: Callable[[str], _Store],
        bar,
        label: str,
    ) -> dict[str, _Store]:
        # 1. separation, in overlapping blocks
        raw = {stem: new_store(f"raw-{stem}") for stem in self.work_stems}
        separate = self._separation_engine(rate, channels, frames)
        seen = 0
        for block in _counted(read_mixture(), bar, rate):
            seen += block.shape[1]
            if not np.isfinite(block).all():
                raise AudioError(f"{label}: contains NaN or Inf samples")
            for stem, estimate in separate(block).items():
                raw[stem].append(estimate)
        for stem, estimate in separate(None).items():
            raw[stem].append(estimate)
        for store in raw.values():
            store.finish()
        if seen == 0:
            raise AudioError(f"{label}: holds no audio samples")
        frames = seen
        # 2. enhancement, stem by stem, streamed
        final = dict(raw)
        if self.enhance:
            for stem in self.stems:
                enhancer = self.enhancers[stem]
                enhancer._check_length(frames, rate, label)
                store = new_store(f"enhanced-{stem}")
                gains = channel_gains(raw[stem].peaks)
                for block in enhancer._stream(_counted(raw[stem].blocks(), bar, rate), rate, channels, gains, frames):
                    store.append(block)
                store.finish()
                final[stem] = store
        # 3. consistency: the stems sum to the mixture
        if self.consistent:
            consistent = {stem: new_store(f"consistent-{stem}") for stem in self.work_stems}
            stem_blocks = [final[stem].blocks() for stem in self.work_stems]
            for out in consistent_blocks(read_mixture(), stem_blocks, rate, channels, frames):
                for stem, block in zip(self.work_stems, out, strict=True):
                    consistent[stem].append(block)
            for store in consistent.values():
                store.finish()
            final.update(consistent)
        outputs = {stem: final[stem] for stem in self.stems}
        if self.keep_raw:
            outputs.update({stem + RAW_SUFFIX: raw[stem] for stem in self.stems})
        return outputs

    def _separation_engine(self, rate: int, channels: int, frames: int) -> Callable:
        """A function: a (C, k) mixture block (None: the end) → {stem: (C, j) estimates final so far}.

        Blocks of `block` seconds (at most the song's length, so a short song goes through
        whole) overlap by `block_overlap`; OverlapAdd maps rows to rows, so each segment's rows
        are the mixture's channels tiled once per source, and row s·C + c of the result is
        channel c of source s."""
        sources = tuple(self.separator.sources)
        wanted = [(index, source) for index, source in enumerate(sources) if source in self.work_stems]
        count = len(sources)
        segment = max(1, min(round(self.block * rate), frames))
        overlap = min(round(self.block_overlap * rate), segment // 2)

        def process(batch: np.ndarray) -> np.ndarray:
            estimates = self.separator.separate(batch[:channels], rate)
            return np.concatenate([estimates[source] for source in sources])

        engine = OverlapAdd(process, count * channels, segment, overlap, batch_size=count * channels)

        def push(block: np.ndarray | None) -> dict[str, np.ndarray]:
            out = engine.finish() if block is None else engine.push(np.tile(block, (count, 1)))
            split = out.reshape(count, channels, -1)
            return {source: split[index] for index, source in wanted}

        return push


# -- consistency -------------------------------------------------------------------------------
def distribute_residual(stems: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """(N, C, L) stems and a (C, L) mixture → stems that sum to the mixture: the STFT-domain
    residual shared by each stem's energy per bin (module documentation, step 3), then an
    equal split of what rounding leaves. Float32 out."""
    import torch

    count, channels, length = stems.shape
    if length >= N_FFT:
        window = torch.hann_window(N_FFT, dtype=torch.float64)

        def stft(x: np.ndarray):
            return torch.stft(
                torch.from_numpy(np.ascontiguousarray(x, np.float64)).reshape(-1, length),
                N_FFT,
                HOP,
                window=window,
                center=True,
                pad_mode="constant",
                return_complex=True,
            )

        spectra = stft(stems)
        spectra = spectra.reshape(count, channels, *spectra.shape[1:])
        mix = stft(mixture).reshape(channels, *spectra.shape[2:])
        residual = mix - spectra.sum(0)
        power = spectra.abs() ** 2
        shares = (power + _EPS) / (power.sum(0) + count * _EPS)
        corrected = spectra + shares * residual
        adjusted = (
            torch.istft(
                corrected.reshape(count * channels, *corrected.shape[2:]),
                N_FFT,
                HOP,
                window=window,
                center=True,
                length=length,
            )
            .reshape(count, channels, length)
            .numpy()
        )
    else:  # shorter than one STFT frame: the same rule per sample
        power = np.square(stems.astype(np.float64))
        shares = (power + _EPS) / (power.sum(0) + count * _EPS)
        adjusted = stems + shares * (mixture - stems.sum(0))
    adjusted = adjusted + (mixture.astype(np.float64) - adjusted.sum(0)) / count
    return adjusted.astype(np.float32)


def consistent_blocks(
    mixture_blocks: Iterable[np.ndarray], stem_blocks: list[Iterable[np.ndarray]], rate: int, channels: int, frames: int
) -> Iterator[list[np.ndarray]]:
    """Stream the consistency step: 10-s segments overlapping by 1 s, crossfaded (each segment's
    stems sum to its mixture, so their crossfade does too), then an exact sample-wise fix
    against the mixture itself. Yields lists of (C, k) blocks, one per stem."""
    count = len(stem_blocks)
    segment = max(1, min(round(CONSISTENT_SEGMENT * rate), frames))
    overlap = min(round(CONSISTENT_OVERLAP * rate), segment // 2)

    def process(batch: np.ndarray) -> np.ndarray:  # rows: the stems' channels, then the mixture's
        rows = batch.reshape(count + 1, channels, -1)
        return np.concatenate(
            [distribute_residual(rows[:count], rows[count]).reshape(count * channels, -1), rows[count]]
        )

    engine = OverlapAdd(process, (count + 1) * channels, segment, overlap, batch_size=(count + 1) * channels)
    pending = np.zeros((channels, 0), np.float32)  # mixture samples whose stems are not out yet

    def fix(out: np.ndarray) -> list[np.ndarray]:
        nonlocal pending
        k = out.shape[1]
        mixture, pending = pending[:, :k], pending[:, k:]
        rows = out.reshape(count + 1, channels, k)[:count].astype(np.float64)
        rows += (mixture.astype(np.float64) - rows.sum(0)) / count
        return list(rows.astype(np.float32))

    readers = [_rechunk(blocks) for blocks in stem_blocks]
    for mixture in _rechunk(mixture_blocks):
        parts = [next(reader, None) for reader in readers]
        if any(part is None or part.shape != mixture.shape for part in parts):
            raise MsgppError("internal error: stems and mixture differ in length")
        pending = np.concatenate([pending, mixture], axis=1)
        out = engine.push(np.concatenate(parts + [mixture]))
        if out.shape[1]:
            yield fix(out)
    out = engine.finish()
    if out.shape[1]:
        yield fix(out)


# -- output names ------------------------------------------------------------------------------
def check_filename_template(template: str) -> None:
    """A --filename template: only {track}, {stem}, {ext}; {stem} required; relative."""
    try:
        fields = [name for _, name, spec, conversion in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise MsgppError(f"--filename {template!r}: {error}") from None
    for name in fields:
        if name not in FILENAME_FIELDS:
            raise MsgppError(f"--filename {template!r}: unknown field {{{name}}}; use {{track}}, {{stem}} and {{ext}}")
    if "stem" not in fields:
        raise MsgppError(f"--filename {template!r}: must contain {{stem}}, or every stem would go to one file")


def render_filename(template: str, *, track: str, stem: str, ext: str) -> Path:
    """The output path relative to the output folder; must stay inside it."""
    try:
        relative = Path(template.format(track=track, stem=stem, ext=ext))
    except (KeyError, IndexError, ValueError) as error:
        raise MsgppError(f"--filename {template!r}: {error}") from None
    if relative.is_absolute() or ".." in relative.parts or not relative.name:
        raise MsgppError(f"--filename {template!r} gives {relative}: must be a relative path inside --out")
    if relative.suffix.lower() not in AUDIO_FORMATS:
        raise MsgppError(
            f"--filename {template!r} gives {relative}: must end in an audio extension "
            f"({', '.join(AUDIO_FORMATS)}); use {{ext}}"
        )
    return relative


def _output_spec(
    target: Path, input_subtype: str, subtype: str | None, clip: str, overwrite: bool, source: Path
) -> OutputSpec:
    file_format = AUDIO_FORMATS[target.suffix.lower()]
    chosen = output_subtype(input_subtype, subtype, file_format, target)
    check_output(target, source, overwrite)
    return OutputSpec(target, chosen, file_format, clip)


# -- inputs ------------------------------------------------------------------------------------
def inspect_input(path: Path) -> SimpleNamespace:
    """samplerate, channels, frames, subtype and whether ffmpeg must decode it; checks the file
    (and, for float files, that it holds no NaN/Inf) without running any model."""
    try:
        info = check_audio_file(path)
    except AudioError as error:
        probed = _ffprobe(path) if path.is_file() and path.stat().st_size else None
        if probed is None:
            raise error from None
        return probed
    if info.subtype in FLOAT_SUBTYPES:
        scan_peaks(path, info)  # refuses NaN/Inf before anything runs
    return SimpleNamespace(
        samplerate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        subtype=info.subtype,
        decode=False,
    )


def _ffprobe(path: Path) -> SimpleNamespace | None:
    """What ffmpeg knows of a file soundfile cannot read, or None (no ffmpeg, or not audio)."""
    if not shutil.which("ffprobe") or not shutil.which("ffmpeg"):
        return None
    command = [
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=sample_rate,channels,bits_per_raw_sample,duration:format=duration",
        "-of",
        "json",
        str(path),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        data = json.loads(result.stdout or "{}")
        stream = data["streams"][0]
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
        duration = float(stream.get("duration") or data.get("format", {}).get("duration") or 0)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError, TypeError):
        return None
    if result.returncode or rate <= 0 or channels <= 0 or duration <= 0:
        return None
    bits = str(stream.get("bits_per_raw_sample") or "")
    return SimpleNamespace(
        samplerate=rate,
        channels=channels,
        frames=max(1, round(duration * rate)),
        subtype="PCM_24" if bits in ("24", "32") else "PCM_16",
        decode=True,
    )


def _decode_with_ffmpeg(path: Path, target: Path) -> Path:
    """Decode with ffmpeg to a float32 WAV (RF64 when large), at the file's own rate and channels."""
    command = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-c:a",
        "pcm_f32le",
        "-rf64",
        "auto",
        "-f",
        "wav",
        str(target),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        message = (result.stderr.strip().splitlines() or ["ffmpeg failed"])[-1]
        raise AudioError(f"{path}: ffmpeg could not decode it ({message})")
    return target


def _file_frames(path: Path) -> int:
    import soundfile as sf

    return int(sf.info(str(path)).frames)


def _file_blocks(path: Path) -> Iterator[np.ndarray]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as reader:
        yield from read_blocks(reader, Path(path))


def _array_blocks(audio: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, audio.shape[1], READ_FRAMES):
        yield audio[:, start : start + READ_FRAMES]


def _rechunk(blocks: Iterable[np.ndarray], size: int = READ_FRAMES) -> Iterator[np.ndarray]:
    """The same samples in blocks of exactly `size` frames (the last one shorter)."""
    held: list[np.ndarray] = []
    count = 0
    for block in blocks:
        held.append(block)
        count += block.shape[1]
        if count >= size:
            joined = np.concatenate(held, axis=1)
            whole = (joined.shape[1] // size) * size
            for start in range(0, whole, size):
                yield joined[:, start : start + size]
            held, count = [joined[:, whole:]], joined.shape[1] - whole
    if count:
        yield np.concatenate(held, axis=1)


def _counted(blocks: Iterable[np.ndarray], bar, rate: int) -> Iterator[np.ndarray]:
    """Pass blocks through, advancing the bar by their length in seconds once each is used."""
    for block in blocks:
        yield block
        if bar is not None:
            bar.update(block.shape[1] / rate)


# -- intermediate stems ------------------------------------------------------------------------
class _Store:
    """A stem built block by block, then read back block by block (READ_FRAMES at a time)."""

    def __init__(self, channels: int):
        self.peaks = np.zeros(channels, np.float64)
        self.frames = 0

    def append(self, block: np.ndarray) -> None:
        if block.shape[1]:
            np.maximum(self.peaks, np.abs(block).max(axis=1), out=self.peaks)
            self.frames += block.shape[1]
            self._append(np.ascontiguousarray(block, dtype=np.float32))

    def finish(self) -> None:
        pass


class _MemoryStore(_Store):
    def __init__(self, channels: int):
        super().__init__(channels)
        self._blocks: list[np.ndarray] = []
        self._channels = channels

    def _append(self, block: np.ndarray) -> None:
        self._blocks.append(block)

    def blocks(self) -> Iterator[np.ndarray]:
        return _rechunk(iter(self._blocks))

    def array(self) -> np.ndarray:
        if not self._blocks:
            return np.zeros((self._channels, 0), np.float32)
        return np.ascontiguousarray(np.concatenate(self._blocks, axis=1))


class _FileStore(_Store):
    """A float32 RF64/WAV file in the work folder (no 4 GB limit)."""

    def __init__(self, path: Path, rate: int, channels: int):
        import soundfile as sf

        super().__init__(channels)
        self.path = Path(path)
        self._writer = sf.SoundFile(str(self.path), "w", int(rate), int(channels), "FLOAT", format="RF64")

    def _append(self, block: np.ndarray) -> None:
        self._writer.write(block.T)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def blocks(self) -> Iterator[np.ndarray]:
        self.finish()
        return _file_blocks(self.path)

    def array(self) -> np.ndarray:
        return load_audio(self.path)[0]


# -- writing -----------------------------------------------------------------------------------
def _check_clip(spec: OutputSpec, store: _Store) -> None:
    """Refuse, before any file of the song is written, a PCM output that would clip (--clip error)."""
    peak = float(store.peaks.max()) if store.peaks.size else 0.0
    if spec.clip == "error" and spec.subtype not in FLOAT_SUBTYPES and peak > 1.0:
        raise MsgppError(
            f"{spec.path}: peak {peak:.3f} exceeds full scale for {spec.subtype}; nothing written "
            "for this song (use --clip normalize, --clip clip, or --subtype FLOAT)"
        )


def _write_stem(store: _Store, staging: Path, spec: OutputSpec, job: SongJob) -> None:
    """Write one stem, in its output format, to a staging name in the work folder (atomically)."""
    info = SimpleNamespace(samplerate=job.sample_rate, channels=job.channels)
    write_blocks(FileJob(job.input, staging, info, None, spec.subtype, spec.format, spec.clip), store.blocks())


# -- models ------------------------------------------------------------------------------------
def _load_separator(separator, weights, device: str):
    from msgpp.separators.base import Separator
    from msgpp.separators.registry import get

    if isinstance(separator, Separator):
        if weights is not None:
            raise MsgppError("weights= is for a separator given by name, not a loaded Separator")
        return separator
    if not isinstance(separator, str):
        raise MsgppError(f"separator must be a registered name or a Separator, got {type(separator).__name__}")
    try:
        return get(separator, weights=weights, device=device)
    except (RuntimeError, AssertionError) as error:  # e.g. a CUDA device asked for where there is none
        raise MsgppError(f"separator {separator!r} on {device}: {str(error).splitlines()[0]}") from None


def _load_enhancer(stem: str, given, device: str, backend: str):
    from msgpp.enhance.enhancer import Enhancer
    from msgpp.enhance.pretrained import pretrained_names

    if isinstance(given, Enhancer):
        return given
    if given is None:
        if stem not in pretrained_names():
            raise MsgppError(
                f"stem {stem!r} has no shipped enhancer (shipped: {', '.join(sorted(pretrained_names()))}); "
                f"pass --enhancer {stem}=PATH, or leave it out with --stems"
            )
        given = stem
    return Enhancer.from_pretrained(given, device=device, backend=backend)


def _parse_stems(stems, sources: tuple[str, ...], separator: str) -> tuple[str, ...]:
    if stems is None:
        return sources
    names = [part.strip() for part in stems.split(",")] if isinstance(stems, str) else [str(s).strip() for s in stems]
    names = [name for name in names if name]
    if not names:
        raise MsgppError("no stem named (pass e.g. --stems bass,drums)")
    for name in names:
        if name not in sources:
            raise MsgppError(f"unknown stem {name!r} for {separator}; its stems: {', '.join(sources)}")
    return tuple(source for source in sources if source in names)  # the separator's order, once each
