"""Code the tests share: builders of tiny models and data (`tests.helpers.separators`,
`tests.helpers.training`, `tests.helpers.evaluation`) and the checkout's paths."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout: README.md, configs/, src/, separators/
FIXTURES = REPO / "tests" / "fixtures"  # files the tests read: configs, a toy separator distribution
