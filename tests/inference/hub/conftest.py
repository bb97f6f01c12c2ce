"""Fixtures of the hub tests (`fake_hub` and `tiny_repo` live in tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

# Kept importable from here (the GUI tests import them from this module too).
from tests.fake_hub import LLAMA_QUANTS, README, golden_bytes  # noqa: F401


@pytest.fixture
def models_dir(tmp_path) -> Path:
    return tmp_path / "models"
