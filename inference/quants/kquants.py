"""K-quants and the other 256-element super-block formats (Q2_K..Q6_K, Q8_K, IQ4_XS, TQ1_0, TQ2_0).

Each function maps uint8 blocks [n_blocks, block_bytes] to float32 [n_blocks, 256], with the
same float32 operations in the same order as ggml (so results are bit-identical).
"""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T

from .simple import _KV_IQ4NL, register
from .types import QK_K, bits, f16, nibbles


def _scale_min_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """12 packed bytes -> (scales, mins) uint8 [n, 8], 6 bits each (ggml get_scale_min_k4):
    j < 4: sc = s[j] & 63, m = s[j+4] & 63;
    j >= 4: sc = s[j+4] & 15 | (s[j-4] >> 6) << 4,  m = s[j+4] >> 4 | (s[j] >> 6) << 4."""
    a, b, c = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([a & 63, (c & 15) | ((a >> 6) << 4)], axis=1)
    mn = np.concatenate([b & 63, (c >> 4) | ((b >> 6) << 4)], axis=1)
    return sc, mn


def _nibbles_by_32(qs: np.ndarray) -> np.ndarray:
    """qs [n, 128] -> 4-bit values [n, 8, 32]: chunk c of 32 bytes gives sub-blocks 2c (low
    nibbles) and 2c+1 (high nibbles)."""
    n = qs.shape[0]
    q = np.empty((n, 4, 2, 32), np.uint8)
    q[:, :, 0], q[:, :, 1] = nibbles(qs.reshape(n, 4, 32))
    return q.reshape(n, 8, 32)


@register(T.Q4_K)
def q4_k(b):  # 144 B: d f16 | dmin f16 | scales[12] (8 x 6-bit scale, 8 x 6-bit min) | qs[128]
    n = b.shape[0]  # x = (d * sc[j]) * q - (dmin * m[j]) over 8 sub-blocks j of 32
    sc, mn = _scale_min_k4(b[:, 4:16])
    y = (f16(b, 0) * sc)[:, :, None] * _nibbles_by_32(b[:, 16:])
    y -= (f16(b, 2) * mn)[:, :, None]
    return y.reshape(n, QK_K)


@register(T.Q5_K)
def q5_k(b):  # 176 B: d f16 | dmin f16 | scales[12] | qh[32] (bit j = bit 4 of sub-block j) | qs[128]
    n = b.shape[0]
    sc, mn = _scale_min_k4(b[:, 4:16])
    q = _nibbles_by_32(b[:, 48:])
    q |= (np.unpackbits(b[:, 16:48, None], axis=2, bitorder="little").transpose(0, 2, 1) << np.uint8(4))
    y = (f16(b, 0) * sc)[:, :, None] * q
    y -= (f16(b, 2) * mn)[:, :, None]
    return y.reshape(n, QK_K)


@register(T.Q6_K)
def q6_k(b):  # 210 B: ql[128] low 4 bits | qh[64] high 2 bits | scales int8[16] | d f16
    n = b.shape[0]  # half h of 128 values, group g of 32: low 4 bits from ql[h] (g: bytes 0-31 /
    ql = b[:, :128].reshape(n, 2, 2, 32)  # 32-63, low then high nibbles), high 2 bits from bits
    qh = b[:, 128:192].reshape(n, 2, 32)  # 2g..2g+1 of qh[h][0:32]; x = (d*sc[k]) * (q - 32)
    q = np.empty((n, 2, 4, 32), np.uint8)
    np.bitwise_and(ql, np.uint8(15), out=q[:, :, 0:2])
    np.right_shift(ql, np.uint8(4), out=q[:, :, 2:4])
    for g in range(4):
        q[:, :, g] |= ((qh >> np.uint8(2 * g)) & np.uint8(3)) << np.uint8(4)
    q = q.view(np.int8)
    q -= np.int8(32)
    d = f16(b, 208) * b[:, 192:208].view(np.int8)
    return (d[:, :, None] * q.reshape(n, 16, 16)).reshape(n, QK_K)


@register(T.Q2_K)
def q2_k(b):  # 84 B: scales[16] (low nibble scale, high nibble min) | qs[64] 2-bit | d f16 | dmin f16
    n = b.shape[0]  # halves h of 128 elements: shift s of qs[h][0:32] -> group of 32
    sc, mn = nibbles(b[:, :16])
    q = bits(b[:, 16:80].reshape(n, 2, 32), 2).transpose(0, 1, 3, 2).reshape(n, 16, 16)
    y = (f16(b, 80) * sc)[:, :, None] * q
    y -= (f16(b, 82) * mn)[:, :, None]
    return y.reshape(n, QK_K)


@register(T.Q3_K)
def q3_k(b):  # 110 B: hmask[32] | qs[64] 2-bit | scales[12] (16 x 6-bit, offset 32) | d f16
    n = b.shape[0]  # x = (d * (sc - 32)) * (q2 - (0 if hmask bit set else 4))
    s = b[:, 96:108]
    lo = np.concatenate(nibbles(s[:, :8]), axis=1)                   # low 4 bits of scale 0..15
    hi = bits(s[:, 8:12], 2).transpose(0, 2, 1).reshape(n, 16)       # high 2 bits
    sc = ((lo | (hi << np.uint8(4))).view(np.int8) - np.int8(32)).astype(np.float32)
    q2 = bits(b[:, 32:96].reshape(n, 2, 32), 2).transpose(0, 1, 3, 2).reshape(n, 16, 16)
    hm = bits(b[:, :32], 1).transpose(0, 2, 1).reshape(n, 16, 16)    # bit j of hmask[l] -> group j
    q = q2.view(np.int8) - ((hm ^ np.uint8(1)) << np.uint8(2)).view(np.int8)
    return ((f16(b, 108) * sc)[:, :, None] * q.astype(np.float32)).reshape(n, QK_K)


@register(T.Q8_K)
def q8_k(b):  # 292 B: d f32 | qs int8[256] | bsums int16[16] (sums for dot products, unused here)
    return b[:, 0:4].view("<f4") * b[:, 4:260].view(np.int8)


@register(T.IQ4_XS)
def iq4_xs(b):  # 136 B: d f16 | scales_h u16 (2 bits per 32) | scales_l[4] (4 bits per 32) | qs[128]
    n = b.shape[0]  # x = (d * (scale - 32)) * kvalues[q], sub-block j of 32 from qs[16j:16j+16]
    lo = bits(b[:, 4:8], 4).reshape(n, 8)
    hi = bits(b[:, 2:4].view("<u2"), 2, 16).reshape(n, 8).astype(np.uint8)
    sc = ((lo | (hi << np.uint8(4))).view(np.int8) - np.int8(32)).astype(np.float32)
    qs = b[:, 8:].reshape(n, 8, 16)
    q = np.empty((n, 8, 2, 16), np.uint8)
    q[:, :, 0], q[:, :, 1] = nibbles(qs)
    return ((f16(b, 0) * sc)[:, :, None] * _KV_IQ4NL[q.reshape(n, 8, 32)]).reshape(n, QK_K)


_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)


def _trits(x: np.ndarray, k: int) -> np.ndarray:
    """Base-3 digits stored as fixed-point fractions: digit i of byte x is (x * 3^i mod 256) * 3 >> 8."""
    t = x[..., None, :] * _POW3[:k, None]                 # uint8 wrap-around is the "mod 256"
    return ((t.astype(np.uint16) * 3) >> 8).astype(np.int8) - np.int8(1)


@register(T.TQ1_0)
def tq1_0(b):  # 54 B: qs[48] (5 trits per byte) | qh[4] (4 trits per byte) | d f16; x = d * t
    n = b.shape[0]  # order: qs[0:32] digit-major (160), qs[32:48] digit-major (80), qh (16)
    t = np.concatenate([_trits(b[:, 0:32], 5).reshape(n, 160), _trits(b[:, 32:48], 5).reshape(n, 80),
                        _trits(b[:, 48:52], 4).reshape(n, 16)], axis=1)
    return f16(b, 52) * t.astype(np.float32)


@register(T.TQ2_0)
def tq2_0(b):  # 66 B: qs[64] (2-bit q, x = d * (q - 1)) | d f16; element 128h+32s+l <- qs[32h+l] >> 2s
    n = b.shape[0]
    q = bits(b[:, :64].reshape(n, 2, 32), 2).transpose(0, 1, 3, 2).reshape(n, QK_K)
    return f16(b, 64) * (q.view(np.int8) - np.int8(1)).astype(np.float32)
