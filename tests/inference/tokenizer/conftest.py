"""Tokenizers of the real vocabularies, built once per test session."""
from __future__ import annotations

import pytest

from tests.conftest import golden_dir


@pytest.fixture(scope="session")
def qwen2_tok():
    from inference.tokenizer import Tokenizer

    return Tokenizer.from_gguf(golden_dir() / "real" / "qwen2-bpe-vocab.gguf")


@pytest.fixture(scope="session")
def smollm2_tok(smollm2_path):
    from inference.tokenizer import Tokenizer

    return Tokenizer.from_gguf(smollm2_path)


@pytest.fixture(scope="session")
def gemma3_tok(gemma3_path):
    from inference.tokenizer import Tokenizer

    return Tokenizer.from_gguf(gemma3_path)


@pytest.fixture(scope="session")
def tiny_tok():
    from inference.tokenizer import Tokenizer

    return Tokenizer.from_gguf(golden_dir() / "models" / "tiny-llama-F16.gguf")
