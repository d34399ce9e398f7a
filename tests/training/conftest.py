"""The training tests' shared data: a tiny synthetic estimate cache (tests.helpers.training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.training import make_fake_cache


@pytest.fixture(scope="module")
def fake_cache(tmp_path_factory) -> tuple[Path, Path]:
    return make_fake_cache(tmp_path_factory.mktemp("training-data"))
