"""The reliability suite (issue 15, docs/reliability.md): every case carries
`pytest.mark.reliability(CLASS)`, so `pytest -m reliability` runs the suite and the cases can be
counted by class. tests/conftest.py refuses a reliability mark without one of these classes."""

from __future__ import annotations

import pytest

CLASSES = (
    "bad audio",
    "bad weights",
    "bad numbers and options",
    "bad layouts",
    "filesystem faults",
    "interruptions",
    "concurrency",
)

BAD_AUDIO = pytest.mark.reliability("bad audio")
BAD_WEIGHTS = pytest.mark.reliability("bad weights")
BAD_OPTIONS = pytest.mark.reliability("bad numbers and options")
BAD_LAYOUTS = pytest.mark.reliability("bad layouts")
FILESYSTEM = pytest.mark.reliability("filesystem faults")
INTERRUPTIONS = pytest.mark.reliability("interruptions")
CONCURRENCY = pytest.mark.reliability("concurrency")
