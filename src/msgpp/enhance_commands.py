"""`msgpp enhance` (files or whole folders through an enhancer) and `msgpp export-graph`.

    msgpp enhance bass.wav --out enhanced/ --source bass
    msgpp enhance estimates/ --out enhanced/ --model path/to/msg-bass-1a2b3c4d.pt --subtype PCM_24
    msgpp export-graph --source bass --out msg-bass.ts      # TorchScript
    msgpp export-graph --source bass --out msg-bass.onnx    # ONNX

Every input is checked (readable, complete, finite, output free) before the model runs, so a
bad file stops the run with one line and nothing written. Outputs are written under temporary
names and renamed when complete.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msgpp.errors import MsgppError, number_type

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
OUTPUT_FORMATS = ("wav", "flac", "ogg", "mp3", "aiff")
BACKENDS = ("auto", "torch", "onnxruntime")  # msgpp.enhancer.BACKENDS, without importing torch here


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "enhance", help="enhance separated sources (files or folders)",
        description="Enhance separator estimates with an MSG generator. Keeps each file's sample rate and channels.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="audio files or folders (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("enhanced"),
                        help="output folder (default: ./enhanced), or a file name when there is one input file")
    _add_model_arguments(parser)
    parser.add_argument("--format", choices=OUTPUT_FORMATS, help="output format (default: the input's, else wav)")
    parser.add_argument("--subtype", choices=("PCM_16", "PCM_24", "FLOAT"),
                        help="sample format (default: the input's depth; FLAC and 16/24-bit inputs stay PCM)")
    parser.add_argument("--clip", choices=("error", "clip", "normalize"), default="error",
                        help="a PCM output peak above full scale: stop with an error (default), hard-clip, "
                             "or scale the file to a 0.999 peak")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--segment", type=number_type("--segment", above=0), default=None,
                        help="seconds per segment (default 5)")
    parser.add_argument("--overlap", type=number_type("--overlap", minimum=0), default=None,
                        help="seconds shared by neighbouring segments (default 0.5)")
    parser.add_argument("--batch-size", type=number_type("--batch-size", minimum=1, integer=True), default=None,
                        help="mono segments per forward pass (default 2)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--threads", type=number_type("--threads", minimum=1, integer=True), default=None,
                        help="CPU threads for torch and ONNX Runtime (default: torch's)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto (default: ONNX Runtime on the CPU when installed, else PyTorch), torch, or onnxruntime")
    parser.add_argument("--model-band-only", action="store_true",
                        help="drop the input's content above the model's Nyquist frequency instead of keeping it")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)

    export = subparsers.add_parser(
        "export-graph", help="export a generator as TorchScript or ONNX",
        description="Export an enhancer's generator as a graph for (batch, 1, segment) inputs: ONNX when --out "
                    "ends in .onnx (any batch size), else TorchScript (one batch size).",
    )
    _add_model_arguments(export)
    export.add_argument("--out", type=Path, required=True, help="the file to write: X.onnx for ONNX, X.ts for TorchScript")
    export.add_argument("--segment", type=number_type("--segment", above=0), default=5.0, help="seconds per segment the graph takes (default 5)")
    export.add_argument("--batch-size", type=number_type("--batch-size", minimum=1, integer=True), default=4,
                        help="segments per call a TorchScript graph takes (default 4; ONNX graphs take any)")
    export.add_argument("--force", action="store_true", help="overwrite an existing file")
    export.set_defaults(func=run_export)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", metavar="NAME_OR_PATH", help="a shipped enhancer name (bass, drums, vocals), a published one "
                       "(paper-bass, paper-drums, paper-vocals: downloaded on first use) or a weights file")
    group.add_argument("--source", metavar="NAME", help="the shipped enhancer for this source (same as --model NAME)")


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from msgpp.enhancer import Enhancer

    pairs = plan_outputs(args.inputs, args.out, args.format)
    if args.threads is not None:
        if args.threads < 1:
            raise MsgppError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    options = {key: value for key, value in dict(
        segment=args.segment, overlap=args.overlap, batch_size=args.batch_size, device=args.device,
        backend=args.backend,
    ).items() if value is not None}
    enhancer = Enhancer.from_pretrained(args.model or args.source, full_band=not args.model_band_only, **options)
    jobs = [enhancer.plan_file(source, target, subtype=args.subtype, clip=args.clip, overwrite=args.force)
            for source, target in pairs]
    total = sum(job.info.frames / job.info.samplerate for job in jobs)
    with tqdm(total=round(total, 2), unit="s", disable=args.quiet, file=sys.stderr, dynamic_ncols=True,
              bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]") as bar:
        for number, job in enumerate(jobs, 1):
            bar.set_description(f"[{number}/{len(jobs)}] {job.input.name}")
            output = enhancer.run_job(job, progress=bar)
            bar.write(str(output), file=sys.stdout)
    return 0


def plan_outputs(inputs: list[Path], out: Path, file_format: str | None) -> list[tuple[Path, Path]]:
    """(input file, output file) for every audio file named or found in a named folder."""
    found: list[tuple[Path, Path]] = []  # (file, path relative to the output folder)
    out_resolved = out.resolve()
    for given in inputs:
        if given.is_dir():
            # Files under the output folder are this command's own outputs, never inputs.
            files = sorted(path for path in given.rglob("*")
                           if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file() and not path.name.startswith(".")
                           and not (out_resolved != given.resolve() and path.resolve().is_relative_to(out_resolved)))
            if not files:
                raise MsgppError(f"{given}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
            found += [(path, path.relative_to(given)) for path in files]
        elif given.exists():
            found.append((given, Path(given.name)))
        else:
            raise MsgppError(f"{given}: no such file or folder")
    if out.suffix and not out.is_dir() and out.suffix.lower() not in AUDIO_EXTENSIONS:
        raise MsgppError(f"--out {out}: unsupported output extension {out.suffix!r} (use {', '.join(AUDIO_EXTENSIONS)}, "
                         "or a folder; a new folder's name must not end in an extension)")
    if out.suffix.lower() in AUDIO_EXTENSIONS and not out.is_dir():
        if len(found) != 1:
            raise MsgppError(f"--out {out}: a file name takes exactly one input, got {len(found)}; give a folder")
        if file_format and out.suffix.lower().lstrip(".") != file_format:
            raise MsgppError(f"--out {out} does not end in .{file_format} (--format {file_format})")
        return [(found[0][0], out)]
    pairs, claimed = [], {}
    for source, relative in found:
        suffix = f".{file_format}" if file_format else (
            relative.suffix.lower() if relative.suffix.lower() in AUDIO_EXTENSIONS else ".wav")
        target = out / relative.with_suffix(suffix)
        if target in claimed:
            raise MsgppError(f"{source} and {claimed[target]} would both be written to {target}")
        claimed[target] = source
        pairs.append((source, target))
    return pairs


def run_export(args) -> int:
    from msgpp.enhancer import Enhancer
    from msgpp.graph_export import export_torchscript, load_torchscript, max_difference

    if args.out.exists() and not args.force:
        raise MsgppError(f"{args.out}: exists; pass --force to replace it")
    if args.segment <= 0 or args.batch_size < 1:
        raise MsgppError("--segment must be positive and --batch-size at least 1")
    enhancer = Enhancer.from_pretrained(args.model or args.source, device="cpu", backend="torch")
    if args.out.suffix.lower() == ".onnx":
        return _export_onnx(enhancer, args)
    path = export_torchscript(enhancer.generator, args.out, sample_rate=enhancer.sample_rate, segment=args.segment,
                              batch_size=args.batch_size, source=enhancer.source, overwrite=args.force)
    graph, metadata = load_torchscript(path)
    difference = max_difference(enhancer.generator, graph, metadata["batch_size"], metadata["segment_samples"])
    print(f"{path}: TorchScript for ({metadata['batch_size']}, 1, {metadata['segment_samples']}) at "
          f"{metadata['sample_rate']} Hz; max |graph − PyTorch| = {difference:.2e} on random input")
    return 0


def _export_onnx(enhancer, args) -> int:
    from msgpp import onnx_backend
    from msgpp.graph_export import max_difference

    if not onnx_backend.available():
        raise MsgppError("ONNX export needs the packages onnx, onnxscript and onnxruntime (pip install them)")
    samples = max(1, round(args.segment * enhancer.sample_rate))
    onnx_backend.export_onnx(enhancer.generator, args.out, sample_rate=enhancer.sample_rate, segment_samples=samples,
                             source=enhancer.source, overwrite=args.force)
    graph = onnx_backend.load_onnx(args.out)
    difference = max_difference(enhancer.generator, graph, 2, samples)
    print(f"{args.out}: ONNX for (batch, 1, {samples}) at {enhancer.sample_rate} Hz; "
          f"max |ONNX Runtime − PyTorch| = {difference:.2e} on random input")
    return 0
