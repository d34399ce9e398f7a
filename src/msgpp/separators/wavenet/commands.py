"""`msgpp wavenet-convert`: upstream Keras weights → a msgpp Wavenet checkpoint; and
`msgpp wavenet-train`, the old spelling of `msgpp separators train wavenet` (kept for one release)."""

from __future__ import annotations

from pathlib import Path

from msgpp.separators.commands import add_train_alias


def register(subparsers) -> None:
    add_train_alias(subparsers, "wavenet-train", "wavenet", "train a small Wavenet on a MUSDB18-HQ-layout folder")
    parser = subparsers.add_parser(
        "wavenet-convert",
        help="convert upstream Keras Wavenet weights (HDF5) into a msgpp Wavenet checkpoint",
        description="Convert a francesclluis/source-separation-wavenet checkpoint (Keras HDF5) "
        "into a msgpp Wavenet checkpoint usable with `--weights` of the wavenet separator.",
    )
    parser.add_argument("hdf5", help="the Keras checkpoint, e.g. checkpoint.00045-0.hdf5")
    parser.add_argument("output", help="the msgpp checkpoint to write (.pt)")
    flip = parser.add_mutually_exclusive_group()
    flip.add_argument(
        "--flip-kernels",
        dest="flip",
        action="store_true",
        default=None,
        help="flip kernels in time (default: when the file was saved under Theano)",
    )
    flip.add_argument("--no-flip-kernels", dest="flip", action="store_false")
    parser.set_defaults(func=run_convert)


def run_convert(args) -> int:
    from msgpp.separators.wavenet.keras_weights import load_keras_wavenet
    from msgpp.separators.wavenet.model import count_parameters, save_checkpoint

    model = load_keras_wavenet(args.hdf5, flip_kernels=args.flip)
    save_checkpoint(model, args.output, training={"converted_from": Path(args.hdf5).name})
    config = model.config
    print(
        f"{args.output}: {count_parameters(model):,} parameters, sources {', '.join(config.sources)} "
        f"(+ {config.residual_source}), receptive field {config.receptive_field}"
    )
    return 0
