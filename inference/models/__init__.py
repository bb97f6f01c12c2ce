"""Architectures, one module each, and `load_model` which picks one from the GGUF metadata."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import UnsupportedModelError
from ..gguf_file import GGUFFile, open_gguf
from ..kv_cache import DEFAULT_KV_TYPE, check_kv_type
from .base import Model, State

# general.architecture -> module in this package
ARCHITECTURES = {
    "llama": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "mistral": "llama",
    "smollm": "llama",
    "gemma3": "gemma3",
    "kimi-linear": "kimi_linear",
    "step35": "step35",
}


def model_class(arch: str) -> type[Model]:
    mod = ARCHITECTURES.get(arch)
    if mod is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedModelError(
            f"architecture {arch!r} is not supported (supported: {known}); "
            "pick a GGUF of one of these families"
        )
    return importlib.import_module(f"{__name__}.{mod}").Model


def load_model(path: str | Path | GGUFFile, kv_type: str = DEFAULT_KV_TYPE) -> Model:
    """The model of a GGUF file; kv_type: its states' KV cache type ("f16" | "f32")."""
    kv_type = check_kv_type(kv_type)           # a bad setting fails before the file is read
    g = path if isinstance(path, GGUFFile) else open_gguf(path)
    if not g.architecture:
        raise UnsupportedModelError(f"{g.path}: no general.architecture key; this is not a model file")
    model = model_class(g.architecture)(g)
    model.kv_type = kv_type
    return model


__all__ = ["ARCHITECTURES", "Model", "State", "load_model", "model_class"]
