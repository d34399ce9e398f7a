"""Load the upstream Keras Wavenet weights (HDF5) into msgpp's PyTorch port.

The released checkpoints of francesclluis/source-separation-wavenet
(`sessions/multi-instrument/checkpoints/checkpoint.00045-0.hdf5`,
`sessions/singing-voice/checkpoints/checkpoint.00058-0.hdf5`) are Keras 2 model files saved
under Theano. What this reader relies on:

- weights live in the `model_weights` group (a full-model file) or at the root (`save_weights`);
  its `layer_names` attribute lists the layers, each layer's `weight_names` its datasets;
- the named layers are `initial_causal_conv` and `res_{i}_dilated_conv_d{d}_s{s}`; the 1×1 convs
  of the residual blocks and the three final convs have automatic names `conv1d_N`, numbered in
  creation order: the blocks' 1×1 convs first, then final 1, final 2, output (with a bias);
- Keras Conv1D kernels are (k, in, out); PyTorch wants (out, in, k);
- Theano convolves (flips the kernel) where TensorFlow and PyTorch correlate: Keras itself
  flips the kernels when a Theano file is loaded on another backend, and so does this reader
  when the file's `backend` attribute says theano.

The architecture is read from the kernels' shapes and the layer names; the training target field
from the stored model config when there is one.

    msgpp wavenet-convert checkpoint.00045-0.hdf5 separators/wavenet/multi-instrument.pt
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from msgpp.errors import MsgppError

_DILATED = re.compile(r"^res_(?P<block>\d+)_dilated_conv_d(?P<dilation>\d+)_s(?P<stack>\d+)$")
_AUTOMATIC = re.compile(r"^conv1d_(?P<number>\d+)$")
# Output order of the upstream models.
UPSTREAM_SOURCES = {3: (("vocals", "drums", "bass"), "other"), 1: (("vocals",), "accompaniment")}


def read_keras_weights(path) -> tuple[list[str], dict[str, dict[str, np.ndarray]], dict]:
    """(layer names in file order, {layer: {"kernel"|"bias": array}}, file attributes)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: no such Keras weights file")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise MsgppError(f"{path}: not an HDF5 file ({str(error).splitlines()[0]})") from None
    with handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in group.attrs:
            raise MsgppError(f"{path}: not a Keras weights file (no 'layer_names' attribute)")
        names = [_text(name) for name in group.attrs["layer_names"]]
        layers: dict[str, dict[str, np.ndarray]] = {}
        for name in names:
            weight_names = [_text(weight) for weight in group[name].attrs.get("weight_names", [])]
            if weight_names:
                # 'conv1d_3/kernel:0' → 'kernel'
                layers[name] = {
                    weight.split("/")[-1].split(":")[0]: np.asarray(group[name][weight], dtype=np.float32)
                    for weight in weight_names
                }
        attrs = {
            key: _text(value)
            for key, value in handle.attrs.items()
            if key in ("backend", "keras_version", "model_config")
        }
        for key in ("backend", "keras_version"):
            if key not in attrs and key in group.attrs:
                attrs[key] = _text(group.attrs[key])
    return names, layers, attrs


def load_keras_wavenet(
    path,
    *,
    flip_kernels: bool | None = None,
    sources: tuple[str, ...] | None = None,
    residual_source: str | None = None,
    target_field_length: int | None = None,
    target_padding: int = 1,
):
    """A `Wavenet` holding the weights of an upstream Keras HDF5 file.

    flip_kernels: None reads the file's backend (flip for theano); True/False forces it.
    sources / residual_source: output names; by default the upstream order for 3 or 1 outputs.
    """
    import torch

    from msgpp.separators.wavenet.model import Wavenet, WavenetConfig

    path = Path(path)
    names, layers, attrs = read_keras_weights(path)
    if flip_kernels is None:
        flip_kernels = attrs.get("backend", "").lower() == "theano"

    def kernel(layer: str) -> np.ndarray:
        weights = layers[layer]
        if "kernel" not in weights or weights["kernel"].ndim != 3:
            raise MsgppError(f"{path}: layer {layer!r} holds no Conv1D kernel")
        k = weights["kernel"]
        if flip_kernels:
            k = k[::-1]
        return np.ascontiguousarray(k.transpose(2, 1, 0))  # (k, in, out) → (out, in, k)

    if "initial_causal_conv" not in layers:
        raise MsgppError(f"{path}: no 'initial_causal_conv' layer; not a source-separation Wavenet file")
    dilated = sorted(
        (
            (int(m["block"]), int(m["dilation"]), int(m["stack"]), name)
            for name in layers
            if (m := _DILATED.match(name))
        ),
    )
    if not dilated:
        raise MsgppError(f"{path}: no 'res_*_dilated_conv_*' layers; not a source-separation Wavenet file")
    automatic = [name for name in names if name in layers and _AUTOMATIC.match(name)]
    automatic.sort(key=lambda name: int(_AUTOMATIC.match(name)["number"]))
    if len(automatic) != len(dilated) + 3:
        raise MsgppError(
            f"{path}: expected {len(dilated) + 3} unnamed conv layers (one per residual block + 3 final), "
            f"found {len(automatic)}"
        )

    # The architecture, from names and shapes.
    stacks = max(stack for _, _, stack, _ in dilated) + 1
    dilations = [dilation for _, dilation, stack, _ in dilated if stack == 0]
    depth = int(round(math.log2(max(dilations))))
    expected = [2**i for i in range(depth + 1)] * stacks
    if [dilation for _, dilation, _, _ in dilated] != expected:
        raise MsgppError(f"{path}: dilations {[d for _, d, _, _ in dilated]} are not {stacks} stacks of 1..{2**depth}")
    initial = kernel("initial_causal_conv")
    residual_channels, kernel_size = initial.shape[0], initial.shape[2]
    mix_layers, (final1, final2, output) = automatic[: len(dilated)], automatic[len(dilated) :]
    skip_channels = kernel(mix_layers[0]).shape[0] - residual_channels
    final1_kernel, final2_kernel, output_kernel = kernel(final1), kernel(final2), kernel(output)
    outputs = output_kernel.shape[0]
    if sources is None:
        if outputs not in UPSTREAM_SOURCES:
            raise MsgppError(f"{path}: {outputs} outputs; pass sources=(...) to name them")
        sources, default_residual = UPSTREAM_SOURCES[outputs]
        residual_source = residual_source or default_residual
    if len(sources) != outputs:
        raise MsgppError(f"{path}: the file has {outputs} outputs, {len(sources)} source names were given")
    config = WavenetConfig(
        sources=tuple(sources),
        residual_source=residual_source or "other",
        num_stacks=stacks,
        dilation_depth=depth,
        residual_channels=residual_channels,
        skip_channels=skip_channels,
        kernel_size=kernel_size,
        final_channels=(final1_kernel.shape[0], final2_kernel.shape[0]),
        final_kernel_sizes=(final1_kernel.shape[2], final2_kernel.shape[2]),
        target_padding=target_padding,
    )
    stored = target_field_length or _stored_target_field(attrs.get("model_config"), config.receptive_field)
    if stored:
        config = WavenetConfig(**{**asdict(config), "target_field_length": stored})

    state = {"initial.weight": initial}
    for index, (_, _, _, name) in enumerate(dilated):
        state[f"blocks.{index}.dilated.weight"] = kernel(name)
        state[f"blocks.{index}.mix.weight"] = kernel(mix_layers[index])
    state["final1.weight"] = final1_kernel
    state["final2.weight"] = final2_kernel
    state["output.weight"] = output_kernel
    if "bias" not in layers[output]:
        raise MsgppError(f"{path}: the output layer {output!r} has no bias")
    state["output.bias"] = layers[output]["bias"]

    model = Wavenet(config)
    expected_shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    for key, value in state.items():
        if tuple(value.shape) != expected_shapes[key]:
            raise MsgppError(
                f"{path}: {key} has shape {tuple(value.shape)}, the architecture needs {expected_shapes[key]}"
            )
    model.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()})
    return model.eval()


def _stored_target_field(model_config: str | None, receptive_field: int) -> int | None:
    """The training target field, from the input layer's shape in a full-model file."""
    if not model_config:
        return None
    try:
        for layer in json.loads(model_config)["config"]["layers"]:
            if layer.get("class_name") == "InputLayer":
                input_length = layer["config"]["batch_input_shape"][1]
                return int(input_length) - receptive_field + 1
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return None


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
