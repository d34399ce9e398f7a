"""The Spleeter worker: runs inside Spleeter's own environment, loads one model once, separates on demand.

This file is executed by the Spleeter virtual environment's Python (3.8–3.11, tensorflow 2.12,
spleeter 2.4.2), by path, never imported by msgpp: it uses only the standard library, numpy,
tensorflow and spleeter. msgpp.separators.spleeter.client starts it and talks to it over
stdin/stdout; msgpp.separators.spleeter.train runs spleeter's trainer through it (--train, --export).

Protocol: every message is an 8-byte little-endian header length, a UTF-8 JSON header, then
`header["nbytes"]` bytes of payload (float32 arrays, C order, concatenated).
    worker → msgpp, once loaded:  {"ok": true, "instruments": [...], "sample_rate": 44100, "versions": {...}}
    msgpp → worker: {"op": "separate", "shape": [samples, 2], "nbytes": n} + the stereo waveform
    worker → msgpp: {"ok": true, "outputs": [{"name": "vocals", "shape": [samples, 2]}, ...], "nbytes": n} + arrays
    msgpp → worker: {"op": "quit"}
Any failure answers {"ok": false, "error": "..."}; a failure while loading also ends the worker.
The protocol stream is a private copy of stdout; file descriptor 1 is pointed at stderr so that
nothing TensorFlow prints can corrupt it.
"""

import argparse
import json
import os
import struct
import sys
import traceback

HEADER = struct.Struct("<Q")

# Run as a script, Python puts this folder first on sys.path, where msgpp's own modules (train.py,
# separator.py, ...) could shadow a module of the same name that spleeter or tensorflow imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]


def read_message(stream):
    raw = stream.read(HEADER.size)
    if len(raw) < HEADER.size:
        return None, b""  # msgpp went away
    header = json.loads(stream.read(HEADER.unpack(raw)[0]).decode("utf-8"))
    payload = stream.read(header.get("nbytes", 0)) if header.get("nbytes") else b""
    return header, payload


def write_message(stream, header, payloads=()):
    payloads = list(payloads)
    header = dict(header, nbytes=sum(len(payload) for payload in payloads))
    encoded = json.dumps(header).encode("utf-8")
    stream.write(HEADER.pack(len(encoded)) + encoded)
    for payload in payloads:
        stream.write(payload)
    stream.flush()


class SpleeterModel:
    """One Spleeter graph and session, built and restored once, run per request."""

    def __init__(self, params_path, model_dir, threads):
        import numpy as np
        import tensorflow as tf
        from spleeter.model import EstimatorSpecBuilder, InputProviderFactory
        from spleeter.model.provider import ModelProvider
        from spleeter.utils.configuration import load_configuration

        self.np = np
        params = load_configuration(params_path)
        params["model_dir"] = model_dir
        params["MWF"] = bool(params.get("MWF", False))
        # The provider resolves model_dir (relative names under $MODEL_PATH) and only downloads
        # when the folder has no `.probe`; msgpp hands it an existing folder.
        params["model_dir"] = ModelProvider.default().get(params["model_dir"])
        checkpoint = tf.train.latest_checkpoint(params["model_dir"])
        if checkpoint is None:
            raise RuntimeError(f"no TensorFlow checkpoint in {params['model_dir']}")
        self.params = params
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.keras.backend.set_learning_phase(0)  # inference: dropout off, BN moving stats
            self.features = InputProviderFactory.get(params).get_input_dict_placeholders()
            builder = EstimatorSpecBuilder(self.features, params)
            self.outputs = {name: tensor for name, tensor in builder.outputs.items() if name != "audio_id"}
            config = tf.compat.v1.ConfigProto(
                intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads
            )
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
            _check_shapes(tf, checkpoint, tf.compat.v1.global_variables())
            stored = dict(tf.train.list_variables(checkpoint))
            self.step = int(tf.train.load_variable(checkpoint, "global_step")) if "global_step" in stored else 0
            self.saver = tf.compat.v1.train.Saver()
            self.saver.restore(self.session, checkpoint)
            self.parameters = int(sum(np.prod(v.shape) for v in tf.compat.v1.global_variables()))
        self.instruments = list(params["instrument_list"])
        self.sample_rate = int(params["sample_rate"])

    def export(self, folder):
        """Save only the inference graph's variables (no optimiser slots) as folder/model, with a
        `checkpoint` file naming it relatively and spleeter's `.probe`."""
        import tensorflow as tf

        os.makedirs(folder, exist_ok=True)
        with self.graph.as_default():
            # spleeter's own Separator (a tf.estimator) also restores global_step.
            step = tf.compat.v1.train.get_or_create_global_step()
            self.session.run(step.assign(self.step))
            saver = tf.compat.v1.train.Saver()
            saver.save(self.session, os.path.join(folder, "model"), write_meta_graph=False, write_state=False)
        with open(os.path.join(folder, "checkpoint"), "w") as handle:
            handle.write('model_checkpoint_path: "model"\nall_model_checkpoint_paths: "model"\n')
        with open(os.path.join(folder, ".probe"), "w") as handle:
            handle.write("OK")

    def separate(self, waveform):
        feed = {self.features["waveform"]: waveform, self.features["audio_id"]: ""}
        results = self.session.run(self.outputs, feed_dict=feed)
        return {name: self.np.ascontiguousarray(results[name], dtype=self.np.float32) for name in self.instruments}


def make_soundfile_adapter():
    """A spleeter AudioAdapter reading WAV/FLAC with soundfile, for `spleeter train -a`: the
    default adapter runs ffprobe and ffmpeg per file, seconds each on a busy CPU."""
    import numpy as np
    import soundfile as sf
    from spleeter.audio.adapter import AudioAdapter

    class SoundfileAdapter(AudioAdapter):
        def load(self, path, offset=None, duration=None, sample_rate=None, dtype=b"float32"):
            path = path.decode() if isinstance(path, bytes) else str(path)
            info = sf.info(path)
            if sample_rate is not None and int(sample_rate) != info.samplerate:
                raise ValueError(f"{path}: {info.samplerate} Hz, the model needs {int(sample_rate)} Hz")
            start = int(round((offset or 0) * info.samplerate))
            frames = int(round(duration * info.samplerate)) if duration is not None else -1
            data, rate = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
            return data.astype(np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype)), rate

        def save(self, path, data, sample_rate, codec=None, bitrate=None):
            sf.write(str(path), data, int(sample_rate))

    return SoundfileAdapter


def _check_shapes(tf, checkpoint, variables):
    """Saver.restore reshapes variables silently: refuse a checkpoint made for other params."""
    stored = dict(tf.train.list_variables(checkpoint))
    for variable in variables:
        name = variable.op.name
        if name not in stored:
            raise ValueError(f"the checkpoint has no variable {name} (weights for another configuration?)")
        if list(stored[name]) != variable.shape.as_list():
            raise ValueError(
                f"variable {name} is {list(stored[name])} in the checkpoint, {variable.shape.as_list()} in the "
                "configuration (weights for another configuration?)"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="spleeter configuration: a JSON file or spleeter:4stems")
    parser.add_argument("--model-dir", required=True, help="the model folder (TensorFlow checkpoint + .probe)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--export", metavar="FOLDER", help="write an inference-only copy of the model and exit")
    parser.add_argument("--train", metavar="DATA", help="run spleeter's `train` on this data folder and exit")
    args = parser.parse_args(argv)
    if args.train:
        from spleeter.__main__ import train

        globals()["SoundfileAdapter"] = make_soundfile_adapter()
        # spleeter's own train command, with its --adapter option naming the adapter above.
        train(adapter="__main__.SoundfileAdapter", data=args.train, params_filename=args.params, verbose=True)
        return 0
    if args.export:
        SpleeterModel(args.params, os.path.abspath(args.model_dir), args.threads).export(args.export)
        return 0

    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    protocol_in = sys.stdin.buffer
    try:
        model = SpleeterModel(args.params, os.path.abspath(args.model_dir), args.threads)
    except Exception as error:  # reported to msgpp, which raises it as a one-line error
        traceback.print_exc()
        write_message(protocol_out, {"ok": False, "error": f"{type(error).__name__}: {error}"})
        return 1
    import numpy as np
    import spleeter
    import tensorflow as tf

    versions = {"tensorflow": tf.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    versions["spleeter"] = getattr(spleeter, "__version__", None) or _distribution_version("spleeter")
    write_message(
        protocol_out,
        {
            "ok": True,
            "instruments": model.instruments,
            "sample_rate": model.sample_rate,
            "versions": versions,
            "parameters": model.parameters,
        },
    )
    while True:
        header, payload = read_message(protocol_in)
        if header is None or header.get("op") == "quit":
            return 0
        try:
            if header.get("op") != "separate":
                raise ValueError(f"unknown op {header.get('op')!r}")
            waveform = np.frombuffer(payload, dtype=np.float32).reshape(header["shape"])
            estimates = model.separate(waveform)
            outputs = [{"name": name, "shape": list(array.shape)} for name, array in estimates.items()]
            write_message(protocol_out, {"ok": True, "outputs": outputs}, [a.tobytes() for a in estimates.values()])
        except Exception as error:
            traceback.print_exc()
            write_message(protocol_out, {"ok": False, "error": f"{type(error).__name__}: {error}"})


def _distribution_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
