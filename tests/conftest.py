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


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    """huggingface_hub's home (token storage) in tmp; no token from the environment."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return home


@pytest.fixture
def fake_hub(hf_home, monkeypatch):
    """A FakeHub (tests/fake_hub.py) on 127.0.0.1 with HF_ENDPOINT pointing at it.

    huggingface_hub reads HF_ENDPOINT once at import (constants.ENDPOINT, and the module-level
    HfApi behind whoami/login), so those are pointed at the fake hub too.
    """
    from huggingface_hub import constants, hf_api

    from tests.fake_hub import FakeHub

    hub = FakeHub()
    url = hub.start()
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(hf_api.api, "endpoint", url)
    yield hub
    hub.stop()


@pytest.fixture
def tiny_repo(fake_hub) -> str:
    """test/tiny-llama-GGUF on the fake hub: the golden tiny llama in five quantizations."""
    from tests.fake_hub import add_tiny_repo

    return add_tiny_repo(fake_hub)
