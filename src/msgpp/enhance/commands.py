"""The enhancer's commands: `msgpp enhance` (files or whole folders through an enhancer),
`msgpp export-graph`, and the MSG authors' generators (`msgpp download`, `msgpp convert-msg`,
`msgpp enhancers list`).

    msgpp enhance bass.wav --out enhanced/ --source bass
    msgpp enhance estimates/ --out enhanced/ --model path/to/msg-bass-1a2b3c4d.pt --subtype PCM_24
    msgpp export-graph --source bass --out msg-bass.ts      # TorchScript
    msgpp export-graph --source bass --out msg-bass.onnx    # ONNX
    msgpp download paper-bass paper-drums         # fetch and convert ahead of time (then works offline)
    msgpp convert-msg bass29netG.pt --source bass --out weights/
    msgpp enhancers list                          # shipped / downloaded / downloadable

Every input is checked (readable, complete, finite, output free) before the model runs, so a
bad file stops the run with one line and nothing written. Outputs are written under temporary
names and renamed when complete, each with a record of the model and settings beside it, so a
rerun of an interrupted `msgpp enhance` keeps what was finished and does the rest. Only argument
parsing happens at import: the models, torch and numpy load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from msgpp.constants import BACKENDS, CLIP_POLICIES, OUTPUT_FORMATS, OUTPUT_SUBTYPES
from msgpp.errors import MsgppError, number_type, set_torch_threads


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "enhance",
        help="enhance separated sources (files or folders)",
        description="Enhance separator estimates with an MSG generator. Keeps each file's sample rate and channels.",
    )
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="audio files or folders (searched recursively)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("enhanced"),
        help="output folder (default: ./enhanced), or a file name when there is one input file",
    )
    _add_model_arguments(parser)
    parser.add_argument("--format", choices=OUTPUT_FORMATS, help="output format (default: the input's, else wav)")
    parser.add_argument(
        "--subtype",
        choices=OUTPUT_SUBTYPES,
        help="sample format (default: the input's depth; FLAC and 16/24-bit inputs stay PCM)",
    )
    parser.add_argument(
        "--clip",
        choices=CLIP_POLICIES,
        default="error",
        help="a PCM output peak above full scale: stop with an error (default), hard-clip, "
        "or scale the file to a 0.999 peak",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--force", action="store_true", help="overwrite existing outputs")
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip an input whose output exists, whatever wrote it (resume an interrupted batch; "
        "without it, a rerun keeps only the outputs an earlier run wrote with the same model and settings)",
    )
    parser.add_argument(
        "--segment", type=number_type("--segment", above=0), default=None, help="seconds per segment (default 5)"
    )
    parser.add_argument(
        "--overlap",
        type=number_type("--overlap", minimum=0),
        default=None,
        help="seconds shared by neighbouring segments (default 0.5)",
    )
    parser.add_argument(
        "--batch-size",
        type=number_type("--batch-size", minimum=1, integer=True),
        default=None,
        help="mono segments per forward pass (default 2)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument(
        "--threads",
        type=number_type("--threads", minimum=1, integer=True),
        default=None,
        help="CPU threads for torch and ONNX Runtime (default: torch's)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto (default: ONNX Runtime on the CPU when installed, else PyTorch), torch, or onnxruntime",
    )
    parser.add_argument(
        "--model-band-only",
        action="store_true",
        help="drop the input's content above the model's Nyquist frequency instead of keeping it",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)

    export = subparsers.add_parser(
        "export-graph",
        help="export a generator as TorchScript or ONNX",
        description="Export an enhancer's generator as a graph for (batch, 1, segment) inputs: ONNX when --out "
        "ends in .onnx (any batch size), else TorchScript (one batch size).",
    )
    _add_model_arguments(export)
    export.add_argument(
        "--out", type=Path, required=True, help="the file to write: X.onnx for ONNX, X.ts for TorchScript"
    )
    export.add_argument(
        "--segment",
        type=number_type("--segment", above=0),
        default=5.0,
        help="seconds per segment the graph takes (default 5)",
    )
    export.add_argument(
        "--batch-size",
        type=number_type("--batch-size", minimum=1, integer=True),
        default=4,
        help="segments per call a TorchScript graph takes (default 4; ONNX graphs take any)",
    )
    export.add_argument("--force", action="store_true", help="overwrite an existing file")
    export.set_defaults(func=run_export)
    _register_published(subparsers)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help="a shipped enhancer name (bass, drums, vocals), a published one "
        "(paper-bass, paper-drums, paper-vocals: downloaded on first use) or a weights file",
    )
    group.add_argument("--source", metavar="NAME", help="the shipped enhancer for this source (same as --model NAME)")


def run(args) -> int:
    from msgpp.enhance.enhancer import Enhancer
    from msgpp.enhance.jobs import files_bar, plan_outputs, resume_record, written_with

    pairs = plan_outputs(args.inputs, args.out, args.format)
    set_torch_threads(args.threads)
    options = {
        key: value
        for key, value in dict(
            segment=args.segment,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=args.device,
            backend=args.backend,
        ).items()
        if value is not None
    }
    enhancer = Enhancer.from_pretrained(args.model or args.source, full_band=not args.model_band_only, **options)
    # An output's record (msgpp.enhance.jobs) holds these and the input's checksum: a rerun keeps
    # what an interrupted run finished. The requested subtype and format (not the chosen ones)
    # suffice: the choice follows from them and the input.
    settings = {**enhancer.result_settings(), "subtype": args.subtype, "clip": args.clip, "format": args.format}
    jobs, kept, skipped = [], 0, 0
    for source, target in pairs:
        if target.is_file() and not args.force:
            if args.skip_existing:
                skipped += 1
                continue
            done = written_with(target, source, settings)
            if done:
                kept += 1
                continue
            how = "written with another model, settings or input" if done is False else "exists"
            raise MsgppError(f"{target}: {how}; pass --force to replace it, or --skip-existing to keep it")
        job = enhancer.plan_file(source, target, subtype=args.subtype, clip=args.clip, overwrite=args.force)
        job.record = resume_record(source, settings)
        jobs.append(job)
    if kept:
        print(f"kept {kept} output(s) an earlier run wrote with this model and settings", file=sys.stderr)
    if skipped:
        print(f"skipped {skipped} input(s) whose output exists (--skip-existing)", file=sys.stderr)
    total = sum(job.info.frames / job.info.samplerate for job in jobs)
    with files_bar(total, args.quiet) as bar:
        for number, job in enumerate(jobs, 1):
            bar.set_description(f"[{number}/{len(jobs)}] {job.input.name}")
            output = enhancer.run_job(job, progress=bar)
            bar.write(str(output), file=sys.stdout)
    return 0


def run_export(args) -> int:
    from msgpp.enhance.enhancer import Enhancer
    from msgpp.enhance.graph_export import export_torchscript, load_torchscript, max_difference

    if args.out.exists() and not args.force:
        raise MsgppError(f"{args.out}: exists; pass --force to replace it")
    if args.segment <= 0 or args.batch_size < 1:
        raise MsgppError("--segment must be positive and --batch-size at least 1")
    enhancer = Enhancer.from_pretrained(args.model or args.source, device="cpu", backend="torch")
    if args.out.suffix.lower() == ".onnx":
        return _export_onnx(enhancer, args)
    path = export_torchscript(
        enhancer.generator,
        args.out,
        sample_rate=enhancer.sample_rate,
        segment=args.segment,
        batch_size=args.batch_size,
        source=enhancer.source,
        overwrite=args.force,
    )
    graph, metadata = load_torchscript(path)
    difference = max_difference(enhancer.generator, graph, metadata["batch_size"], metadata["segment_samples"])
    print(
        f"{path}: TorchScript for ({metadata['batch_size']}, 1, {metadata['segment_samples']}) at "
        f"{metadata['sample_rate']} Hz; max |graph − PyTorch| = {difference:.2e} on random input"
    )
    return 0


def _export_onnx(enhancer, args) -> int:
    from msgpp.enhance import onnx_backend
    from msgpp.enhance.graph_export import max_difference

    if not onnx_backend.available():
        raise MsgppError("ONNX export needs the packages onnx, onnxscript and onnxruntime (pip install them)")
    samples = max(1, round(args.segment * enhancer.sample_rate))
    onnx_backend.export_onnx(
        enhancer.generator,
        args.out,
        sample_rate=enhancer.sample_rate,
        segment_samples=samples,
        source=enhancer.source,
        overwrite=args.force,
    )
    graph = onnx_backend.load_onnx(args.out)
    difference = max_difference(enhancer.generator, graph, 2, samples)
    print(
        f"{args.out}: ONNX for (batch, 1, {samples}) at {enhancer.sample_rate} Hz; "
        f"max |ONNX Runtime − PyTorch| = {difference:.2e} on random input"
    )
    return 0


# -- the MSG authors' generators ------------------------------------------------------------------
def _register_published(subparsers) -> None:
    convert = subparsers.add_parser(
        "convert-msg",
        help="convert an MSG authors' generator checkpoint into msgpp's inference file",
        description="Convert a generator state dict of the MSG reference code (e.g. bass29netG.pt) into msgpp's "
        "inference file <out>/<name>-<sha8>.pt plus a model card <out>/<name>.md.",
    )
    convert.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="their generator file (a raw state_dict)")
    convert.add_argument("--source", required=True, help="the source it enhances: bass, drums, vocals ...")
    convert.add_argument("--out", type=Path, required=True, help="output folder")
    convert.add_argument("--name", help="file stem (default: msg-paper-<source>)")
    convert.set_defaults(func=run_convert)

    enhancers = subparsers.add_parser("enhancers", help="list the enhancers msgpp knows by name")
    actions = enhancers.add_subparsers(dest="enhancers_command", metavar="<action>", required=True)
    listing = actions.add_parser("list", help="shipped, downloaded and downloadable enhancers")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=run_list)


def run_convert(args) -> int:
    from msgpp.enhance import published

    if args.out.exists() and not args.out.is_dir():
        raise MsgppError(f"--out {args.out}: exists and is not a folder")
    if args.name is not None:
        from msgpp.enhance.weights_file import check_file_stem

        check_file_stem(args.name)
    path = published.convert_checkpoint(args.checkpoint, args.source, args.out, stem=args.name)
    print(path)
    return 0


def rows() -> list[dict]:
    from msgpp.enhance import published
    from msgpp.enhance.pretrained import pretrained_names

    found = [
        {"name": name, "source": name, "status": "shipped", "where": str(path)}
        for name, path in sorted(pretrained_names().items())
    ]
    for name, entry in published.PUBLISHED.items():
        state = published.status(name)
        where = published.cached(name) or published.in_hub_cache(name) or published.source_url(entry)
        found.append({"name": name, "source": entry.source, "status": state, "where": str(where)})
    return found


def run_list(args) -> int:
    table = rows()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    width = max(len(row["name"]) for row in table)
    state_width = max(len(row["status"]) for row in table)
    for row in table:
        print(f"{row['name']:<{width}}  {row['status']:<{state_width}}  {row['where']}")
    return 0
