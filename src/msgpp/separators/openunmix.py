"""Open-Unmix (spectrogram family), on the openunmix package's own model classes.

Weights use open-unmix's local model folder format, the one `openunmix.utils.load_separator`
reads:
    separator.json     {"sample_rate", "nfft", "nhop", "nb_channels"}
    <target>.json      {"args": {"nfft", "nhop", "nb_channels", "hidden_size", ...}, ...}
    <target>*.pth      the OpenUnmix state dict of that target (published files are named
                       `<target>-<sha8>.pth`)

Why msgpp does not call `openunmix.utils.load_separator`: openunmix 1.3.0 imports torchaudio at
module level (`openunmix/__init__.py` → `utils`, and `transforms`), and torchaudio's only builds
on the registry need CUDA, so `import openunmix` fails on a CPU-only machine. Nothing on the
model/Separator path calls torchaudio (the STFT is torch.stft). So when — and only when —
torchaudio cannot be imported, `openunmix_model()` imports openunmix with a stand-in `torchaudio`
module that raises on any use, then removes the stand-in again. The loader below then does what
`load_target_models` does (same files, same constructor arguments, `max_bin` from the state's
`input_mean`), but reads each `.pth` with `weights_only=True` after checking its sha256.

The released umxhq model: pass `weights="umxhq"`; msgpp.separators.released downloads openunmix's
own files into torch.hub's folder (where `openunmix.umxhq()` looks for them too) and checks them.
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from msgpp.constants import SOURCES
from msgpp.errors import MsgppError
from msgpp.files import atomic_write_bytes
from msgpp.separators.base import Separator, WeightsInfo, WeightsReaders
from msgpp.separators.weights import fingerprint, safe_torch_load, torch_bytes, verify_files, write_checksums


def openunmix_model():
    """`openunmix.model`, importable without torchaudio (see the module docstring)."""
    try:
        import openunmix.model as model

        return model
    except ImportError as error:
        if "torchaudio" not in str(error):
            raise
    stand_in = types.ModuleType("torchaudio")

    def __getattr__(attribute):
        raise ImportError(
            f"torchaudio.{attribute}: torchaudio is not importable here; msgpp imported openunmix "
            "with a stand-in and only uses its torch-only parts"
        )

    stand_in.__getattr__ = __getattr__
    sys.modules["torchaudio"] = stand_in
    try:
        import openunmix.model as model
    finally:
        if sys.modules.get("torchaudio") is stand_in:
            del sys.modules["torchaudio"]
    return model


def max_bin_for(sample_rate: int, nfft: int, bandwidth: float) -> int:
    """Bins up to `bandwidth` Hz (openunmix.utils.bandwidth_to_max_bin)."""
    frequencies = np.linspace(0, float(sample_rate) / 2, nfft // 2 + 1, endpoint=True)
    return int(np.max(np.where(frequencies <= bandwidth)[0])) + 1


class OpenUnmixSeparator(Separator):
    name = "openunmix"
    family = "spectrogram"
    description = "Open-Unmix: one BiLSTM mask estimator per source + Wiener filter (openunmix package)"
    trainer = "msgpp.separators.train:train_small_architecture"
    # A small Open-Unmix (hidden 64, 2048-point STFT, input bins up to 16 kHz): ~310 k parameters
    # per target, trainable on a 2-core CPU. Upstream umxhq: nfft 4096, nhop 1024, hidden 512.
    small_architecture: ClassVar[dict] = dict(
        targets=list(SOURCES),
        sample_rate=44100,
        nfft=2048,
        nhop=512,
        nb_channels=2,
        hidden_size=64,
        nb_layers=3,
        bandwidth=16000,
        niter=0,
    )
    segment_seconds = 30.0
    overlap_seconds = 2.0
    niter = 1  # Wiener EM iterations: openunmix's default; a separator.json may set its own

    def __init__(self, model: torch.nn.Module, weights: WeightsInfo | None = None, config: dict | None = None):
        super().__init__(
            model,
            weights,
            sample_rate=int(model.sample_rate),
            sources=tuple(model.target_models.keys()),
            audio_channels=int(config["nb_channels"]) if config else 2,
        )
        self.config = dict(config or {})

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, config: dict | None = None) -> OpenUnmixSeparator:
        config = dict(config or cls.small_architecture)
        module = openunmix_model()
        max_bin = max_bin_for(config["sample_rate"], config["nfft"], config["bandwidth"])
        targets = {
            target: module.OpenUnmix(
                nb_bins=config["nfft"] // 2 + 1,
                nb_channels=config["nb_channels"],
                hidden_size=config["hidden_size"],
                nb_layers=config["nb_layers"],
                max_bin=max_bin,
            )
            for target in config["targets"]
        }
        return cls(_separator(module, targets, config), config=config)

    @classmethod
    def weights_readers(cls) -> WeightsReaders:
        return WeightsReaders(local_weights_info, upstream_weights_info, load_local, load_upstream)

    # -- inference ----------------------------------------------------------------------------
    def forward_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        return self.model(chunks)

    # -- training -----------------------------------------------------------------------------
    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Open-Unmix's input scaler: per-bin mean and std of the mixture magnitudes."""
        for target in self.model.target_models.values():
            bins = target.nb_bins
            target.input_mean.data.copy_(-mean[:bins])
            target.input_scale.data.copy_(1.0 / std[:bins].clamp_min(1e-4))

    def magnitudes(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) → (batch, channels, bins, frames) with the model's own STFT."""
        return self.model.complexnorm(self.model.stft(audio.contiguous()))

    def training_loss(self, mixture: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Open-Unmix's loss: MSE between each target model's magnitude and the true one."""
        mix = self.magnitudes(mixture)
        losses = []
        for index, model in enumerate(self.model.target_models.values()):
            losses.append(torch.nn.functional.mse_loss(model(mix), self.magnitudes(targets[:, index])))
        return torch.stack(losses).sum()

    def save_weights(self, folder: str | Path, training: dict | None = None) -> WeightsInfo:
        return save_local(self.model, self.config, Path(folder), training)


def _separator(module, targets: dict, config: dict):
    return module.Separator(
        target_models=targets,
        niter=int(config.get("niter", OpenUnmixSeparator.niter)),
        residual=False,
        wiener_win_len=300,
        sample_rate=config["sample_rate"],
        n_fft=config["nfft"],
        n_hop=config["nhop"],
        nb_channels=config["nb_channels"],
        filterbank="torch",
    ).eval()


# -- weights: open-unmix model folders ---------------------------------------------------------
def save_local(model: torch.nn.Module, config: dict, folder: Path, training: dict | None = None) -> WeightsInfo:
    """Write open-unmix's folder format (atomically, file by file), plus SHA256SUMS."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    # "niter" is msgpp's addition (openunmix's loader ignores it): the Wiener EM iterations.
    separator_conf = {
        key: config[key] for key in ("sample_rate", "nfft", "nhop", "nb_channels", "niter") if key in config
    }
    written.append(atomic_write_bytes(folder / "separator.json", json.dumps(separator_conf, indent=2).encode()))
    for target, target_model in model.target_models.items():
        args = {
            key: config[key]
            for key in ("nfft", "nhop", "nb_channels", "hidden_size", "nb_layers", "bandwidth", "sample_rate")
        }
        description = {"args": args, "targets": [target], "training": dict(training or {})}
        written.append(atomic_write_bytes(folder / f"{target}.json", json.dumps(description, indent=2).encode()))
        state = {key: value.detach().cpu().clone() for key, value in target_model.state_dict().items()}
        data = torch_bytes(state)
        for stale in folder.glob(f"{target}-*.pth"):
            stale.unlink()
        written.append(atomic_write_bytes(folder / f"{target}-{hashlib.sha256(data).hexdigest()[:8]}.pth", data))
    write_checksums(folder, written)
    _, info, _ = load_local(folder)
    return info


def resolve_local(folder: Path) -> tuple[list[str], dict[str, Path]]:
    """(targets, {target: .pth file}) of an open-unmix model folder."""
    if not folder.is_dir():
        raise MsgppError(
            f"{folder}: an open-unmix weights location must be a folder (separator.json, <target>.json, <target>.pth)"
        )
    separator_json = folder / "separator.json"
    if not separator_json.is_file():
        raise MsgppError(f"{folder}: no separator.json (not an open-unmix model folder)")
    found = {path.stem for path in folder.glob("*.json")} - {"separator"}
    targets = [t for t in SOURCES if t in found] + sorted(found - set(SOURCES))
    if not targets:
        raise MsgppError(f"{folder}: no <target>.json files (not an open-unmix model folder)")
    weights = {}
    for target in targets:
        found = [
            p for p in sorted(folder.glob(f"{target}*.pth")) if p.stem == target or p.stem.startswith(f"{target}-")
        ]
        if len(found) != 1:
            raise MsgppError(f"{folder}: expected one {target}*.pth weights file, found {len(found)}")
        weights[target] = found[0]
    return targets, weights


def local_weights_info(folder: Path) -> WeightsInfo:
    """Checks every file's sha256 and fingerprints them, without building a model."""
    targets, weights = resolve_local(folder)
    files = [folder / "separator.json"] + [f for t in targets for f in (folder / f"{t}.json", weights[t])]
    hashes = verify_files(files)
    return WeightsInfo(location=str(folder), sha256=fingerprint(hashes), files=tuple(sorted(hashes)))


def upstream_weights_info(name: str) -> WeightsInfo:
    """A released model's fingerprint (its files' sha256), downloading it when missing."""
    return _upstream_files(name)[1]


def _upstream_files(name: str) -> tuple[dict[str, Path], WeightsInfo]:
    from msgpp.separators import released

    released.entry(name, OpenUnmixSeparator.name)
    paths = released.ensure(name, check_present=False)
    try:
        hashes = verify_files(paths)
    except MsgppError as error:
        raise MsgppError(f"{error} (run `msgpp download {name} --force`)") from None
    by_name = {path.name: path for path in paths}
    targets = {target: by_name[url.rsplit("/", 1)[-1]] for target, url in released.OPENUNMIX_URLS[name].items()}
    info = WeightsInfo(
        location=name, sha256=fingerprint(hashes, extra=f"openunmix {name}"), files=tuple(sorted(hashes))
    )
    return targets, info


def load_local(folder: Path):
    """(openunmix Separator, WeightsInfo, config) from an open-unmix model folder."""
    info = local_weights_info(folder)  # checks every checksum first
    targets, weights = resolve_local(folder)
    separator_json = folder / "separator.json"
    separator_conf = _read_json(separator_json)
    module = openunmix_model()
    models, config = {}, None
    for target in targets:
        description = _read_json(folder / f"{target}.json")
        state = safe_torch_load(weights[target])
        args = description.get("args", {})
        try:
            target_model = module.OpenUnmix(
                nb_bins=int(args["nfft"]) // 2 + 1,
                nb_channels=int(args["nb_channels"]),
                hidden_size=int(args["hidden_size"]),
                nb_layers=int(args.get("nb_layers", 3)),
                unidirectional=bool(args.get("unidirectional", False)),
                max_bin=state["input_mean"].shape[0],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise MsgppError(f"{folder / (target + '.json')}: incomplete open-unmix arguments ({error})") from None
        result = target_model.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise MsgppError(
                f"{weights[target]}: state dict lacks {', '.join(result.missing_keys[:3])} "
                f"(not an open-unmix {target} model)"
            )
        models[target] = target_model.eval()
        config = config or {
            "targets": targets,
            "sample_rate": int(separator_conf["sample_rate"]),
            "nfft": int(separator_conf["nfft"]),
            "nhop": int(separator_conf["nhop"]),
            "nb_channels": int(separator_conf["nb_channels"]),
            "hidden_size": int(args["hidden_size"]),
            "nb_layers": int(args.get("nb_layers", 3)),
            "bandwidth": args.get("bandwidth"),
            "niter": int(separator_conf.get("niter", OpenUnmixSeparator.niter)),
        }
    try:
        separator = _separator(module, models, config)
    except (KeyError, TypeError, ValueError) as error:
        raise MsgppError(f"{separator_json}: incomplete separator arguments ({error})") from None
    return separator, info, config


def load_upstream(name: str):
    """A released open-unmix model (`released.RELEASED`: umxhq): downloaded into torch.hub's folder
    under openunmix's own file names when missing; the architecture is openunmix's own loader's
    (`openunmix.<name>(pretrained=False)`), each target's file read with weights_only=True after
    its sha256 prefix is checked, then loaded as openunmix does (strict=False)."""
    targets, info = _upstream_files(name)
    openunmix_model()
    import openunmix

    separator = getattr(openunmix, name)(
        targets=list(SOURCES), niter=OpenUnmixSeparator.niter, device="cpu", pretrained=False
    )
    for target, target_model in separator.target_models.items():
        result = target_model.load_state_dict(safe_torch_load(targets[target]), strict=False)
        if result.missing_keys:
            raise MsgppError(
                f"{targets[target]}: state dict lacks {', '.join(result.missing_keys[:3])} "
                f"(not an open-unmix {target} model); run `msgpp download {name} --force`"
            )
    first = next(iter(separator.target_models.values()))
    config = {
        "targets": list(separator.target_models),
        "sample_rate": int(separator.sample_rate),
        "nb_channels": first.fc1.in_features // first.nb_bins,
        "hidden_size": first.hidden_size,
        "niter": OpenUnmixSeparator.niter,
    }
    return separator.eval(), info, config


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MsgppError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise MsgppError(f"{path}: not readable JSON ({error})") from None
