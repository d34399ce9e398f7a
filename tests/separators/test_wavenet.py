"""Wavenet: the port's architecture figures, its alignment, the Keras HDF5 converter, the separator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from msgpp.errors import MsgppError
from msgpp.separators.wavenet.keras_weights import load_keras_wavenet
from msgpp.separators.wavenet.model import (
    WAVENET_CONFIGS,
    Wavenet,
    WavenetConfig,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
    separate_mono,
)
from msgpp.separators.wavenet.separator import WavenetSeparator

# Tiny enough for a NumPy reference: receptive field 2·2·(1+2)+1 = 13.
TINY = WavenetConfig(
    num_stacks=2,
    dilation_depth=1,
    residual_channels=4,
    skip_channels=3,
    final_channels=(5, 6),
    target_field_length=7,
)


def random_model(config: WavenetConfig, seed: int = 0) -> Wavenet:
    torch.manual_seed(seed)
    model = Wavenet(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.4)
    return model.eval()


# --- the architecture ---------------------------------------------------------------------------


def test_paper_configs_have_the_upstream_parameter_counts_and_fields():
    multi, voice = WAVENET_CONFIGS["multi-instrument"], WAVENET_CONFIGS["singing-voice"]
    assert count_parameters(Wavenet(multi)) == 3_277_763
    assert count_parameters(Wavenet(voice)) == 3_277_249
    assert (multi.receptive_field, multi.input_length) == (8185, 9785)
    assert Wavenet(multi).output_length(9785) == 1603


def test_output_sample_sees_exactly_its_receptive_field():
    """Output j of the padded target field is centred on input start + j. Upstream's "receptive
    field" counts the dilated convs only (±(rf−1)/2); the initial conv and the two final k=3 convs
    widen what an output sees by 1 + 2 samples each side."""
    config = WAVENET_CONFIGS["small"]
    model = random_model(config, seed=1).double()
    length = config.receptive_field + 40
    base = torch.randn(1, length, dtype=torch.float64)
    reference = model(base)
    half = (config.receptive_field - 1) // 2
    start = half - config.target_padding
    extent = half + (config.kernel_size - 1) // 2 + sum((k - 1) // 2 for k in config.final_kernel_sizes)
    j = 20
    for offset, should_change in ((-extent, True), (extent, True), (-extent - 1, False), (extent + 1, False)):
        probe = base.clone()
        probe[0, start + j + offset] += 1.0
        changed = (model(probe) - reference).abs()[0, :, j].max().item() > 1e-12
        assert changed == should_change, f"offset {offset}"


def test_short_input_is_refused():
    model = Wavenet(TINY)
    with pytest.raises(ValueError, match="at least 13"):
        model(torch.zeros(1, 12))


def test_separate_mono_is_exact_across_fragments_and_sums_to_the_mixture():
    config = WavenetConfig(**{**TINY.to_dict(), "target_padding": 0})
    model = random_model(config, seed=2)
    signal = torch.randn(300)
    whole = separate_mono(model, signal, target_field_length=1000)
    # One pass over the zero-padded song (half a receptive field, plus the 3 samples the initial
    # and final 'same' convs see beyond it).
    half = (config.receptive_field - 1) // 2 + 3
    direct = model(torch.nn.functional.pad(signal, (half, half))[None])[0, :, 3:-3]
    torch.testing.assert_close(whole["vocals"], direct[0])
    fragmented = separate_mono(model, signal, target_field_length=37, batch_size=3)
    for source in ("vocals", "drums", "bass", "other"):
        assert fragmented[source].shape == (300,)
        torch.testing.assert_close(fragmented[source], whole[source], atol=1e-5, rtol=1e-5)
    total = sum(fragmented[s] for s in ("vocals", "drums", "bass", "other"))
    torch.testing.assert_close(total, signal, atol=1e-5, rtol=1e-5)


# --- Keras HDF5 converter -----------------------------------------------------------------------


def keras_conv1d(x, kernel, dilation=1, bias=None, theano=False):
    """Keras Conv1D(padding='same') on (samples, in) with a (k, in, out) kernel. Theano convolves
    (the kernel is applied reversed in time); TensorFlow correlates."""
    if theano:
        kernel = kernel[::-1]
    k = kernel.shape[0]
    pad = dilation * (k - 1) // 2
    padded = np.pad(x, ((pad, pad), (0, 0)))
    out = sum(padded[j * dilation : j * dilation + len(x)] @ kernel[j] for j in range(k))
    return out + (bias if bias is not None else 0)


def upstream_forward(weights, config, mixture, theano):
    """The upstream Keras graph (models.py) for one input of input_length samples, in NumPy."""

    def relu(v):
        return np.maximum(v, 0)

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    r, length, target, pad = config.residual_channels, len(mixture), config.target_field_length, config.target_padding
    first = length // 2 - target // 2 - pad  # get_padded_target_field_indices
    x = keras_conv1d(mixture[:, None], weights["initial_causal_conv"]["kernel"], theano=theano)
    skips = 0
    for block, (name, mix) in enumerate(zip(weights["dilated"], weights["mix"], strict=True)):
        dilation = config.dilations[block % len(config.dilations)]
        h = keras_conv1d(x, weights[name]["kernel"], dilation, theano=theano)
        z = np.tanh(h[:, :r]) * sigmoid(h[:, r:])
        o = keras_conv1d(z, weights[mix]["kernel"], theano=theano)
        x = x + o[:, :r]
        skips = skips + o[first : first + target + 2 * pad, r:]
    h = keras_conv1d(relu(skips), weights[weights["final"][0]]["kernel"], theano=theano)
    h = keras_conv1d(relu(h), weights[weights["final"][1]]["kernel"], theano=theano)
    out = weights[weights["final"][2]]
    return keras_conv1d(h, out["kernel"], bias=out["bias"], theano=theano)


def write_upstream_hdf5(path, config, *, backend="theano", full_model=True, seed=0, first_automatic=8):
    """An HDF5 file in the layout Keras 2.1.5 writes for upstream's model, with random weights.

    The 1×1 and final convs get automatic names conv1d_<N> from `first_automatic` on (so that
    names past conv1d_9 test numeric ordering); weightless layers appear in layer_names too.
    """
    import h5py

    rng = np.random.default_rng(seed)
    r, s, k = config.residual_channels, config.skip_channels, config.kernel_size
    (f1, f2), (k1, k2) = config.final_channels, config.final_kernel_sizes
    layers = [("data_input", {}), ("add_singleton_depth_1", {})]
    layers.append(("initial_causal_conv", {"kernel": rng.normal(0, 0.5, (k, 1, r))}))
    weights = {"dilated": [], "mix": [], "final": []}
    number = first_automatic
    block = 0
    for stack in range(config.num_stacks):
        for layer_in_stack, dilation in enumerate(config.dilations):
            block += 1
            name = f"res_{block}_dilated_conv_d{dilation}_s{stack}"
            layers.append((name, {"kernel": rng.normal(0, 0.5, (k, r, 2 * r))}))
            layers.append((f"res_{block}_gated_activation_{layer_in_stack}_s{stack}", {}))
            mix = f"conv1d_{number}"
            number += 1
            layers.append((mix, {"kernel": rng.normal(0, 0.5, (1, r, r + s))}))
            layers.append((f"add_{block}", {}))
            weights["dilated"].append(name)
            weights["mix"].append(mix)
    for kernel_shape, bias in (((k1, s, f1), False), ((k2, f1, f2), False), ((1, f2, len(config.sources)), True)):
        name = f"conv1d_{number}"
        number += 1
        entry = {"kernel": rng.normal(0, 0.5, kernel_shape)}
        if bias:
            entry["bias"] = rng.normal(0, 0.5, kernel_shape[-1])
        layers.append((name, entry))
        weights["final"].append(name)
    layers.append(("data_output_1", {}))
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = b"2.1.5"
        handle.attrs["backend"] = backend.encode()
        group = handle.create_group("model_weights") if full_model else handle
        if full_model:
            model_config = {
                "class_name": "Model",
                "config": {
                    "layers": [
                        {
                            "class_name": "InputLayer",
                            "name": "data_input",
                            "config": {"batch_input_shape": [None, config.input_length], "name": "data_input"},
                        },
                    ]
                },
            }
            handle.attrs["model_config"] = json.dumps(model_config).encode()
        group.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        for name, entry in layers:
            layer_group = group.create_group(name)
            weight_names = [f"{name}/{key}:0".encode() for key in entry]
            layer_group.attrs["weight_names"] = np.array(weight_names, dtype="S")
            for key, value in entry.items():
                layer_group.create_dataset(f"{name}/{key}:0", data=value.astype(np.float32))
    for name, entry in layers:
        weights[name] = {key: value.astype(np.float32) for key, value in entry.items()}
    return weights


@pytest.mark.parametrize("backend", ["theano", "tensorflow"])
@pytest.mark.parametrize("full_model", [True, False])
def test_converted_keras_file_computes_what_upstream_computes(tmp_path, backend, full_model):
    path = tmp_path / "checkpoint.00045-0.hdf5"
    weights = write_upstream_hdf5(path, TINY, backend=backend, full_model=full_model)
    model = load_keras_wavenet(path, target_field_length=None if full_model else TINY.target_field_length)
    assert model.config == TINY
    mixture = np.random.default_rng(3).normal(0, 0.5, TINY.input_length).astype(np.float32)
    expected = upstream_forward(weights, TINY, mixture, theano=backend == "theano")
    got = model(torch.from_numpy(mixture)[None])[0].detach().numpy().T
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_theano_kernels_must_be_flipped(tmp_path):
    path = tmp_path / "theano.hdf5"
    weights = write_upstream_hdf5(path, TINY, backend="theano")
    mixture = np.random.default_rng(4).normal(0, 0.5, TINY.input_length).astype(np.float32)
    expected = upstream_forward(weights, TINY, mixture, theano=True)
    unflipped = load_keras_wavenet(path, flip_kernels=False)
    got = unflipped(torch.from_numpy(mixture)[None])[0].detach().numpy().T
    assert np.abs(got - expected).max() > 1e-2


def test_converter_reads_the_paper_architecture(tmp_path):
    path = tmp_path / "multi.hdf5"
    write_upstream_hdf5(path, WAVENET_CONFIGS["multi-instrument"], first_automatic=1)
    model = load_keras_wavenet(path)
    assert model.config == WAVENET_CONFIGS["multi-instrument"]
    assert count_parameters(model) == 3_277_763


def test_converter_refuses_foreign_files(tmp_path):
    import h5py

    not_hdf5 = tmp_path / "weights.hdf5"
    not_hdf5.write_bytes(b"not an hdf5 file")
    with pytest.raises(MsgppError, match="weights.hdf5: not an HDF5 file"):
        load_keras_wavenet(not_hdf5)
    with pytest.raises(MsgppError, match="no such Keras weights file"):
        load_keras_wavenet(tmp_path / "missing.hdf5")
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as handle:
        handle.attrs["layer_names"] = np.array([b"dense_1"])
        handle.create_group("dense_1").attrs["weight_names"] = np.array([b"dense_1/kernel:0"])
        handle["dense_1"].create_dataset("dense_1/kernel:0", data=np.zeros((3, 3), np.float32))
    with pytest.raises(MsgppError, match="initial_causal_conv"):
        load_keras_wavenet(other)


def test_convert_command_writes_a_loadable_checkpoint(tmp_path):
    from msgpp.cli import main

    source = tmp_path / "checkpoint.hdf5"
    write_upstream_hdf5(source, TINY)
    target = tmp_path / "out" / "wavenet.pt"
    assert main(["wavenet-convert", str(source), str(target)]) == 0
    converted, loaded = load_keras_wavenet(source), load_checkpoint(target)
    mixture = torch.randn(1, 50)
    torch.testing.assert_close(loaded(mixture), converted(mixture))
    assert main(["wavenet-convert", str(tmp_path / "missing.hdf5"), str(target)]) == 2


# --- checkpoints and the separator -------------------------------------------------------------


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    model = random_model(WAVENET_CONFIGS["small"])
    path = tmp_path / "w.pt"
    save_checkpoint(model, path, training={"steps": 3})
    package = torch.load(path, weights_only=True)
    assert package["config"]["num_stacks"] == 2 and package["versions"]["torch"] and package["training"]["steps"] == 3
    loaded = load_checkpoint(path)
    mixture = torch.randn(1, WAVENET_CONFIGS["small"].receptive_field + 10)
    torch.testing.assert_close(loaded(mixture), model(mixture))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(MsgppError, match="corrupt.pt: not a readable Wavenet checkpoint"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(MsgppError, match="not a Wavenet checkpoint"):
        load_checkpoint(foreign)


@pytest.fixture(scope="module")
def saved_separator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wavenet-weights")
    separator = WavenetSeparator(random_model(TINY, seed=5))
    info = separator.save_weights(folder, training={"note": "test"})
    return folder, info


def test_separator_loads_saved_weights_and_keys_on_their_hash(saved_separator, tmp_path):
    folder, info = saved_separator
    separator = WavenetSeparator.load(folder)
    assert separator.weights.sha256 == info.sha256
    assert separator.sources == ("drums", "bass", "other", "vocals")
    assert (separator.sample_rate, separator.audio_channels, separator.family) == (16000, 1, "waveform")
    # The same weights written as an upstream HDF5 file load too, under another id.
    hdf5 = tmp_path / "upstream.hdf5"
    write_upstream_hdf5(hdf5, TINY)
    assert WavenetSeparator.load(hdf5).weights.id != separator.weights.id


def test_separator_output_follows_the_mixture(saved_separator):
    separator = WavenetSeparator.load(saved_separator[0])
    rng = np.random.default_rng(0)
    for channels, rate, length in ((2, 44100, 44100), (1, 16000, 5000), (2, 22050, 100)):
        mixture = rng.normal(0, 0.1, (channels, length)).astype(np.float32)
        estimates = separator.separate(mixture, rate)
        assert set(estimates) == {"drums", "bass", "other", "vocals"}
        for estimate in estimates.values():
            assert estimate.shape == (channels, length) and estimate.dtype == np.float32
    # At the native rate and in mono, the sources add up to the mixture (other is the residual).
    mono = rng.normal(0, 0.1, (1, 8000)).astype(np.float32)
    np.testing.assert_allclose(sum(separator.separate(mono, 16000).values()), mono, atol=1e-5)


def test_forward_chunks_matches_whole_signal_separation(saved_separator):
    separator = WavenetSeparator.load(saved_separator[0])
    chunk = torch.randn(2, 1, 400)
    out = separator.forward_chunks(chunk)
    assert out.shape == (2, 4, 1, 400)
    whole = separate_mono(separator.model, chunk[1, 0], target_field_length=1000)
    for index, source in enumerate(separator.sources):
        torch.testing.assert_close(out[1, index, 0], whole[source], atol=1e-5, rtol=1e-5)


def test_separator_bad_inputs(saved_separator, tmp_path):
    separator = WavenetSeparator.load(saved_separator[0])
    with pytest.raises(ValueError, match="empty"):
        separator.separate(np.zeros((2, 0), np.float32), 44100)
    with pytest.raises(MsgppError, match="no such Wavenet weights"):
        WavenetSeparator.load(tmp_path / "nothing-here")
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    with pytest.raises(MsgppError, match="expected one Wavenet weights file"):
        WavenetSeparator.load(empty)
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for path in Path(saved_separator[0]).iterdir():
        (tampered / path.name).write_bytes(path.read_bytes())
    weights_file = next(tampered.glob("*.pt"))
    weights_file.write_bytes(weights_file.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(MsgppError, match="checksum mismatch"):
        WavenetSeparator.load(tampered)


def test_training_loss_decreases_on_one_batch():
    torch.manual_seed(0)
    separator = WavenetSeparator(Wavenet(TINY))
    separator.train()
    mixture = torch.randn(2, 1, 60)
    targets = torch.randn(2, 4, 1, 60) * 0.1
    optimizer = torch.optim.Adam(separator.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = separator.training_loss(mixture, targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.pipeline
def test_train_wavenet_writes_loadable_weights_and_a_model_card(tiny_root, tmp_path):
    from msgpp.separators.wavenet.train import train_wavenet

    out = tmp_path / "wavenet"
    result = train_wavenet(
        tiny_root, out, steps=2, max_minutes=None, batch_size=2, segment_seconds=0.3, score_tracks=1, progress=False
    )
    assert result["training"]["steps"] == 2
    assert set(result["scores"]) == {"drums", "bass", "other", "vocals"}
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Wavenet specifics" in card and result["weights_id"] in card
    separator = WavenetSeparator.load(out)
    assert separator.weights.id == result["weights_id"]
    mixture = np.random.default_rng(0).normal(0, 0.1, (2, 4410)).astype(np.float32)
    assert separator.separate(mixture, 44100)["bass"].shape == (2, 4410)
