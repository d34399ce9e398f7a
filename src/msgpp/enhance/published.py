"""The MSG authors' published generators: names, download, and conversion to msgpp's format.

The paper's authors released one generator per source on the Hugging Face hub, repository
`boazcogan/MSG_pretrained_checkpoints` (bass29netG.pt, drums29netG.pt, vocals39netG.pt: bass and
drums after epoch 29, vocals after epoch 39; no "other"). Each file is a raw `state_dict` of their
copy of the Demucs v2 class: 64 channels, depth 6, kernel 8, stride 4, growth 2, GLU, decoder
context 3, no LSTM, per-example normalisation, a global skip connection (`skip_cxn=True`: the
input is added to the U-Net's output), 16 kHz mono, and an output conv (`outconv`, 1×2×1 + bias)
their forward pass never uses: 89,447,044 parameters.

msgpp's generator (msgpp.models.generator, preset "paper") wraps demucs.demucs.Demucs, which holds
the same layers under other names, 89,447,041 parameters. The mapping, checked shape by shape:

    theirs                       msgpp
    encoder.<i>.0.{weight,bias}  unet.encoder.<i>.0.*   strided conv (kernel 8, stride 4)
    encoder.<i>.2.{weight,bias}  unet.encoder.<i>.3.*   1×1 "rewrite" conv before the GLU
    decoder.<i>.0.{weight,bias}  unet.decoder.<i>.0.*   3-tap "rewrite" conv before the GLU
    decoder.<i>.2.{weight,bias}  unet.decoder.<i>.3.*   transposed conv (kernel 8, stride 4)
    outconv.*                    dropped (unused by their forward)

Their context-3 decoder conv has no padding (v2 shrinks the signal and centre-trims the skips);
demucs 4's `context=1` is the same 3-tap conv with one frame of padding, so the two U-Nets compute
the same samples away from the signal's edges (tests/enhance/test_published.py checks this on a
small model against an independent implementation of the v2 forward). Their global skip connection
becomes msgpp's `residual=True`.

The converter reads any width and depth of their layout (channels, kernel, growth, depth and
context are inferred from the shapes; stride 4 and the ×2 resampling are not visible in weights
and are the values every released model uses), so tests can use small checkpoints.

Download goes through huggingface_hub's `hf_hub_download` (its cache, progress bar, resume,
HF_HUB_OFFLINE, HF_ENDPOINT, HF_HUB_CACHE / HF_HOME, read when a download starts); the file is then
checked against the sha256 the hub reports for it (the ETag of LFS files), converted, and written
atomically into msgpp's weights cache, `<cache_dir()>/enhancers/msg-paper-<source>-<sha8>.pt`
(msgpp.files.cache_dir(), as for ONNX graphs: $MSGPP_CACHE_DIR, else $XDG_CACHE_HOME/msgpp, else
~/.cache/msgpp).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from msgpp.errors import MsgppError, error_text
from msgpp.files import atomic_write_text, cache_dir, sha256_file

log = logging.getLogger(__name__)

HF_REPO = "boazcogan/MSG_pretrained_checkpoints"
HF_REVISION = "main"  # the repository has one published state; set MSGPP_MSG_REVISION to pin a commit
DEFAULT_ENDPOINT = "https://huggingface.co"
REFERENCE_PARAMETERS = 89_447_044  # their generator, unused output conv included
PAPER_PARAMETERS = 89_447_041  # msgpp's "paper" preset: the same minus that conv
STRIDE = 4  # not visible in the weights: every released model uses 4
SAMPLE_RATE = 16000  # the paper's rate; not visible in the weights


@dataclass(frozen=True)
class Published:
    name: str
    source: str
    filename: str
    epoch: int


PUBLISHED: dict[str, Published] = {
    entry.name: entry
    for entry in (
        Published("paper-bass", "bass", "bass29netG.pt", 29),
        Published("paper-drums", "drums", "drums29netG.pt", 29),
        Published("paper-vocals", "vocals", "vocals39netG.pt", 39),
    )
}


# -- the authors' layout ---------------------------------------------------------------------------
def reference_shapes(
    channels: int = 64,
    depth: int = 6,
    kernel_size: int = 8,
    growth: float = 2.0,
    context: int = 3,
    outconv: bool = True,
) -> dict[str, tuple[int, ...]]:
    """{key: shape} of the authors' generator state dict (their Demucs v2 copy, mono, one source,
    GLU, rewrite convs, no LSTM) for these sizes."""
    shapes: dict[str, tuple[int, ...]] = {}
    if outconv:
        shapes["outconv.weight"], shapes["outconv.bias"] = (1, 2, 1), (1,)
    decoders = []
    in_channels, width = 1, channels
    for index in range(depth):
        shapes[f"encoder.{index}.0.weight"] = (width, in_channels, kernel_size)
        shapes[f"encoder.{index}.0.bias"] = (width,)
        shapes[f"encoder.{index}.2.weight"] = (2 * width, width, 1)
        shapes[f"encoder.{index}.2.bias"] = (2 * width,)
        # decoder layers are listed innermost first; layer `index` of the encoder pairs with
        # decoder position depth-1-index
        out_channels = in_channels if index > 0 else 1
        decoders.insert(
            0,
            {
                "0.weight": (2 * width, width, context),
                "0.bias": (2 * width,),
                "2.weight": (width, out_channels, kernel_size),
                "2.bias": (out_channels,),
            },
        )
        in_channels, width = width, int(growth * width)
    for position, layer in enumerate(decoders):
        for suffix, shape in layer.items():
            shapes[f"decoder.{position}.{suffix}"] = shape
    return dict(sorted(shapes.items()))


_THEIR_KEY = re.compile(r"^(?P<part>encoder|decoder)\.(?P<index>\d+)\.(?P<layer>[02])\.(?P<kind>weight|bias)$")


def map_key(key: str) -> str | None:
    """Their state-dict key → msgpp's (None for the unused output conv)."""
    if key.startswith("outconv."):
        return None
    match = _THEIR_KEY.match(key)
    if match is None:
        raise MsgppError(f"unexpected key {key!r}")
    layer = {"0": "0", "2": "3"}[match.group("layer")]  # demucs 4 puts an Identity norm after each conv
    return f"unet.{match.group('part')}.{match.group('index')}.{layer}.{match.group('kind')}"


def infer_architecture(state_dict: dict) -> dict:
    """channels, depth, kernel_size, growth and context (their sense) from the tensors' shapes."""
    if any(key.startswith("lstm.") for key in state_dict):
        raise MsgppError("an LSTM generator (lstm.* keys): the released MSG generators have none, and msgpp's does not")
    first = state_dict.get("encoder.0.0.weight")
    if first is None or first.dim() != 3:
        raise MsgppError("no encoder.0.0.weight (a 3-D conv weight): not an MSG / Demucs v2 generator state dict")
    channels, audio_channels, kernel_size = (int(size) for size in first.shape)
    if audio_channels != 1:
        raise MsgppError(f"a {audio_channels}-channel generator: MSG's generators are mono")
    depth = 0
    while f"encoder.{depth}.0.weight" in state_dict:
        depth += 1
    growth = 2.0
    if depth > 1:
        growth = float(state_dict["encoder.1.0.weight"].shape[0]) / channels
    context_weight = state_dict.get("decoder.0.0.weight")
    if context_weight is None or context_weight.dim() != 3:
        raise MsgppError("no decoder.0.0.weight: not a generator with rewrite convs (MSG's have them)")
    context = int(context_weight.shape[2])
    if context % 2 == 0:
        raise MsgppError(f"decoder context {context}: only odd contexts (centred convs) map onto msgpp's generator")
    return dict(channels=channels, depth=depth, kernel_size=kernel_size, growth=growth, context=context)


def convert_state_dict(state_dict: dict) -> tuple[dict, dict, dict]:
    """Their generator state dict → (msgpp generator config, msgpp state dict, facts).

    Every key and shape is checked against their layout for the inferred sizes and against
    msgpp's generator for the resulting config (built on the meta device: no memory, no time);
    tensors are passed through unchanged (meta tensors too, for shape-only checks)."""
    import torch

    from msgpp.models.generator import GENERATOR_PRESETS, build_generator, count_parameters

    if not isinstance(state_dict, dict) or not state_dict:
        raise MsgppError(f"expected a state dict (a dict of tensors), got {type(state_dict).__name__}")
    if all(isinstance(key, str) and key.startswith("module.") for key in state_dict):  # saved from DataParallel
        state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise MsgppError(f"entry {key!r} is not a named tensor: not a generator state dict")
    found = infer_architecture(state_dict)
    expected = reference_shapes(**found, outconv="outconv.weight" in state_dict)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        details = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}" if missing else "",
                f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}" if unexpected else "",
            )
            if part
        )
        raise MsgppError(f"not the MSG generator layout for {_describe(found)} ({details})")
    for key, shape in expected.items():
        if tuple(state_dict[key].shape) != shape:
            raise MsgppError(f"{key}: shape {tuple(state_dict[key].shape)}, expected {shape} for {_describe(found)}")
    if not all(value.is_floating_point() for value in state_dict.values()):
        raise MsgppError("a generator state dict holds floating-point tensors only")
    their_count = sum(value.numel() for value in state_dict.values())

    config = {
        **GENERATOR_PRESETS["paper"],
        "channels": found["channels"],
        "depth": found["depth"],
        "kernel_size": found["kernel_size"],
        "growth": found["growth"],
        "context": (found["context"] - 1) // 2,
        "stride": STRIDE,
        "resample": True,
        "normalize": True,
        "sample_rate": SAMPLE_RATE,
        "residual": True,
    }
    with torch.device("meta"):
        target = build_generator(config)
    target_shapes = {key: tuple(value.shape) for key, value in target.state_dict().items()}
    converted = {}
    for key, value in state_dict.items():
        mapped = map_key(key)
        if mapped is None:
            continue
        if target_shapes.get(mapped) != tuple(value.shape):
            raise MsgppError(
                f"{key} → {mapped}: shape {tuple(value.shape)} does not fit msgpp's {target_shapes.get(mapped)}"
            )
        converted[mapped] = value
    if set(converted) != set(target_shapes):
        raise MsgppError(
            "msgpp's generator has weights the checkpoint does not fill: "
            f"{sorted(set(target_shapes) - set(converted))[:4]}"
        )
    count = sum(value.numel() for value in converted.values())
    if count != count_parameters(target):
        raise MsgppError(
            f"parameter count {count:,} after conversion, msgpp's generator has {count_parameters(target):,}"
        )
    paper = {key: config[key] for key in ("channels", "depth", "kernel_size", "growth", "context")} == {
        key: GENERATOR_PRESETS["paper"][key] for key in ("channels", "depth", "kernel_size", "growth", "context")
    }
    if paper and (their_count, count) != (
        REFERENCE_PARAMETERS if "outconv.weight" in state_dict else PAPER_PARAMETERS,
        PAPER_PARAMETERS,
    ):
        raise MsgppError(
            f"paper-size generator with {their_count:,} / {count:,} parameters; expected "
            f"{REFERENCE_PARAMETERS:,} / {PAPER_PARAMETERS:,}"
        )
    facts = {
        "reference_parameters": their_count,
        "parameters": count,
        "paper_size": paper,
        "dropped": sorted(key for key in state_dict if map_key(key) is None),
        "architecture": found,
    }
    return config, converted, facts


def _describe(found: dict) -> str:
    return (
        f"{found['channels']} channels, depth {found['depth']}, kernel {found['kernel_size']}, "
        f"growth {found['growth']:g}, context {found['context']}"
    )


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Their checkpoint file, read with weights_only=True (a raw state dict, or one under "state_dict")."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise MsgppError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise MsgppError(f"{path}: empty checkpoint file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad or foreign pickle
        raise MsgppError(f"{path}: not a readable checkpoint ({error_text(error, 300)})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise MsgppError(f"{path}: holds a {type(loaded).__name__}, not a generator state dict")
    return loaded


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    source: str,
    out: str | os.PathLike,
    *,
    stem: str | None = None,
    origin: dict | None = None,
) -> Path:
    """Convert one of their checkpoint files into msgpp's inference file `<out>/<stem>-<sha8>.pt`
    (default stem `msg-paper-<source>`), with a model card `<out>/<stem>.md`; returns the file."""
    from msgpp.enhance.weights_file import check_package, save_inference_file

    if not isinstance(source, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", source):
        raise MsgppError(f"--source {source!r}: expected a source name such as bass, drums or vocals")
    checkpoint = Path(checkpoint)
    try:
        config, converted, facts = convert_state_dict(read_checkpoint(checkpoint))
    except MsgppError as error:
        if str(error).startswith(str(checkpoint)):
            raise
        raise MsgppError(f"{checkpoint}: {error}") from None
    check_package(
        {"source": source, "sample_rate": SAMPLE_RATE, "generator_config": config, "state_dict": converted}, checkpoint
    )
    stem = stem or f"msg-paper-{source}"
    origin = dict(origin or {})
    origin.setdefault("checkpoint", checkpoint.name)
    origin["checkpoint_sha256"] = sha256_file(checkpoint)
    training = {
        "origin": "MSG authors' published generator (Schaffer et al., ISMIR 2022), converted by msgpp",
        **origin,
        "reference_parameters": facts["reference_parameters"],
        "dropped_keys": facts["dropped"],
    }
    path = save_inference_file(
        out,
        stem,
        source=source,
        sample_rate=SAMPLE_RATE,
        generator_config=config,
        state_dict=converted,
        training=training,
    )
    card = model_card(path, source, config, facts, origin)
    atomic_write_text(Path(out) / f"{stem}.md", card)
    return path


def model_card(path: Path, source: str, config: dict, facts: dict, origin: dict) -> str:
    lines = [
        f"# {path.name}: the MSG authors' {source} generator, in msgpp's format",
        "",
        "Converted by `msgpp convert-msg` from the generator the paper's authors published (Schaffer, Cogan, "
        "Manilow, Morrison, Seetharaman, Pardo: Music Separation Enhancement with Generative Modeling, ISMIR 2022).",
        "Weights are theirs, unchanged; only the key names differ (see msgpp/enhance/published.py).",
        "",
        f"- source: {source}; 16 kHz mono; enhances any separator's {source} estimate",
        f"- parameters: {facts['parameters']:,} (their file: {facts['reference_parameters']:,}; dropped, unused by "
        f"their forward: {', '.join(facts['dropped']) or 'nothing'})",
        f"- architecture: {_describe(facts['architecture'])} (theirs) = msgpp generator config below",
        f"- origin: {json.dumps(origin, sort_keys=True)}",
        f'- load: `msgpp.Enhancer.from_pretrained("<this folder>/{path.name}")`, or '
        f"`msgpp enhance --model <this folder>/{path.name} ...`",
        "",
        "Differences from the authors' inference script (Run_Inference.py), which the paper's figures used: it cuts "
        "1-s windows every 0.5 s, zero-pads each by 0.25 s on both sides (normalising over the padded window), "
        "overlap-adds with a Hamming window without dividing by the window sum, and peak-normalises the output. "
        "msgpp runs longer segments (5 s by default) with a normalised cross-fade, keeps the input's level, "
        "resamples any rate and channel count to and from 16 kHz mono and keeps the band above 8 kHz unchanged. "
        "Their forward also adds the window's mean a second time (a DC offset of the order of 1e-3 of full scale), "
        "which msgpp leaves out. The U-Net itself computes the same samples.",
        "",
        "```json",
        json.dumps(config, indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


# -- the weights cache -----------------------------------------------------------------------------
def weights_folder() -> Path:
    """msgpp's cache of converted enhancers: <cache_dir()>/enhancers."""
    return cache_dir() / "enhancers"


def cached(name: str) -> Path | None:
    """The converted file of a published name in the weights cache, or None."""
    found = sorted(weights_folder().glob(f"msg-{name}-*.pt"), key=lambda path: path.stat().st_mtime)
    found = [path for path in found if re.fullmatch(rf"msg-{re.escape(name)}-[0-9a-f]{{8}}\.pt", path.name)]
    return found[-1] if found else None


def _entry(name: str) -> Published:
    if name not in PUBLISHED:
        raise MsgppError(f"unknown published enhancer {name!r}; published: {', '.join(PUBLISHED)}")
    return PUBLISHED[name]


def _offline() -> bool:
    import huggingface_hub.constants as constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _hub_cache() -> str | None:
    """huggingface_hub's cache folder as the environment says now (None: the library's default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _revision() -> str:
    return os.environ.get("MSGPP_MSG_REVISION") or HF_REVISION


def source_url(entry: Published) -> str:
    return f"{_endpoint()}/{HF_REPO}/resolve/{_revision()}/{entry.filename}"


def _where_to_put(entry: Published) -> str:
    return (
        f"on a machine online run `msgpp download {entry.name}` and copy {weights_folder()} here, or fetch "
        f"{source_url(entry)} and run `msgpp convert-msg {entry.filename} --source {entry.source} "
        f"--out {weights_folder()}`"
    )


def in_hub_cache(name: str) -> Path | None:
    """The raw checkpoint of a published name in huggingface_hub's cache (no network), or None."""
    from huggingface_hub import try_to_load_from_cache

    entry = _entry(name)
    found = try_to_load_from_cache(HF_REPO, entry.filename, cache_dir=_hub_cache(), revision=_revision())
    return Path(found) if isinstance(found, str) else None


def fetch_checkpoint(name: str, *, force: bool = False) -> Path:
    """Their checkpoint through huggingface_hub (cached; HF_HUB_OFFLINE honoured), checked against
    the sha256 the hub gives for it; a corrupt download is removed and fetched once more."""
    entry = _entry(name)
    offline = _offline()
    for attempt in (1, 2):
        path = _hub_download(entry, offline=offline, force=force or attempt > 1)
        problem = _check_download(path)
        if problem is None:
            return path
        _remove_download(path)
        if offline or attempt == 2:
            advice = f"Fetch it again: {_where_to_put(entry)}" if offline else f"Try again later: {source_url(entry)}"
            raise MsgppError(f"{name}: {problem}; removed it. {advice}")
        log.warning("%s: %s; removed it, downloading again", name, problem)
    raise AssertionError("unreachable")


def _hub_download(entry: Published, *, offline: bool, force: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    started = time.time()
    try:
        return Path(
            hf_hub_download(
                HF_REPO,
                entry.filename,
                revision=_revision(),
                cache_dir=_hub_cache(),
                endpoint=_endpoint(),
                local_files_only=offline,
                force_download=force and not offline,
            )
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        _remove_incomplete(started)
        if offline:
            raise MsgppError(
                f"{entry.name} is not downloaded and HF_HUB_OFFLINE is set: {_where_to_put(entry)}"
            ) from None
        raise MsgppError(
            f"{entry.name}: cannot download {source_url(entry)} ({_reason(error)}): {_where_to_put(entry)}"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        _remove_incomplete(started)
        raise MsgppError(
            f"{entry.name}: download of {source_url(entry)} failed ({_reason(error)}); nothing was kept, try again"
        ) from None
    except Exception as error:  # noqa: BLE001 - httpx and the hub client raise many types for a broken transfer
        _remove_incomplete(started)
        raise MsgppError(
            f"{entry.name}: download of {source_url(entry)} failed ({type(error).__name__}: "
            f"{_reason(error)}); nothing was kept, try again"
        ) from None


def _reason(error: Exception) -> str:
    return error_text(error, 300)


def _repo_cache() -> Path:
    from huggingface_hub import constants

    return Path(_hub_cache() or constants.HF_HUB_CACHE) / f"models--{HF_REPO.replace('/', '--')}"


def _remove_incomplete(since: float) -> None:
    """Partial blobs huggingface_hub left in this repository's cache by a failed transfer of ours."""
    for partial in (_repo_cache() / "blobs").glob("*.incomplete"):
        try:
            if partial.stat().st_mtime >= since - 1:
                partial.unlink()
        except OSError:
            pass


def _check_download(path: Path) -> str | None:
    """None when the file's sha256 matches the hub's (its blob name for LFS files), else the problem."""
    blob = Path(os.path.realpath(path))
    if not re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return None  # not an LFS file, or a cache without links: the conversion's checks remain
    actual = sha256_file(blob)
    if actual != blob.name:
        return f"the downloaded file is corrupt (sha256 {actual[:12]}…, the hub says {blob.name[:12]}…)"
    return None


def _remove_download(path: Path) -> None:
    blob = Path(os.path.realpath(path))
    for item in (path, blob):
        try:
            item.unlink()
        except OSError:
            pass


def ensure(name: str, *, force: bool = False) -> Path:
    """The converted file of a published name: from msgpp's cache, else downloaded (or taken from
    huggingface_hub's cache) and converted now."""
    entry = _entry(name)
    if not force and (found := cached(name)) is not None:
        return found
    checkpoint = fetch_checkpoint(name, force=force)
    origin = {
        "repository": HF_REPO,
        "revision": _revision(),
        "file": entry.filename,
        "epoch": entry.epoch,
        "url": f"https://huggingface.co/{HF_REPO}",
    }
    commit = checkpoint.parent.name
    if re.fullmatch(r"[0-9a-f]{40}", commit):
        origin["commit"] = commit
    log.info("converting %s (%s) into msgpp's format in %s", entry.filename, name, weights_folder())
    path = convert_checkpoint(checkpoint, entry.source, weights_folder(), stem=f"msg-{name}", origin=origin)
    for older in weights_folder().glob(f"msg-{name}-*.pt"):  # a re-download replaces the previous conversion
        if older != path and re.fullmatch(rf"msg-{re.escape(name)}-[0-9a-f]{{8}}\.pt", older.name):
            older.unlink(missing_ok=True)
    return path


def status(name: str) -> str:
    """ "downloaded" (converted in msgpp's cache), "in the Hugging Face cache" or "downloadable"."""
    if cached(name) is not None:
        return "downloaded"
    if in_hub_cache(name) is not None:
        return "downloaded (converted on first use)"
    return "downloadable"
