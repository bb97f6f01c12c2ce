"""Plain number types and the small-block formats (32, 64 or 128 elements per block).

Each function maps uint8 blocks [n_blocks, block_bytes] to float32 [n_blocks, block_elements],
with the same float32 operations in the same order as ggml (so results are bit-identical).
"""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T

from .types import f16, nibbles

DEQUANTIZERS: dict[T, callable] = {}


def register(*qtypes: T):
    def deco(fn):
        for q in qtypes:
            DEQUANTIZERS[q] = fn
        return fn
    return deco


# ---- plain numbers: one element per "block" --------------------------------------------------
@register(T.F32)
def f32(b):   # float32 little-endian
    return b.view("<f4").astype(np.float32)


@register(T.F16)
def f16_(b):  # IEEE half
    return b.view("<f2").astype(np.float32)


@register(T.BF16)
def bf16(b):  # the top 16 bits of a float32
    return (b.view("<u2").astype(np.uint32) << np.uint32(16)).view(np.float32)


def _cast(dtype):
    return lambda b: b.view(dtype).astype(np.float32)


# Not in gguf.quants: integer and float64 tensors convert like numpy's astype (round to nearest).
for _q, _dt in ((T.F64, "<f8"), (T.I8, "<i1"), (T.I16, "<i2"), (T.I32, "<i4"), (T.I64, "<i8")):
    register(_q)(_cast(_dt))


# ---- 32-element blocks: element j < 16 is the low nibble of qs[j], j >= 16 the high nibble ----
def _split32(qs: np.ndarray, dtype=np.uint8) -> np.ndarray:
    """qs [n, 16] -> 4-bit values [n, 32] in element order."""
    q = np.empty((qs.shape[0], 2, 16), dtype)
    q[:, 0], q[:, 1] = nibbles(qs)
    return q.reshape(-1, 32)


@register(T.Q4_0)
def q4_0(b):  # 18 B: d f16 | qs[16] 4-bit; x = d * (q - 8)
    q = _split32(b[:, 2:]).view(np.int8)
    q -= np.int8(8)
    return f16(b, 0) * q


@register(T.Q4_1)
def q4_1(b):  # 20 B: d f16 | m f16 | qs[16] 4-bit; x = d * q + m
    y = f16(b, 0) * _split32(b[:, 4:])
    y += f16(b, 2)
    return y


def _high_bits(qh: np.ndarray) -> np.ndarray:
    """qh [n, 4] (a little-endian u32, bit j for element j) -> fifth bits [n, 32] as 0/16."""
    return np.unpackbits(qh, axis=1, bitorder="little") << np.uint8(4)


@register(T.Q5_0)
def q5_0(b):  # 22 B: d f16 | qh u32 (bit j = bit 4 of element j) | qs[16]; x = d * (q - 16)
    q = _split32(b[:, 6:]) | _high_bits(b[:, 2:6])
    return f16(b, 0) * (q.view(np.int8) - np.int8(16)).astype(np.float32)


@register(T.Q5_1)
def q5_1(b):  # 24 B: d f16 | m f16 | qh u32 | qs[16]; x = d * q + m
    q = _split32(b[:, 8:]) | _high_bits(b[:, 4:8])
    y = f16(b, 0) * q
    y += f16(b, 2)
    return y


@register(T.Q8_0)
def q8_0(b):  # 34 B: d f16 | qs int8[32]; x = q * d
    return b[:, 2:].view(np.int8) * f16(b, 0)


_KV_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                     dtype=np.float32)


@register(T.IQ4_NL)
def iq4_nl(b):  # 18 B: d f16 | qs[16] 4-bit indices into a non-linear table; x = d * kvalues[q]
    return f16(b, 0) * _KV_IQ4NL[_split32(b[:, 2:])]


# MXFP4 / NVFP4: e2m1 values, doubled (so the scales carry a factor 1/2)
_KV_E2M1 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.float32)


def _e8m0_half_lut() -> np.ndarray:
    """ggml_e8m0_to_fp32_half: 2^(e - 128) as float32 bits (subnormal for e < 2)."""
    e = np.arange(256, dtype=np.uint32)
    lo = np.uint32(0x00200000) << np.minimum(e, 1)
    return np.where(e < 2, lo, (np.maximum(e, 1) - 1) << 23).astype(np.uint32).view(np.float32)


_E8M0_HALF = _e8m0_half_lut()


@register(T.MXFP4)
def mxfp4(b):  # 17 B: e u8 (shared power of two, e8m0) | qs[16] 4-bit e2m1; x = 2^(e-128) * kv[q]
    return _E8M0_HALF[b[:, 0:1]] * _KV_E2M1[_split32(b[:, 1:])]


def _ue4m3_half_lut() -> np.ndarray:
    """Unsigned e4m3 (bias 7; bit 7 ignored; 0 and 0x7F decode to 0), times 1/2, for NVFP4."""
    x = np.arange(256)
    exp, man = (x >> 3) & 0xF, (x & 7).astype(np.float64)
    v = np.where(exp == 0, man * 2.0 ** -9, (1 + man / 8) * 2.0 ** (exp - 7.0)) * 0.5
    return np.where((x == 0) | (x == 0x7F), 0.0, v).astype(np.float32)  # all exact in float32


_UE4M3_HALF = _ue4m3_half_lut()


@register(T.NVFP4)
def nvfp4(b):  # 36 B / 64 elements: d u8[4] (ue4m3, one per 16) | qs[4][8]: element 16s+j<8 low
    n = b.shape[0]  # nibble of qs[s][j], 16s+8+j high nibble
    qs = b[:, 4:].reshape(n, 4, 8)
    q = np.empty((n, 4, 2, 8), np.uint8)
    q[:, :, 0], q[:, :, 1] = nibbles(qs)
    d = _UE4M3_HALF[b[:, :4]].reshape(n, 4, 1)
    return (d * _KV_E2M1[q.reshape(n, 4, 16)]).reshape(n, 64)


@register(T.Q1_0)
def q1_0(b):  # 18 B / 128 elements: d f16 | qs[16] bit j of byte j//8 -> x = +d if set else -d
    d = f16(b, 0)
    sign = np.unpackbits(b[:, 2:], axis=1, bitorder="little").astype(bool)
    return np.where(sign, d, -d)
