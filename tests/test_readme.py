"""The README's Python examples run verbatim, with the weights that ship in this repository."""

import re

import pytest

from tests.helpers import REPO

README = REPO / "README.md"


def test_readme_python_examples_run_verbatim(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2, "the README lost its Python examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as error:  # name the block that broke
            pytest.fail(f"README Python block {number} failed: {type(error).__name__}: {error}")
    assert (tmp_path / "bass_enhanced.wav").is_file()
