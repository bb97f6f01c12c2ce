"""The lattice ("IQ") formats: 256-element super-blocks whose values come from codebook grids.

The grids and the sign table are llama.cpp's (iq2xxs_grid, ..., ksigns_iq2xs); they are taken as
data from gguf.quants rather than copied here. Same float32 operations in the same order as ggml.
"""
from __future__ import annotations

from functools import cache

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants as _gq

from .simple import register
from .types import QK_K, bits, f16


@cache
def _grid(name: str) -> np.ndarray:
    """Codebook [n_entries, 8 or 4] float32 of the gguf.quants class `name`."""
    cls = getattr(_gq, name)
    cls.init_grid()
    return np.ascontiguousarray(cls.grid.reshape(cls.grid_shape), dtype=np.float32)


@cache
def _ksigns() -> np.ndarray:
    """ksigns_iq2xs as ±1: [128, 8] float32; entry i holds 7 sign bits plus their parity."""
    k = np.frombuffer(_gq.IQ2_XXS.ksigns, dtype=np.uint8)
    return np.where(bits(k, 1) == 0, np.float32(1), np.float32(-1))


def _sign_bits(s: np.ndarray) -> np.ndarray:
    """Explicit sign bytes [n, m] -> ±1 float32 [n, m, 8] (bit i of byte k flips element 8k+i)."""
    return np.where(bits(s, 1) == 0, np.float32(1), np.float32(-1))


def _scale4(d, s4, half):
    """d * (0.5 + s) * half for 4-bit sub-block scales s (IQ2/IQ3 families)."""
    return d * (np.float32(0.5) + s4.astype(np.float32)) * np.float32(half)


@register(T.IQ2_XXS)
def iq2_xxs(b):  # 66 B: d f16 | 8 x (grid u8[4] | u32: 4 x 7-bit sign index, 4-bit scale)
    n = b.shape[0]  # x = d*(0.5+s)/4 * grid[g] * sign; 8 sub-blocks of 4 x 8 values
    qs = b[:, 2:].reshape(n, 8, 2, 4)
    aux = qs[:, :, 1].copy().view("<u4")[..., 0]                        # [n, 8]
    db = _scale4(f16(b, 0), aux >> np.uint32(28), 0.25)                 # [n, 8]
    signs = _ksigns()[(aux[..., None] >> np.array([0, 7, 14, 21], np.uint32)) & np.uint32(127)]
    grid = _grid("IQ2_XXS")[qs[:, :, 0]]                                # [n, 8, 4, 8]
    return (db[:, :, None, None] * grid * signs).reshape(n, QK_K)


@register(T.IQ2_XS)
def iq2_xs(b):  # 74 B: d f16 | qs u16[32] (9-bit grid index | 7-bit sign index) | scales[8] 2 x 4-bit
    n = b.shape[0]  # one scale per 16 values
    qs = b[:, 2:66].view("<u2")                                         # [n, 32]
    db = _scale4(f16(b, 0), bits(b[:, 66:74], 4).reshape(n, 16), 0.25)
    signs = _ksigns()[qs >> np.uint16(9)].reshape(n, 16, 2, 8)
    grid = _grid("IQ2_XS")[qs & np.uint16(511)].reshape(n, 16, 2, 8)
    return (db[:, :, None, None] * grid * signs).reshape(n, QK_K)


@register(T.IQ2_S)
def iq2_s(b):  # 82 B: d f16 | qs[32] grid index low 8 bits | signs[32] | qh[8] 4 x 2 high bits | scales[8]
    n = b.shape[0]
    db = _scale4(f16(b, 0), bits(b[:, 74:82], 4).reshape(n, 16), 0.25)
    signs = _sign_bits(b[:, 34:66]).reshape(n, 16, 2, 8)
    idx = b[:, 2:34].astype(np.uint16) | (bits(b[:, 66:74], 2).reshape(n, 32).astype(np.uint16) << 8)
    grid = _grid("IQ2_S")[idx].reshape(n, 16, 2, 8)
    return (db[:, :, None, None] * grid * signs).reshape(n, QK_K)


@register(T.IQ3_XXS)
def iq3_xxs(b):  # 98 B: d f16 | qs[64] grid indices (4 values each) | u32[8]: 4 x 7-bit sign index, 4-bit scale
    n = b.shape[0]
    aux = b[:, 66:98].view("<u4")                                       # [n, 8]
    db = _scale4(f16(b, 0), aux >> np.uint32(28), 0.5)
    signs = _ksigns()[(aux[..., None] >> np.array([0, 7, 14, 21], np.uint32)) & np.uint32(127)]
    grid = _grid("IQ3_XXS")[b[:, 2:66]].reshape(n, 8, 4, 8)
    return (db[:, :, None, None] * grid * signs).reshape(n, QK_K)


@register(T.IQ3_S)
def iq3_s(b):  # 110 B: d f16 | qs[64] | qh[8] (9th index bit) | signs[32] | scales[4] 2 x 4-bit
    n = b.shape[0]  # x = d*(1+2s) * grid[idx] * sign; one scale per 32 values
    db = f16(b, 0) * (np.uint8(1) + np.uint8(2) * bits(b[:, 106:110], 4).reshape(n, 8))
    signs = _sign_bits(b[:, 74:106]).reshape(n, 8, 4, 8)
    idx = b[:, 2:66].astype(np.uint16) | (bits(b[:, 66:74], 1).reshape(n, 64).astype(np.uint16) << 8)
    grid = _grid("IQ3_S")[idx].reshape(n, 8, 4, 8)
    return (db[:, :, None, None] * grid * signs).reshape(n, QK_K)


_IQ1_DELTA = np.float32(0.125)


@register(T.IQ1_S)
def iq1_s(b):  # 50 B: d f16 | qs[32] grid index low 8 bits | qh u16[8]: 4 x 3 high bits, 3-bit scale, delta sign
    n = b.shape[0]  # x = d*(2s+1) * (grid[idx] ± 1/8); grid values -1, 0, 1
    qh = b[:, 34:50].view("<u2")                                        # [n, 8]
    dl = f16(b, 0) * (np.uint16(2) * ((qh >> np.uint16(12)) & np.uint16(7)) + np.uint16(1))
    delta = np.where(qh & np.uint16(0x8000), -_IQ1_DELTA, _IQ1_DELTA)
    idx = b[:, 2:34].astype(np.uint16) | (bits(qh, 3, 12).reshape(n, 32) << np.uint16(8))
    grid = _grid("IQ1_S")[idx].reshape(n, 8, 4, 8)
    return (dl[:, :, None, None] * (grid + delta[:, :, None, None])).reshape(n, QK_K)


@register(T.IQ1_M)
def iq1_m(b):  # 56 B: qs[32] | qh[16] (2 x: 3 high index bits, delta sign) | u16[4]: 4 x 3-bit scale + d's nibble
    n = b.shape[0]  # d f16 = top nibbles of the 4 u16 (first = lowest); one scale per 16 values
    sc = b[:, 48:56].view("<u2")                                        # [n, 4]
    top = (sc & np.uint16(0xF000)) >> np.array([12, 8, 4, 0], np.uint16)
    d = np.bitwise_or.reduce(top, axis=1).view(np.float16).astype(np.float32)[:, None]
    dl = d * (np.uint16(2) * bits(sc, 3, 12).reshape(n, 16) + np.uint16(1))   # [n, 16]
    qh = bits(b[:, 32:48], 4).reshape(n, 32)                            # nibble per 8 values
    idx = b[:, :32].astype(np.uint16) | ((qh & np.uint8(7)).astype(np.uint16) << 8)
    delta = np.where(qh & np.uint8(8), -_IQ1_DELTA, _IQ1_DELTA).reshape(n, 8, 2, 2, 1)
    grid = _grid("IQ1_M")[idx].reshape(n, 8, 2, 2, 8)
    return (dl.reshape(n, 8, 2, 1, 1) * (grid + delta)).reshape(n, QK_K)
