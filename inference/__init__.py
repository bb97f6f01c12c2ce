"""Lectern's inference engine: GGUF files, tokenizers, chat templates, architectures, sessions.

It imports no Qt. `from inference import load_model`.
"""
from __future__ import annotations

import os

__version__ = "0.1.0"

# OpenBLAS (numpy's BLAS) lets its idle threads spin for a long while after each call; on a machine
# with few cores they then steal the cores our kernel pool's threads run on (a Q5_K prefill matmul
# right after the KDA's numpy work ran at 60 % of its speed). Read when numpy loads; the user's
# setting wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .errors import (  # noqa: E402
    ContextOverflowError, GGUFError, LecternError, TemplateError, TokenizerError, UnsupportedModelError,
)


def load_model(path, kv_type: str = "f16"):
    """Open a GGUF model file and return its architecture's Model (weights stay memory-mapped);
    kv_type: its KV cache type, "f16" (default, llama.cpp's) or "f32" (inference.kv_cache)."""
    from .models import load_model as _load

    return _load(path, kv_type=kv_type)


__all__ = ["__version__", "load_model", "LecternError", "GGUFError", "UnsupportedModelError",
           "TokenizerError", "TemplateError", "ContextOverflowError"]
