"""A wheel install finds everything that ships with msgpp: it builds the wheel from a copy of the
checkout (no network, no build isolation), installs it into a temporary folder, and in a fresh
interpreter with that folder first on PYTHONPATH separates a short mixture with shipped separator
weights and enhances a stem with a shipped enhancer.

The checkout keeps the separator weights in the top-level `separators/` folder; the package
reaches them through the link src/msgpp/separators/shipped, and the wheel carries a copy
(pyproject.toml, [tool.setuptools.package-data]). Spleeter's local TensorFlow environment
(separators/spleeter/.venv) must stay out of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

# Build, install, separate and enhance: ~20 s on a busy 2-core machine, so it runs with `make test`.


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "-q"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel, installed with `pip install --target`; returns the target folder."""
    from importlib.metadata import PackageNotFoundError, version

    try:  # built without isolation (offline): this environment's setuptools builds it
        setuptools = version("setuptools")
    except PackageNotFoundError:
        pytest.skip("no setuptools in this environment to build the wheel with")
    if int(setuptools.split(".")[0]) < 77:  # pyproject.toml's [build-system] floor
        pytest.skip(f"setuptools {setuptools} here; the build needs >= 77")
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy, so the build's build/ and egg-info stay out of the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    skip = shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "build")
    shutil.copytree(REPO / "src", source / "src", symlinks=True, ignore=skip)  # keeps the shipped link
    shutil.copytree(REPO / "separators", source / "separators", ignore=skip)
    _pip("wheel", "--no-build-isolation", "-w", str(work / "dist"), ".", cwd=source)
    (wheel,) = (work / "dist").glob("msgpp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if "/.venv/" in n], "the wheel carries spleeter's local environment"
    for expected in (
        "msgpp/separators/shipped/demucs_v2/SHA256SUMS",
        "msgpp/separators/shipped/spleeter/model/.probe",
        "msgpp/evaluation/templates/report.html",
        "msgpp/pretrained/MODEL_CARD.md",
    ):
        assert expected in names
    target = work / "site"
    _pip("install", "--target", str(target), str(wheel), cwd=work)
    return target


def test_wheel_separates_and_enhances_with_the_shipped_weights(installed, tmp_path):
    script = textwrap.dedent("""
        import json, sys
        from pathlib import Path

        import numpy as np

        import msgpp
        import msgpp.separators
        from msgpp.evaluation import templates
        from msgpp.separators.weights import shipped_folder

        rate = 44100
        t = np.arange(2 * rate) / rate
        mixture = np.stack([0.3 * np.sin(2 * np.pi * 55 * t) + 0.05 * np.sin(2 * np.pi * 880 * t),
                            0.3 * np.sin(2 * np.pi * 82.5 * t)]).astype(np.float32)
        separator = msgpp.separators.get("demucs_v2")
        estimates = separator.separate(mixture, rate)
        enhancer = msgpp.Enhancer.from_pretrained("bass", backend="torch")
        enhanced = enhancer(estimates["bass"], rate)
        print(json.dumps({
            "msgpp": msgpp.__file__,
            "weights": str(shipped_folder("demucs_v2")),
            "sources": sorted(estimates),
            "shape": list(enhanced.shape),
            "finite": bool(np.isfinite(enhanced).all()),
            "page": "$style" not in templates.render("listening"),
        }))
    """)
    env = {key: value for key, value in os.environ.items() if key != "MSGPP_SEPARATORS_DIR"}
    env.update(PYTHONPATH=str(installed), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(facts["msgpp"]).resolve().is_relative_to(installed.resolve())  # the installed copy, not the checkout
    assert Path(facts["weights"]).resolve().is_relative_to(installed.resolve())
    assert facts["sources"] == ["bass", "drums", "other", "vocals"]
    assert facts["shape"] == [2, 2 * 44100] and facts["finite"] and facts["page"]


def test_a_checkout_finds_the_top_level_separators_folder(monkeypatch, tmp_path):
    """The one lookup: $MSGPP_SEPARATORS_DIR when set, else msgpp/separators/shipped, which in a
    checkout is the top-level separators/ folder."""
    from msgpp.separators import weights

    monkeypatch.delenv(weights.ENV_SEPARATORS_DIR, raising=False)
    assert weights.separators_dir() == (REPO / "separators").resolve()
    assert (weights.shipped_folder("demucs_v2") / "SHA256SUMS").is_file()
    monkeypatch.setenv(weights.ENV_SEPARATORS_DIR, str(tmp_path))
    assert weights.separators_dir() == tmp_path
