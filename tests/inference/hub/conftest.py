"""A fake hub (tests/conftest.py `fake_hub`) holding the golden tiny models as repositories."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import golden_dir

LLAMA_QUANTS = ["Q4_0", "Q4_K_M", "Q6_K", "Q8_0", "F16"]
README = "---\nlicense: mit\n---\n# Tiny llama\n\nA **tiny** model for tests.\n"


def golden_bytes(name: str) -> bytes:
    return (golden_dir() / "models" / f"{name}.gguf").read_bytes()


@pytest.fixture
def tiny_repo(fake_hub) -> str:
    """test/tiny-llama-GGUF: the golden tiny llama in five quantizations, plus non-variants."""
    files = {f"tiny-llama-{q}.gguf": golden_bytes(f"tiny-llama-{q}") for q in LLAMA_QUANTS}
    files.update({"README.md": README.encode(), "mmproj-tiny-F16.gguf": b"GGUF" + bytes(60),
                  "config.json": b"{}"})
    fake_hub.add_repo("test/tiny-llama-GGUF", files, downloads=500, likes=7,
                      last_modified="2025-06-01T10:00:00.000Z")
    return "test/tiny-llama-GGUF"


@pytest.fixture
def models_dir(tmp_path) -> Path:
    return tmp_path / "models"
