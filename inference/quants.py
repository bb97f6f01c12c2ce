"""Dequantization of GGUF weight blocks to float32, in numpy.

PROVISIONAL: delegates to gguf.quants; the foundation issue replaces this with our own
per-type numpy code verified bit-for-bit against gguf.quants.dequantize.
"""
from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import quants as _gq


def dequantize(data: np.ndarray, qtype: GGMLQuantizationType | int, n_elements: int | None = None) -> np.ndarray:
    """data: uint8 [n_blocks * block_bytes] -> float32 [n_blocks * block_elements] (flat)."""
    qtype = GGMLQuantizationType(qtype)
    bs, bb = GGML_QUANT_SIZES[qtype]
    raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1, bb)
    out = _gq.dequantize(raw, qtype).astype(np.float32, copy=False).reshape(-1)
    if n_elements is not None:
        out = out[:n_elements]
    return out
