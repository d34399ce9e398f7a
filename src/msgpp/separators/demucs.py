"""Demucs separators: Demucs v2 (waveform) and Hybrid Demucs v3 (hybrid), on the demucs package.

Weights are demucs' own: a local repository folder holding `<signature>-<sha8>.th` packages
({"klass", "args", "kwargs", "state"}) and optional bag files `<name>.yaml` (`models: [sig, ...]`,
optional `weights`, `segment`), resolved with the demucs package's repository classes
(demucs.repo.LocalRepo / BagOnlyRepo / AnyModelRepo). One thing differs from demucs' own loader:
packages are read with `torch.load(weights_only=True)`, allowing only the demucs model classes
that a package names, after the file's sha256 is checked.

`weights` may be: a folder (its only bag yaml, else its only `.th`), a `.yaml` or `.th` file in
such a folder, or a released name (`hdemucs_mmi` for hdemucs_v3, `repro_mdx_a_time_only` for
demucs_v2: msgpp.separators.released downloads them from demucs' remote repository into
torch.hub's folder and checks them; offline, from there).

The small configurations trained here (each class's `small_architecture`) use the real classes:
`demucs.demucs.Demucs` configured like v2 (two BiLSTM layers, no DConv branches, no group norm,
GLU, 3-tap decoder rewrite) and `demucs.hdemucs.HDemucs`.
"""

from __future__ import annotations

import fractions
import functools
import hashlib
import json
from pathlib import Path
from typing import ClassVar

import torch
import yaml

from msgpp.constants import SOURCES
from msgpp.errors import MsgppError, error_text
from msgpp.files import atomic_write_bytes
from msgpp.separators.base import Separator, WeightsInfo, WeightsReaders
from msgpp.separators.weights import fingerprint, safe_torch_load, torch_bytes, verify_files, write_checksums


def model_classes() -> dict[str, type]:
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    return {"Demucs": Demucs, "HDemucs": HDemucs, "HTDemucs": HTDemucs}


def build_model(config: dict) -> torch.nn.Module:
    """A demucs model from a `small_architecture`-style dict (`klass` names the class, the rest are
    its kwargs)."""
    config = dict(config)
    klass_name = config.pop("klass")
    classes = model_classes()
    if klass_name not in classes:
        raise MsgppError(f"unknown demucs class {klass_name!r}; choose one of {', '.join(classes)}")
    return classes[klass_name](**config)


class DemucsSeparator(Separator):
    """Any demucs model or bag of models; the subclasses fix the name, family and shipped weights."""

    trainer = "msgpp.separators.train:train_small_architecture"
    # The constructor arguments of the small configuration trained here (`klass`: the demucs class).
    small_architecture: ClassVar[dict] = {}
    # Chunks of the model's own `segment` (seconds), overlapping by 25 % as demucs' apply_model.
    segment_seconds = 10.0
    overlap_seconds = 2.5

    def __init__(self, model: torch.nn.Module, weights: WeightsInfo | None = None):
        super().__init__(
            model,
            weights,
            sample_rate=model.samplerate,
            sources=tuple(model.sources),
            audio_channels=model.audio_channels,
        )
        models = list(model.models) if _is_bag(model) else [model]
        # A transformer model (HTDemucs) takes at most its training length; the others any length.
        self.segment_seconds = float(min(float(getattr(m, "segment", self.segment_seconds)) for m in models))
        self.overlap_seconds = 0.25 * self.segment_seconds

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, config: dict | None = None) -> DemucsSeparator:
        """An untrained separator of `config` (default: the small architecture), for training."""
        return cls(build_model(config or cls.small_architecture))

    @classmethod
    def weights_readers(cls) -> WeightsReaders:
        return WeightsReaders(
            local_weights_info,
            functools.partial(upstream_weights_info, separator=cls.name),
            load_local,
            functools.partial(load_upstream, separator=cls.name),
        )

    # -- inference ----------------------------------------------------------------------------
    def forward_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        normalised, mean, scale = _normalise(chunks)
        if _is_bag(self.model):
            total, weight_sum = 0.0, 0.0
            for model, weights in zip(self.model.models, self.model.weights, strict=True):
                weights = torch.tensor(weights, dtype=chunks.dtype, device=chunks.device)[None, :, None, None]
                total = total + model(normalised) * weights
                weight_sum = weight_sum + weights
            out = total / weight_sum
        else:
            out = self.model(normalised)
        return out * scale[:, None] + mean[:, None]

    # -- training -----------------------------------------------------------------------------
    def training_loss(self, mixture: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """L1 on the waveforms (demucs' loss), on level-normalised examples as in `forward_chunks`."""
        normalised, mean, scale = _normalise(mixture)
        estimate = self.model(normalised)
        return torch.nn.functional.l1_loss(estimate, (targets - mean[:, None]) / scale[:, None])

    def save_weights(self, folder: str | Path, training: dict | None = None) -> WeightsInfo:
        return save_local(self.model, Path(folder), self.name, training)


# Small configurations of the real architectures, trainable on a 2-core CPU (~1 M parameters).
DEMUCS_V2_SMALL = dict(
    klass="Demucs",
    sources=list(SOURCES),
    audio_channels=2,
    channels=16,
    growth=2.0,
    depth=4,
    kernel_size=8,
    stride=4,
    rewrite=True,
    glu=True,
    context=1,
    lstm_layers=2,
    dconv_mode=0,
    norm_starts=99,
    gelu=False,
    normalize=False,
    resample=False,
    rescale=0.1,
    samplerate=44100,
    segment=30,
)
HDEMUCS_V3_SMALL = dict(
    klass="HDemucs",
    sources=list(SOURCES),
    audio_channels=2,
    channels=8,
    growth=2,
    depth=5,
    nfft=4096,
    hybrid=True,
    cac=True,
    rewrite=True,
    rescale=0.1,
    samplerate=44100,
    segment=30,
)


class DemucsV2(DemucsSeparator):
    name, family = "demucs_v2", "waveform"
    description = "Demucs v2-style waveform U-Net with BiLSTM (demucs package, Demucs class)"
    small_architecture = DEMUCS_V2_SMALL


class HDemucsV3(DemucsSeparator):
    name, family = "hdemucs_v3", "hybrid"
    description = "Hybrid Demucs v3: waveform and spectrogram U-Nets (demucs package, HDemucs class)"
    small_architecture = HDEMUCS_V3_SMALL


# -- weights: local repositories -------------------------------------------------------------
def save_local(model: torch.nn.Module, folder: Path, name: str, training: dict | None = None) -> WeightsInfo:
    """Write `model` as demucs does: `<sig>-<sha8>.th` plus `<name>.yaml` (a bag of one), then
    SHA256SUMS. The signature is a hash of the architecture, like demucs' experiment signatures."""
    args, kwargs = model._init_args_kwargs
    package = {
        "klass": type(model),
        "args": list(args),
        "kwargs": dict(kwargs),
        "state": {key: value.detach().cpu().clone() for key, value in model.state_dict().items()},
        "training_args": dict(training or {}),
    }
    described = json.dumps(
        {"klass": type(model).__name__, "args": list(args), "kwargs": kwargs, "training": training or {}},
        sort_keys=True,
        default=str,
    )
    signature = hashlib.sha256(described.encode()).hexdigest()[:8]
    data = torch_bytes(package)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{signature}-*.th"):  # demucs refuses two files of one signature
        stale.unlink()
    model_file = atomic_write_bytes(folder / f"{signature}-{hashlib.sha256(data).hexdigest()[:8]}.th", data)
    bag_file = atomic_write_bytes(folder / f"{name}.yaml", yaml.safe_dump({"models": [signature]}).encode())
    write_checksums(folder, [model_file, bag_file])
    _, info = load_local(bag_file)
    return info


def resolve_local(path: Path) -> tuple[Path, str, list[Path]]:
    """(repository folder, model or bag name, the files it reads) for a local weights path."""
    if path.is_dir():
        folder, name = path, _default_name(path)
    elif path.suffix in (".yaml", ".th"):
        folder, name = path.parent, path.stem.rsplit("-", 1)[0] if path.suffix == ".th" else path.stem
    else:
        raise MsgppError(f"{path}: not a demucs weights folder, .yaml bag or .th file")
    models = {file.stem.rsplit("-", 1)[0]: file for file in folder.glob("*.th")}
    if name in models:
        return folder, name, [models[name]]
    bag_file = folder / f"{name}.yaml"
    if not bag_file.is_file():
        raise MsgppError(
            f"{folder}: no demucs model or bag named {name!r} (have: {', '.join(sorted(models)) or 'none'})"
        )
    try:
        bag = yaml.safe_load(bag_file.read_text()) or {}
        signatures = list(bag["models"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise MsgppError(f"{bag_file}: not a demucs bag file ({error})") from None
    missing = [sig for sig in signatures if sig not in models]
    if missing:
        raise MsgppError(f"{bag_file}: names models missing from {folder}: {', '.join(missing)}")
    return folder, name, [bag_file] + [models[sig] for sig in signatures]


def local_weights_info(path: Path) -> WeightsInfo:
    """Checks every file's sha256 and fingerprints them, without building a model."""
    _, _, files = resolve_local(path)
    hashes = verify_files(files)
    return WeightsInfo(location=str(path), sha256=fingerprint(hashes), files=tuple(sorted(hashes)))


def load_local(path: Path):
    """(model or bag, WeightsInfo) from a local demucs repository, a bag yaml or a `.th` file,
    through demucs' own repository classes."""
    from demucs.repo import AnyModelRepo, BagOnlyRepo, LocalRepo, ModelLoadingError

    info = local_weights_info(path)  # checks every checksum first
    folder, name, _ = resolve_local(path)

    class SafeLocalRepo(LocalRepo):
        """demucs' LocalRepo, reading each package with weights_only=True (checked above)."""

        def get_model(self, sig):
            if sig not in self._models:
                raise ModelLoadingError(f"no model with signature {sig} in {self.root}")
            return _read_package(Path(self._models[sig]))

    try:
        model_repo = SafeLocalRepo(folder)
        model = AnyModelRepo(model_repo, BagOnlyRepo(folder, model_repo)).get_model(name)
    except ModelLoadingError as error:
        raise MsgppError(f"{folder}: {error}") from None
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise MsgppError(f"{folder}: cannot load demucs weights ({error})") from None
    return model.eval(), info


def upstream_weights_info(name: str, separator: str) -> WeightsInfo:
    """A released model's fingerprint (its files' sha256 and its bag), downloading it when missing."""
    return _upstream_files(name, separator)[1]


def _upstream_files(name: str, separator: str) -> tuple[dict[str, Path], WeightsInfo]:
    from msgpp.separators import released

    released.entry(name, separator)
    paths = released.ensure(name, check_present=False)
    try:
        hashes = verify_files(paths)
    except MsgppError as error:
        raise MsgppError(f"{error} (run `msgpp download {name} --force`)") from None
    bag_file, signatures = released.demucs_bag(name)
    by_signature = {path.name.split("-", 1)[0]: path for path in paths}
    info = WeightsInfo(
        location=name,
        sha256=fingerprint(hashes, extra=f"demucs bag {name}: {bag_file.read_text()}"),
        files=tuple(sorted(hashes)),
    )
    return {sig: by_signature[sig] for sig in signatures}, info


def load_upstream(name: str, separator: str):
    """A released demucs model (`released.RELEASED`), downloaded into torch.hub's folder when
    missing, built with demucs' own bag repository from its remote/<name>.yaml, each package read
    with weights_only=True after its sha256 prefix is checked."""
    from demucs.pretrained import REMOTE_ROOT
    from demucs.repo import AnyModelRepo, BagOnlyRepo, ModelLoadingError, ModelOnlyRepo

    files, info = _upstream_files(name, separator)

    class SafeRemoteRepo(ModelOnlyRepo):
        """demucs' RemoteRepo, on the files msgpp downloaded and checked."""

        def has_model(self, sig):
            return sig in files

        def get_model(self, sig):
            if sig not in files:
                raise ModelLoadingError(f"no released model with signature {sig}")
            return _read_package(files[sig])

        def list_model(self):
            return dict(files)

    try:
        model_repo = SafeRemoteRepo()
        model = AnyModelRepo(model_repo, BagOnlyRepo(REMOTE_ROOT, model_repo)).get_model(name)
    except ModelLoadingError as error:
        raise MsgppError(f"demucs weights {name!r}: {error}") from None
    return model.eval(), info


def _read_package(file: Path):
    package = safe_torch_load(file, allowed=[*model_classes().values(), fractions.Fraction])
    return _model_from_package(package, file)


def _model_from_package(package, file: Path):
    from demucs.states import load_model

    if not isinstance(package, dict) or not {"klass", "args", "kwargs", "state"} <= set(package):
        raise MsgppError(f"{file}: not a demucs model package (needs klass, args, kwargs, state)")
    try:
        return load_model(package)
    except Exception as error:  # a state dict that does not fit the architecture, etc.
        raise MsgppError(f"{file}: cannot build the demucs model ({error_text(error)})") from None


def _default_name(folder: Path) -> str:
    bags = sorted(p.stem for p in folder.glob("*.yaml"))
    models = sorted(p.stem.rsplit("-", 1)[0] for p in folder.glob("*.th"))
    if len(bags) == 1:
        return bags[0]
    if not bags and len(models) == 1:
        return models[0]
    choices = bags or models
    if not choices:
        raise MsgppError(f"{folder}: no demucs weights (.th or .yaml) in this folder")
    raise MsgppError(f"{folder}: several demucs models ({', '.join(choices)}); pass the .yaml or .th file itself")


def _normalise(mixture: torch.Tensor):
    """(mixture − mean) / std of its mono downmix, per example: demucs' separate.py does this per
    song; here it is per chunk, matching the per-segment training. Returns (normalised, mean, std)."""
    reference = mixture.mean(dim=1, keepdim=True)
    mean = reference.mean(dim=-1, keepdim=True)
    scale = reference.std(dim=-1, keepdim=True).clamp_min(1e-5)
    return (mixture - mean) / scale, mean, scale


def _is_bag(model) -> bool:
    return type(model).__name__ == "BagOfModels"
