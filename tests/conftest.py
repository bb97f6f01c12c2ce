"""Shared fixtures: the golden reference data in ../shared/golden and the real models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = (REPO / ".." / "shared" / "golden").resolve()


def golden_dir() -> Path:
    if not (GOLDEN / "README.md").is_file():
        pytest.fail(
            f"golden reference data not found at {GOLDEN}: these tests need ../shared/golden "
            "next to the repository (it is provided by the workplace, never copied into the repo)"
        )
    return GOLDEN


@pytest.fixture(scope="session")
def golden() -> Path:
    return golden_dir()


def golden_models() -> list[str]:
    """Stems of every tiny golden model (tiny-llama-F16, ...), for parametrisation."""
    d = GOLDEN / "models"
    return sorted(p.stem for p in d.glob("*.gguf")) if d.is_dir() else ["<golden data missing>"]


def load_real(name: str) -> dict:
    return json.loads((golden_dir() / "real" / name).read_text())


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from inference.paths import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def gemma3_path(tmp_path_factory) -> Path:
    from inference.paths import gemma3_270m_path

    return gemma3_270m_path()
