"""The MSG authors' published generators: conversion, download through huggingface_hub, offline use.

No internet: a server on 127.0.0.1 started here answers in the Hugging Face hub's URL layout for
LFS files (HEAD/GET /<repo>/resolve/<revision>/<file> → 302 to a CDN URL, with X-Repo-Commit,
X-Linked-Etag = the file's sha256 and X-Linked-Size; the CDN URL, on another host name, serves
the bytes, with Range requests). It serves generator state dicts with the authors' key names, written by these tests
at a small width and depth (the full size is checked on shapes only, on the meta device).
"""

from __future__ import annotations

import hashlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import julius
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from msgpp.cli import main
from msgpp.enhance import published
from msgpp.enhance.enhancer import Enhancer
from msgpp.enhance.weights_file import load_inference_file
from msgpp.errors import MsgppError
from msgpp.models.generator import GENERATOR_PRESETS, build_generator, count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(channels=4, depth=3, kernel_size=8, growth=2.0, context=3)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def their_state_dict(seed: int = 0, **sizes) -> dict[str, torch.Tensor]:
    """A generator state dict in the authors' layout (keys and shapes), random weights."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.randn(shape, generator=generator) * 0.2
        for key, shape in published.reference_shapes(**{**SMALL, **sizes}).items()
    }


def as_bytes(state_dict: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


# -- an independent implementation of the authors' (Demucs v2) forward, from the state dict --------
def _trim(tensor: torch.Tensor, length: int) -> torch.Tensor:
    extra = tensor.shape[-1] - length
    return tensor[..., extra // 2 : tensor.shape[-1] - (extra - extra // 2)]


def reference_unet(state_dict: dict, audio: torch.Tensor, depth: int, stride: int = 4) -> torch.Tensor:
    """Demucs v2's U-Net as the authors ran it (valid convs, centre-trimmed skips), without their
    final `+ aud`: returns (U-Net output × std + mean). Shorter than the input."""
    mean, std = audio.mean(dim=-1, keepdim=True), audio.std(dim=-1, keepdim=True)
    x = julius.resample_frac((audio - mean) / (1e-5 + std), 1, 2)
    saved = []
    for index in range(depth):
        x = F.relu(
            F.conv1d(x, state_dict[f"encoder.{index}.0.weight"], state_dict[f"encoder.{index}.0.bias"], stride=stride)
        )
        x = F.glu(F.conv1d(x, state_dict[f"encoder.{index}.2.weight"], state_dict[f"encoder.{index}.2.bias"]), dim=1)
        saved.append(x)
    for index in range(depth):
        x = x + _trim(saved.pop(), x.shape[-1])
        x = F.glu(F.conv1d(x, state_dict[f"decoder.{index}.0.weight"], state_dict[f"decoder.{index}.0.bias"]), dim=1)
        x = F.conv_transpose1d(
            x, state_dict[f"decoder.{index}.2.weight"], state_dict[f"decoder.{index}.2.bias"], stride=stride
        )
        if index < depth - 1:
            x = F.relu(x)
    return julius.resample_frac(x, 2, 1) * std + mean


# -- conversion ------------------------------------------------------------------------------------
def test_full_size_layout_maps_onto_the_paper_preset_shape_for_shape():
    shapes = published.reference_shapes()  # their defaults: 64 channels, depth 6, context 3
    assert sum(torch.Size(shape).numel() for shape in shapes.values()) == published.REFERENCE_PARAMETERS == 89_447_044
    theirs = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    config, converted, facts = published.convert_state_dict(theirs)
    assert config == {**GENERATOR_PRESETS["paper"], "normalize": True, "sample_rate": 16000, "residual": True}
    assert facts["dropped"] == ["outconv.bias", "outconv.weight"] and facts["paper_size"]
    assert facts["parameters"] == 89_447_041 and facts["reference_parameters"] == 89_447_044
    with torch.device("meta"):
        paper = build_generator("paper")
    assert count_parameters(paper) == 89_447_041
    ours = {key: tuple(value.shape) for key, value in paper.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in converted.items()} == ours
    # one tensor per target, none reused
    assert len({id(value) for value in converted.values()}) == len(ours)


def test_converted_generator_computes_what_the_authors_unet_computes():
    theirs = their_state_dict(seed=1)
    config, converted, _ = published.convert_state_dict(theirs)
    generator = build_generator(config).eval()
    generator.load_state_dict(converted)
    length = generator.unet.valid_length(3000)  # a length demucs 4 does not pad
    audio = torch.randn(2, 1, length, generator=torch.Generator().manual_seed(2)) * 0.3 + 0.01
    with torch.no_grad():
        ours = generator(audio)
        reference = reference_unet(theirs, audio, SMALL["depth"])
    # msgpp's residual generator: input + std·U(x); theirs: std·U(x) + mean (+ input, added by their forward)
    correction = ours - audio
    offset = (length - reference.shape[-1]) // 2
    assert reference.shape[-1] < length and offset > 0
    theirs_correction = reference - audio.mean(dim=-1, keepdim=True)
    margin = 100  # julius' resampling filter sees the ends of the shorter signal differently
    inside = slice(margin, reference.shape[-1] - margin)
    difference = (
        (correction[..., offset : offset + reference.shape[-1]][..., inside] - theirs_correction[..., inside])
        .abs()
        .max()
    )
    assert float(theirs_correction.abs().max()) > 1e-2  # not a trivially small signal
    assert float(difference) < 1e-4
    # a wrong mapping (two decoder layers' weights swapped in place) does not pass this check
    broken = dict(converted)
    broken["unet.decoder.1.0.weight"] = converted["unet.decoder.1.0.weight"].flip(-1)
    generator.load_state_dict(broken)
    with torch.no_grad():
        wrong = generator(audio) - audio
    assert (
        float(
            (wrong[..., offset : offset + reference.shape[-1]][..., inside] - theirs_correction[..., inside])
            .abs()
            .max()
        )
        > 1e-3
    )


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda sd: sd.pop("decoder.1.2.bias"), "missing decoder.1.2.bias"),
        (lambda sd: sd.__setitem__("encoder.1.2.weight", torch.zeros(16, 8, 2)), "encoder.1.2.weight: shape"),
        (lambda sd: sd.__setitem__("lstm.linear.weight", torch.zeros(2, 2)), "LSTM"),
        (lambda sd: sd.__setitem__("extra.weight", torch.zeros(2)), "unexpected extra.weight"),
        (lambda sd: sd.__setitem__("encoder.0.0.weight", torch.zeros(4, 2, 8)), "2-channel"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line(damage, message):
    theirs = their_state_dict()
    damage(theirs)
    with pytest.raises(MsgppError, match=message) as caught:
        published.convert_state_dict(theirs)
    assert "\n" not in str(caught.value)


def test_convert_msg_writes_an_inference_file_and_card_that_enhance(tmp_path, capsys):
    checkpoint = tmp_path / "bass29netG.pt"
    theirs = their_state_dict(seed=3)
    checkpoint.write_bytes(as_bytes(theirs))
    assert main(["convert-msg", str(checkpoint), "--source", "bass", "--out", str(tmp_path / "out")]) == 0
    written = Path(capsys.readouterr().out.strip())
    assert written.parent == tmp_path / "out" and written.name.startswith("msg-paper-bass-")
    package = load_inference_file(written)  # the sha8 in its name is checked
    assert package["source"] == "bass" and package["sample_rate"] == 16000
    assert package["generator_config"]["residual"] is True
    assert package["training"]["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert torch.equal(package["state_dict"]["unet.decoder.2.3.weight"], theirs["decoder.2.2.weight"])
    card = (tmp_path / "out" / "msg-paper-bass.md").read_text()
    assert "bass" in card and "outconv.weight" in card and str(tmp_path) not in card
    enhancer = Enhancer.from_pretrained(written, backend="torch", device="cpu")
    audio = np.random.default_rng(0).standard_normal((2, 22050)).astype(np.float32) * 0.1
    enhanced = enhancer(audio, 44100)
    assert enhanced.shape == audio.shape and np.isfinite(enhanced).all()
    assert not np.allclose(enhanced, audio, atol=1e-4)  # the random generator changes the audio


def test_convert_msg_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a pickle at all" * 10)
    assert main(["convert-msg", str(junk), "--source", "bass", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"msgpp: error: {junk}: not a readable checkpoint") and "\n" not in error
    assert not (tmp_path / "out").exists()


# -- a local hub -----------------------------------------------------------------------------------
class Hub:
    """The Hugging Face hub's file layout on 127.0.0.1; `mode` spoils the CDN transfers:
    "corrupt-once"/"corrupt" (flipped bytes, right length), "truncate-once"/"truncate"."""

    def __init__(self, files: dict[str, bytes]):
        self.files = {name: (data, hashlib.sha256(data).hexdigest()) for name, data in files.items()}
        self.mode = None
        self.requests: list[tuple[str, str]] = []
        self.transfers = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body: bool):
                hub.requests.append((self.command, self.path))
                prefix = f"/{published.HF_REPO}/resolve/"
                if self.path.startswith(prefix):
                    revision, _, name = self.path[len(prefix) :].partition("/")
                    if name not in hub.files or revision not in ("main", COMMIT):
                        return self.empty(404, {"X-Error-Code": "EntryNotFound"})
                    data, sha = hub.files[name]
                    return self.empty(
                        302,
                        {
                            "Location": f"{hub.cdn}/cdn/{sha}",
                            "X-Repo-Commit": COMMIT,
                            "X-Linked-Etag": f'"{sha}"',
                            "X-Linked-Size": str(len(data)),
                            "ETag": '"pointer"',
                        },
                    )
                if self.path.startswith("/cdn/"):
                    found = [data for data, sha in hub.files.values() if self.path == f"/cdn/{sha}"]
                    if not found:
                        return self.empty(404, {})
                    return self.send_data(found[0], body)
                return self.empty(404, {})

            def empty(self, code, headers):
                self.send_response(code)
                for key, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(key, value)
                self.end_headers()

            def send_data(self, data: bytes, body: bool):
                start = 0
                if (wanted := self.headers.get("Range", "")).startswith("bytes="):
                    start = int(wanted[len("bytes=") :].split("-")[0])
                payload = data[start:]
                if body:
                    hub.transfers += 1
                mode = hub.mode
                if body and mode in ("corrupt-once", "corrupt"):
                    payload = bytes(byte ^ 0xFF for byte in payload[:64]) + payload[64:]
                    hub.mode = None if mode == "corrupt-once" else mode
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(payload)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.end_headers()
                if not body:
                    return
                if mode in ("truncate-once", "truncate"):
                    hub.mode = None if mode == "truncate-once" else mode
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # LFS files redirect to a CDN on another host, whose response carries no hub headers (the
        # client stops at a redirect off the hub, as it must): "localhost" is that other host here.
        self.cdn = f"http://localhost:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The local hub serving the three published files (small, authors' layout), and an environment
    pointing huggingface_hub and msgpp at it and at empty caches of this test."""
    files = {
        entry.filename: as_bytes(their_state_dict(seed=index))
        for index, entry in enumerate(published.PUBLISHED.values())
    }
    server = Hub(files)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MSGPP_CACHE_DIR", str(tmp_path / "msgpp"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("MSGPP_MSG_REVISION", raising=False)
    yield server
    server.stop()


def leftovers(root: Path) -> list[str]:
    """Files (not folders, not huggingface_hub's lock files) under `root`."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if (path.is_file() or path.is_symlink()) and ".locks" not in path.parts
    )


def test_download_then_enhance_offline_end_to_end(hub, tmp_path, capsys, monkeypatch):
    assert main(["enhancers", "list"]) == 0
    listing = capsys.readouterr().out
    assert "paper-bass" in listing and "downloadable" in listing and "shipped" in listing

    assert main(["download", "paper-bass"]) == 0
    converted = Path(capsys.readouterr().out.split(": ", 1)[1].strip())
    assert converted.parent == tmp_path / "msgpp" / "enhancers" and converted.name.startswith("msg-paper-bass-")
    assert ("HEAD", f"/{published.HF_REPO}/resolve/main/bass29netG.pt") in hub.requests
    package = load_inference_file(converted)
    assert package["training"]["commit"] == COMMIT and package["training"]["file"] == "bass29netG.pt"
    assert (tmp_path / "msgpp" / "enhancers" / "msg-paper-bass.md").is_file()

    assert main(["enhancers", "list", "--json"]) == 0
    import json

    states = {row["name"]: row["status"] for row in json.loads(capsys.readouterr().out)}
    assert states["paper-bass"] == "downloaded" and states["paper-drums"] == "downloadable"

    # network off: the hub is gone and HF_HUB_OFFLINE is set; the name still works
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    song = tmp_path / "bass.wav"
    sf.write(
        song, np.random.default_rng(1).standard_normal((11025, 2)).astype(np.float32) * 0.1, 22050, subtype="FLOAT"
    )
    out = tmp_path / "enhanced.wav"
    assert main(["enhance", str(song), "--model", "paper-bass", "--out", str(out), "--backend", "torch", "-q"]) == 0
    enhanced, rate = sf.read(out)
    assert rate == 22050 and enhanced.shape == (11025, 2) and np.isfinite(enhanced).all()
    enhancer = Enhancer.from_pretrained("paper-bass", backend="torch", device="cpu")
    assert enhancer.source == "bass" and enhancer.sample_rate == 16000


def test_first_use_downloads_and_converts_through_from_pretrained(hub, tmp_path):
    enhancer = Enhancer.from_pretrained("paper-vocals", backend="torch", device="cpu")
    assert enhancer.source == "vocals"
    assert published.status("paper-vocals") == "downloaded"
    transfers = hub.transfers
    Enhancer.from_pretrained("paper-vocals", backend="torch", device="cpu")  # second use: from the cache
    assert hub.transfers == transfers == 1


def test_a_corrupt_download_is_refused_and_fetched_again(hub, tmp_path):
    hub.mode = "corrupt-once"
    path = published.ensure("paper-drums")
    assert hub.transfers == 2
    assert load_inference_file(path)["source"] == "drums"
    blobs = list((tmp_path / "hf").rglob("blobs/*"))
    assert len(blobs) == 1 and hashlib.sha256(blobs[0].read_bytes()).hexdigest() == blobs[0].name


def test_a_download_that_stays_corrupt_leaves_nothing(hub, tmp_path):
    hub.mode = "corrupt"
    with pytest.raises(MsgppError, match="corrupt") as caught:
        published.ensure("paper-drums")
    assert "\n" not in str(caught.value) and hub.transfers == 2
    assert [name for name in leftovers(tmp_path / "hf") if "blobs" in name or "snapshots" in name] == []
    assert not (tmp_path / "msgpp").exists() or leftovers(tmp_path / "msgpp") == []
    hub.mode = None  # the hub is repaired: the next try works
    assert published.ensure("paper-drums").is_file()


def test_a_truncated_transfer_is_resumed(hub, tmp_path):
    hub.mode = "truncate-once"
    path = published.ensure("paper-bass")
    assert hub.transfers >= 2 and load_inference_file(path)["source"] == "bass"


def test_a_transfer_that_always_breaks_is_refused_in_one_line_leaving_nothing(hub, tmp_path):
    hub.mode = "truncate"
    with pytest.raises(MsgppError, match="paper-bass: download of .* failed") as caught:
        published.ensure("paper-bass")
    assert "\n" not in str(caught.value)
    assert [name for name in leftovers(tmp_path / "hf") if "blobs" in name or "snapshots" in name] == []
    assert not (tmp_path / "msgpp").exists() or leftovers(tmp_path / "msgpp") == []


def test_offline_with_nothing_cached_says_what_to_fetch_and_where(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    song = tmp_path / "bass.wav"
    sf.write(song, np.zeros((1600, 1), dtype=np.float32), 16000)
    assert (
        main(
            ["enhance", str(song), "--model", "paper-bass", "--out", str(tmp_path / "out"), "--backend", "torch", "-q"]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert error.startswith("msgpp: error: paper-bass is not downloaded and HF_HUB_OFFLINE is set")
    assert "msgpp download paper-bass" in error
    assert f"{hub.url}/{published.HF_REPO}/resolve/main/bass29netG.pt" in error
    assert str(tmp_path / "msgpp" / "enhancers") in error
    assert hub.requests == []
    assert not (tmp_path / "out").exists()
    for root in (tmp_path / "hf", tmp_path / "msgpp"):
        assert not root.exists() or leftovers(root) == []


def test_offline_converts_a_checkpoint_already_in_the_hugging_face_cache(hub, tmp_path, monkeypatch):
    published.fetch_checkpoint("paper-bass")  # only the raw file, as `huggingface-cli download` would leave it
    assert published.status("paper-bass") == "downloaded (converted on first use)"
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = published.ensure("paper-bass")
    assert load_inference_file(path)["source"] == "bass" and published.status("paper-bass") == "downloaded"


def test_unknown_names_are_refused_in_one_line(hub, capsys):
    assert main(["download", "paper-other"]) == 2
    error = capsys.readouterr().err.strip()
    assert "unknown published name 'paper-other'" in error and "paper-bass" in error
    with pytest.raises(MsgppError, match="not a published one"):
        Enhancer.from_pretrained("paper-guitar")
    assert hub.requests == []
