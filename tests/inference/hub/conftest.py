"""Fixtures of the hub tests (`fake_hub` and `tiny_repo` live in tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def models_dir(tmp_path) -> Path:
    return tmp_path / "models"
