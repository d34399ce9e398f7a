"""The file side of enhancing: which output each input gets, checking both before any model work,
reading in blocks, and writing the result atomically.

    pairs = plan_outputs([Path("estimates/")], Path("enhanced/"), None)   # `msgpp enhance`'s file list
    job = plan_file("bass.wav", "enhanced/bass.wav")                      # checked, peaks read
    write_blocks(job, enhanced_blocks)                                    # temporary, then renamed

Every input is checked (readable, complete, finite, output free) before the model runs, so a
bad file stops a run with one line and nothing written. Files are streamed block by block, so a
long file never sits whole in memory: one pass checks a file's completeness and finds its peaks,
a second one enhances it. msgpp.enhance.enhancer runs the model between reading and writing;
msgpp.stems writes its stems with the same functions.

A rerun of `msgpp enhance` resumes: each output it writes gets a record beside it (the hidden
`.<name>.msgpp.json`: the weights' sha256, the settings that shape the result, the input's and the
output's sha256), written before the output is renamed into place. An existing output whose
record matches this run's model, settings and input, and whose bytes are the recorded ones, is
kept (written_with); any other existing output is refused unless --force or --skip-existing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from msgpp.audio import FLOAT_SUBTYPES, LOSSY_SUBTYPES, SUBTYPES, channel_gains, check_audio_file, check_decoded
from msgpp.constants import AUDIO_FORMATS, CLIP_POLICIES, OUTPUT_SUBTYPES
from msgpp.errors import AudioError, MsgppError, first_line
from msgpp.files import atomic_path, atomic_write_text, describe_write_error, sha256_file, temporary_file

log = logging.getLogger(__name__)

BLOCK_FRAMES = 1 << 16  # frames read from a file at a time


# -- `msgpp enhance`: inputs and outputs -------------------------------------------------------------
def plan_outputs(inputs: list[Path], out: Path, file_format: str | None) -> list[tuple[Path, Path]]:
    """(input file, output file) for every audio file named or found in a named folder."""
    found: list[tuple[Path, Path]] = []  # (file, path relative to the output folder)
    out_resolved = out.resolve()
    for given in inputs:
        if given.is_dir():
            # Files under the output folder are this command's own outputs, never inputs.
            files = sorted(
                path
                for path in given.rglob("*")
                if path.suffix.lower() in AUDIO_FORMATS
                and path.is_file()
                and not path.name.startswith(".")
                and not (out_resolved != given.resolve() and path.resolve().is_relative_to(out_resolved))
            )
            if not files:
                raise MsgppError(f"{given}: no audio files ({', '.join(AUDIO_FORMATS)}) in this folder")
            found += [(path, path.relative_to(given)) for path in files]
        elif given.exists():
            found.append((given, Path(given.name)))
        else:
            raise MsgppError(f"{given}: no such file or folder")
    if out.suffix and not out.is_dir() and out.suffix.lower() not in AUDIO_FORMATS:
        raise MsgppError(
            f"--out {out}: unsupported output extension {out.suffix!r} (use {', '.join(AUDIO_FORMATS)}, "
            "or a folder; a new folder's name must not end in an extension)"
        )
    if out.suffix.lower() in AUDIO_FORMATS and not out.is_dir():
        if len(found) != 1:
            raise MsgppError(f"--out {out}: a file name takes exactly one input, got {len(found)}; give a folder")
        if file_format and out.suffix.lower().lstrip(".") != file_format:
            raise MsgppError(f"--out {out} does not end in .{file_format} (--format {file_format})")
        return [(found[0][0], out)]
    pairs, claimed = [], {}
    for source, relative in found:
        suffix = (
            f".{file_format}"
            if file_format
            else (relative.suffix.lower() if relative.suffix.lower() in AUDIO_FORMATS else ".wav")
        )
        target = out / relative.with_suffix(suffix)
        if target in claimed:
            raise MsgppError(f"{source} and {claimed[target]} would both be written to {target}")
        claimed[target] = source
        pairs.append((source, target))
    return pairs


# -- planning and checking one file ------------------------------------------------------------------
class FileJob:
    """One input file checked and read once (peaks per channel), and where its output goes.
    `record`: what `msgpp enhance` records beside the output (see resume_record), or None."""

    def __init__(self, input: Path, output: Path, info, gains: np.ndarray, subtype: str, file_format: str, clip: str):
        self.input, self.output, self.info, self.gains = input, output, info, gains
        self.subtype, self.format, self.clip = subtype, file_format, clip
        self.record: dict | None = None


def plan_file(
    input_path, output_path, *, subtype: str | None = None, clip: str = "error", overwrite: bool = False
) -> FileJob:
    """Check an input and its output before any model work: readable, complete, finite, not
    too short, output format and subtype valid, no overwrite unless asked. Reads the input once
    to find each channel's peak (for the per-channel gain). Raises MsgppError naming the file."""
    source, target = Path(input_path), Path(output_path)
    if clip not in CLIP_POLICIES:
        raise MsgppError(f"unknown clip policy {clip!r}; choose one of {', '.join(CLIP_POLICIES)}")
    info = check_audio_file(source, decode=False)  # scan_peaks decodes it and checks the length
    file_format = AUDIO_FORMATS.get(target.suffix.lower())
    if file_format is None:
        raise MsgppError(f"{target}: unsupported output extension {target.suffix!r} (use {', '.join(AUDIO_FORMATS)})")
    chosen = output_subtype(info.subtype, subtype, file_format, target)
    check_output(target, source, overwrite, "--force (overwrite=True)")
    peaks = scan_peaks(source, info)
    return FileJob(source, target, info, channel_gains(peaks), chosen, file_format, clip)


def check_output(target: Path, source: Path, overwrite: bool, force: str = "--force") -> None:
    """An output path is free: not a folder, not its own input, not an existing file unless
    `overwrite` (`force` names the option that allows it)."""
    if target.exists() or target.is_symlink():
        if target.is_dir():
            raise MsgppError(f"{target}: is a folder, not an output file")
        if source.resolve() == target.resolve():
            raise MsgppError(f"{target}: output would overwrite its own input")
        if not overwrite:
            raise MsgppError(f"{target}: exists; pass {force} to replace it")


def output_subtype(input_subtype: str, requested: str | None, file_format: str, target: Path) -> str:
    """The libsndfile subtype to write: the requested one, or the input's depth where it fits."""
    fixed = LOSSY_SUBTYPES.get(file_format)
    if requested is not None:
        if requested not in SUBTYPES:
            raise MsgppError(f"unknown subtype {requested!r}; choose one of {', '.join(OUTPUT_SUBTYPES)}")
        if fixed:
            raise MsgppError(
                f"{target}: {file_format} output has no subtype choice; drop --subtype or write .wav/.flac"
            )
        chosen = SUBTYPES[requested]
        if not sf.check_format(file_format, chosen):
            raise MsgppError(f"{target}: {file_format} cannot hold {chosen} samples")
        return chosen
    if fixed:
        return fixed
    # Keep the input's depth: 8/16-bit → PCM_16, 24/32-bit → PCM_24, float → FLOAT (FLAC: PCM_24).
    if input_subtype in FLOAT_SUBTYPES:
        chosen = "FLOAT"
    elif input_subtype in ("PCM_24", "PCM_32"):
        chosen = "PCM_24"
    else:
        chosen = "PCM_16"
    return chosen if sf.check_format(file_format, chosen) else "PCM_24"


# -- reading -----------------------------------------------------------------------------------------
def scan_peaks(path: Path, info) -> np.ndarray:
    """Each channel's absolute peak, from one streaming pass that also checks that every declared
    frame decodes (a truncated MP3 or FLAC); refuses NaN/Inf."""
    peaks = np.zeros(info.channels, np.float64)
    frames = 0
    with sf.SoundFile(str(path)) as reader:
        for block in read_blocks(reader, path):
            if not np.isfinite(block).all():
                raise AudioError(f"{path}: contains NaN or Inf samples")
            np.maximum(peaks, np.abs(block).max(axis=1), out=peaks)
            frames += block.shape[1]
    check_decoded(path, info, frames)
    return peaks


def read_blocks(reader: sf.SoundFile, path: Path, on_block=None) -> Iterator[np.ndarray]:
    """(channels, k) float32 blocks of a whole file."""
    while True:
        try:
            block = reader.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{path}: read failed ({first_line(error)})") from None
        if not block.shape[0]:
            return
        if on_block:
            on_block(block.shape[0])
        yield np.ascontiguousarray(block.T)


# -- writing -----------------------------------------------------------------------------------------
def write_blocks(job: FileJob, blocks: Iterable[np.ndarray]) -> None:
    """Write (channels, k) blocks to the job's output atomically (a temporary beside it, renamed
    when complete), applying its clip policy."""
    target = job.output
    limited = job.subtype not in FLOAT_SUBTYPES  # PCM and lossy formats clip at full scale
    normalize = limited and job.clip == "normalize"
    try:
        with atomic_path(target, suffix=f".tmp{target.suffix}") as final:
            if normalize:  # the whole file's peak is needed first: write float, then rescale in a second pass
                with temporary_file(target, ".tmp.wav") as first:
                    peak = _write(job, blocks, first, "FLOAT", "WAV", limited=False)
                    gain = 0.999 / peak if peak > 1.0 else 1.0
                    if gain != 1.0:
                        log.info("%s: peak %.3f scaled to 0.999 (gain %.2f dB)", target, peak, 20 * np.log10(gain))
                    with sf.SoundFile(first) as reader:
                        _write(
                            job,
                            (block * gain for block in read_blocks(reader, Path(first))),
                            final,
                            job.subtype,
                            job.format,
                            limited=False,
                        )
            else:
                _write(job, blocks, final, job.subtype, job.format, limited=limited)
            if job.record is not None:  # before the rename: a complete output always has its record
                write_record(target, job.record, sha256_file(final))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise MsgppError(f"{target}: cannot write ({describe_write_error(error)})") from None


def _write(
    job: FileJob, blocks: Iterable[np.ndarray], path: str, subtype: str, file_format: str, *, limited: bool
) -> float:
    """Write blocks to `path`; returns their peak. `limited`: the format clips at full scale, so
    a peak above it follows the job's clip policy ("error" or "clip")."""
    target, peak, clipped = job.output, 0.0, 0
    with sf.SoundFile(path, "w", job.info.samplerate, job.info.channels, subtype, format=file_format) as writer:
        for block in blocks:
            if not np.isfinite(block).all():
                raise MsgppError(f"{job.input}: the model produced NaN or Inf samples; nothing written")
            block_peak = float(np.abs(block).max()) if block.size else 0.0
            peak = max(peak, block_peak)
            if limited and block_peak > 1.0:
                if job.clip == "error":
                    raise MsgppError(
                        f"{target}: enhanced peak {block_peak:.3f} exceeds full scale for {job.subtype}; "
                        "nothing written (use --clip normalize, --clip clip, or --subtype FLOAT)"
                    )
                clipped += int((np.abs(block) > 1.0).sum())
                block = np.clip(block, -1.0, 1.0)
            writer.write(block.T)
    if clipped:
        log.warning("%s: clipped %d samples above full scale (--clip clip)", target, clipped)
    return peak


# -- resuming `msgpp enhance` -------------------------------------------------------------------------
RECORD_FORMAT = "msgpp-enhance-record/1"


def record_path(output: Path) -> Path:
    """The hidden record beside an output: `.<name>.msgpp.json`."""
    return output.parent / f".{output.name}.msgpp.json"


def resume_record(input_path: Path, settings: dict) -> dict:
    """What an output's record says of the run that wrote it: `settings` (the weights' sha256 and
    every option that shapes the result) and the input's sha256."""
    return {"format": RECORD_FORMAT, "input_sha256": sha256_file(input_path), "settings": settings}


def write_record(output: Path, record: dict, output_sha256: str) -> None:
    import json

    atomic_write_text(record_path(output), json.dumps({**record, "output_sha256": output_sha256}, indent=1) + "\n")


def written_with(output: Path, input_path: Path, settings: dict) -> bool | None:
    """Whether the existing `output` was written by `msgpp enhance` from this very input with
    these settings and is unchanged since: True, False (its record says otherwise, or it was
    changed), or None when it has no readable record (not written by a run that records)."""
    import json

    try:
        recorded = json.loads(record_path(output).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded.get("format") != RECORD_FORMAT:
        return None
    if recorded.get("settings") != settings:
        return False
    try:
        return recorded.get("input_sha256") == sha256_file(input_path) and recorded.get("output_sha256") == sha256_file(
            output
        )
    except OSError:
        return False


# -- progress ----------------------------------------------------------------------------------------
def progress_bar(progress, total_seconds: float, name: str, unit: str = "s"):
    """(bar or None, whether we own it) for one file or song, counting seconds of audio (`unit`
    names them on the bar). `progress` is a bool or a tqdm bar to update."""
    if progress is False or progress is None:
        return None, False
    if progress is True:
        from tqdm import tqdm

        return tqdm(
            total=round(total_seconds, 2),
            unit="s",
            desc=name,
            leave=False,
            file=sys.stderr,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} " + unit + " [{elapsed}<{remaining}]",
        ), True
    return progress, False


def files_bar(total_seconds: float, quiet: bool = False):
    """The one bar of a command that works through many files, in seconds of audio; each file's
    work updates it (pass it as `progress`)."""
    from tqdm import tqdm

    return tqdm(
        total=round(total_seconds, 2),
        unit="s",
        disable=quiet,
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
    )
