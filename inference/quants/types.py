"""Block geometry of every ggml weight type: (elements per block, bytes per block)."""
from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

# gguf's table, except Q8_1: ggml's block_q8_1 is d f16, s f16, qs[32] = 36 bytes, where the
# gguf package still says 40 (an old float32 layout). Files are sized the way ggml sizes them.
BLOCK_SIZES: dict[T, tuple[int, int]] = {**GGML_QUANT_SIZES, T.Q8_1: (32, 36)}

QK_K = 256  # elements of a K-quant (and IQ) super-block


def f16(blocks: np.ndarray, at: int) -> np.ndarray:
    """The float16 at byte `at` of every block as float32 [n_blocks, 1]."""
    return blocks[:, at:at + 2].view(np.float16).astype(np.float32)


def nibbles(qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) 4-bit halves of every byte."""
    return qs & np.uint8(0x0F), qs >> np.uint8(4)


def bits(x: np.ndarray, n_bits: int, width: int = 8) -> np.ndarray:
    """Split each `width`-bit unsigned value into width // n_bits fields, lowest first: [..., k]."""
    shifts = np.arange(0, width, n_bits, dtype=x.dtype)
    return (x[..., None] >> shifts) & x.dtype.type((1 << n_bits) - 1)
