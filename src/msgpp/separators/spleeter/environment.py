"""Spleeter's own virtual environment: where it is, whether it is ready, how it is built.

spleeter 2.4.2 needs Python < 3.12 and pins tensorflow 2.12.1, numpy < 2 and pandas < 2, which
clash with msgpp's environment, so it gets its own: `separators/spleeter/.venv` (or
$MSGPP_SPLEETER_ENV), built from `separators/spleeter/requirements.txt` by `make spleeter-env`
(`msgpp spleeter setup`) or on first use. Standard library only, so `msgpp --help` stays fast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from msgpp.errors import MsgppError

SPLEETER_VERSION = "2.4.2"
ENV_VARIABLE = "MSGPP_SPLEETER_ENV"
PYTHON_VARIABLE = "MSGPP_SPLEETER_PYTHON"


def assets_dir() -> Path:
    from msgpp.separators.weights import separators_dir

    return separators_dir() / "spleeter"


def requirements_file() -> Path:
    return assets_dir() / "requirements.txt"


def environment_dir() -> Path:
    return Path(os.environ[ENV_VARIABLE]) if os.environ.get(ENV_VARIABLE) else assets_dir() / ".venv"


def environment_python() -> Path:
    return environment_dir() / "bin" / "python"


def _stamp() -> Path:
    return environment_dir() / ".msgpp-ready"


def _requirements_digest() -> str:
    text = requirements_file().read_bytes() if requirements_file().is_file() else b""
    return hashlib.sha256(text + SPLEETER_VERSION.encode()).hexdigest()


def environment_ready() -> bool:
    """True when the environment exists and was built from the current requirements file."""
    stamp = _stamp()
    return environment_python().is_file() and stamp.is_file() and stamp.read_text().strip() == _requirements_digest()


def find_base_python() -> str:
    """A Python 3.8–3.11 to build the environment with: $MSGPP_SPLEETER_PYTHON, this one if old
    enough, else python3.11 … python3.8 on PATH."""
    candidates = [os.environ.get(PYTHON_VARIABLE)] if os.environ.get(PYTHON_VARIABLE) else []
    if sys.version_info[:2] <= (3, 11):
        candidates.append(sys.executable)
    candidates += [shutil.which(f"python3.{minor}") for minor in (11, 10, 9, 8)]
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        major, minor = map(int, version.split("."))
        if (major, minor) >= (3, 8) and (major, minor) <= (3, 11):
            return candidate
    raise MsgppError(
        f"spleeter {SPLEETER_VERSION} needs Python 3.8–3.11 and none was found; install python3.11 "
        f"or set {PYTHON_VARIABLE}=/path/to/python3.11"
    )


def ensure_environment(progress: bool = True) -> Path:
    """Build Spleeter's environment if it is missing or stale; return its Python.

    tensorflow-cpu and the other pins first, then spleeter itself with --no-deps (its own
    requirement on `tensorflow` would pull the CUDA build); jax/jaxlib, which tensorflow 2.12
    drags in and spleeter never imports, are removed (~300 MB). A file lock keeps two processes
    from building it at once.
    """
    if environment_ready():
        return environment_python()
    import fcntl

    if not requirements_file().is_file():
        raise MsgppError(f"{requirements_file()}: missing (Spleeter's environment requirements)")
    folder = environment_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    # The lock lives outside the source tree (nothing new shows up in git status).
    lock_path = (
        Path(tempfile.gettempdir())
        / f"msgpp-spleeter-env-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]}.lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if environment_ready():  # built by another process meanwhile
            return environment_python()
        base = find_base_python()
        say = (
            (lambda text: print(f"spleeter environment: {text}", file=sys.stderr, flush=True))
            if progress
            else (lambda text: None)
        )
        say(f"building {folder} with {base} (~2–3 minutes, ~1.5 GB)")
        shutil.rmtree(folder, ignore_errors=True)
        python = str(environment_python())
        pip = [python, "-m", "pip", "-q", "--disable-pip-version-check"]
        steps = [
            [base, "-m", "venv", str(folder)],
            pip + ["install", "--upgrade", "pip"],
            pip + ["install", "-r", str(requirements_file())],
            pip + ["install", "--no-deps", f"spleeter=={SPLEETER_VERSION}"],
            pip + ["uninstall", "-y", "jax", "jaxlib"],
        ]
        for command in steps:
            say(" ".join(Path(part).name if part in (base, python) else part for part in command))
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
                raise MsgppError(f"building Spleeter's environment failed at `{' '.join(command[-3:])}`: {tail[0]}")
        check = subprocess.run([python, "-c", "import spleeter.separator"], capture_output=True, text=True)
        if check.returncode != 0:
            raise MsgppError(
                f"Spleeter's environment was built but `import spleeter.separator` fails: "
                f"{(check.stderr.strip().splitlines() or ['?'])[-1]}"
            )
        _stamp().write_text(_requirements_digest() + "\n")
        say("ready")
    return environment_python()
