"""Dequantization of GGUF weight blocks to float32, in numpy: our own code for every ggml type.

Verified bit-for-bit against gguf.quants.dequantize (tests/inference/test_quants.py). Block layouts
are documented next to each type's function: simple.py (plain numbers and 32/64/128-element
blocks), kquants.py (256-element super-blocks), iquants.py (codebook "IQ" formats).
"""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType

from ..errors import UnsupportedModelError
from . import iquants, kquants  # noqa: F401  (register their types)
from .simple import DEQUANTIZERS
from .types import BLOCK_SIZES

_CHUNK_ELEMENTS = 1 << 16  # elements decoded per step of a large tensor


def quantized_types() -> list[GGMLQuantizationType]:
    """Every ggml type `dequantize` accepts, in enum order."""
    return sorted(DEQUANTIZERS)


def dequantize(data: np.ndarray, qtype: GGMLQuantizationType | int, n_elements: int | None = None) -> np.ndarray:
    """data: uint8 [n_blocks * block_bytes] -> float32 [n_elements] (flat; default every element).

    Only the blocks covering the first n_elements are decoded.
    """
    try:
        qtype = GGMLQuantizationType(qtype)
    except ValueError:
        raise UnsupportedModelError(f"unknown ggml weight type {qtype}") from None
    fn = DEQUANTIZERS.get(qtype)
    if fn is None:
        raise UnsupportedModelError(
            f"weights of type {qtype.name} cannot be dequantized (supported: "
            f"{', '.join(t.name for t in quantized_types())}); use a GGUF file with other weight types")
    bs, bb = BLOCK_SIZES[qtype]
    raw = np.asarray(data).reshape(-1).view(np.uint8)
    if n_elements is not None:
        n_blocks = -(-int(n_elements) // bs)
        if n_blocks * bb > raw.size:
            raise ValueError(f"{qtype.name}: {n_elements} elements need {n_blocks * bb} bytes, got {raw.size}")
        raw = raw[:n_blocks * bb]
    elif raw.size % bb:
        raise ValueError(f"{qtype.name}: {raw.size} bytes is not a whole number of {bb}-byte blocks")
    raw = np.ascontiguousarray(raw)
    blocks = raw if bs == 1 else raw.reshape(-1, bb)  # plain numbers: one flat cast
    n_blocks = blocks.shape[0]
    step = max(1, _CHUNK_ELEMENTS // bs) if bs > 1 else n_blocks  # plain casts: one pass
    with np.errstate(all="ignore"):  # junk scales give inf/nan, as they do in ggml
        if n_blocks <= step:
            out = fn(blocks).reshape(-1)
        else:  # a chunk at a time, so that the temporaries stay in cache
            out = np.empty(n_blocks * bs, np.float32)
            for i in range(0, n_blocks, step):
                j = min(n_blocks, i + step)
                out[i * bs:j * bs] = fn(blocks[i:j]).reshape(-1)
    return out if n_elements is None or n_elements == out.size else out[:n_elements]


__all__ = ["BLOCK_SIZES", "dequantize", "quantized_types"]
