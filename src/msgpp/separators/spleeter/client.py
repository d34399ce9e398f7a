"""The msgpp side of the Spleeter worker: start it once, send it songs, get the sources back.

The worker (worker.py) runs in Spleeter's own environment (environment.py); msgpp starts it with
that environment's Python and talks to it over stdin/stdout, in the framing worker.py describes:
an 8-byte header length, a JSON header, then the float32 payload. One process serves any number
of songs, so TensorFlow builds its graph and restores the checkpoint once.
"""

from __future__ import annotations

import atexit
import json
import os
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from msgpp.errors import MsgppError
from msgpp.separators.spleeter.environment import ensure_environment

# Run by path (not -m): the worker must not import msgpp, which is not installed in that environment.
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
_HEADER = struct.Struct("<Q")


class SpleeterWorker:
    """The worker process: started once, separates any number of songs, stopped by `close()`.

    Requests are serialised by a lock, so one worker can be shared by threads.
    """

    def __init__(self, config: str, model_dir: Path, threads: int = 1, python: Path | None = None):
        python = python or ensure_environment()
        environment = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="2",
            MODEL_PATH=str(Path(model_dir).parent),
            OMP_NUM_THREADS=str(threads),
            PYTHONNOUSERSITE="1",
        )
        environment.pop("PYTHONPATH", None)  # msgpp's packages must not leak into TensorFlow's Python
        self._log = tempfile.NamedTemporaryFile(prefix="msgpp-spleeter-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [
                str(python),
                str(WORKER_SCRIPT),
                "--params",
                config,
                "--model-dir",
                str(model_dir),
                "--threads",
                str(threads),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=environment,
        )
        atexit.register(self.close)
        try:
            ready = self._receive()
        except MsgppError:
            self.close()
            raise
        if not ready.get("ok"):
            self.close()
            raise MsgppError(f"{model_dir}: Spleeter could not load it ({ready.get('error')}; log: {self.log_path})")
        self.instruments = list(ready["instruments"])
        self.sample_rate = int(ready["sample_rate"])
        self.versions = ready.get("versions", {})
        self.parameters = int(ready.get("parameters", 0))

    def separate(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """(samples, channels) float32 at the model's rate → {instrument: (samples, channels)}."""
        waveform = np.ascontiguousarray(waveform, dtype=np.float32)
        with self._lock:
            if self.process.poll() is not None:
                raise MsgppError(
                    f"the Spleeter worker has stopped (exit {self.process.returncode}; log: {self.log_path})"
                )
            self._send({"op": "separate", "shape": list(waveform.shape)}, waveform.tobytes())
            header = self._receive()
            if not header.get("ok"):
                raise MsgppError(f"Spleeter failed: {header.get('error')} (log: {self.log_path})")
            results = {}
            for output in header["outputs"]:
                count = int(np.prod(output["shape"]))
                data = self._read_exactly(count * 4)
                results[output["name"]] = np.frombuffer(data, dtype=np.float32).reshape(output["shape"]).copy()
        return results

    def close(self) -> None:
        process = getattr(self, "process", None)
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            try:
                self._send_to(process, {"op": "quit"}, b"")
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()
        self._log.close()
        if process.returncode == 0:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # framing: 8-byte length, JSON header, payload (see worker.py)
    def _send(self, header: dict, payload: bytes) -> None:
        try:
            self._send_to(self.process, header, payload)
        except (BrokenPipeError, OSError):
            raise MsgppError(f"the Spleeter worker has stopped (log: {self.log_path})") from None

    @staticmethod
    def _send_to(process, header: dict, payload: bytes) -> None:
        encoded = json.dumps(dict(header, nbytes=len(payload))).encode()
        process.stdin.write(_HEADER.pack(len(encoded)) + encoded)
        process.stdin.write(payload)
        process.stdin.flush()

    def _receive(self) -> dict:
        size = _HEADER.unpack(self._read_exactly(_HEADER.size))[0]
        return json.loads(self._read_exactly(size).decode())

    def _read_exactly(self, count: int) -> bytes:
        data = self.process.stdout.read(count) if self.process else b""
        if len(data) != count:
            raise MsgppError(f"the Spleeter worker stopped unexpectedly (log: {self.log_path})")
        return data
