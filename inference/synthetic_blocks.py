"""Random but valid GGUF weight blocks of a chosen type, without a quantizer.

A block's scale fields (float16 d, and dmin/m where the type has one) are set so the dequantized
values have a chosen standard deviation and about zero mean; everything else (quants, packed
sub-block scales) is random bytes, masked where a field would otherwise give huge values.
The unit standard deviation of each type (all scale fields = 1) is measured once by dequantizing
a sample with gguf's own dequantize, so no per-type formula can be wrong.

Also the Q4_K_M mix: which type llama.cpp's quantizer gives each tensor of a Q4_K_M file.
"""
from __future__ import annotations

import functools

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

F16_MIN_NORMAL = 2.0 ** -14

# type -> ([(offset of a float16 scale field, its value as a multiple of d)], [(start, stop, byte mask)])
# The second field of the *_1 and K types is subtracted (K) or added (Q4_1/Q5_1); its ratio to d
# centres the values on 0. Masks keep packed 6-bit / int8 sub-block scales small (<= 15, or 1..8
# for Q6_K, whose scales are signed bytes), so d stays a normal float16 at the sizes used here.
LAYOUT = {
    T.Q4_0: ([(0, 1.0)], []),
    T.Q4_1: ([(0, 1.0), (2, -7.5)], []),
    T.Q5_0: ([(0, 1.0)], []),
    T.Q5_1: ([(0, 1.0), (2, -15.5)], []),
    T.Q8_0: ([(0, 1.0)], []),
    T.Q2_K: ([(80, 1.0), (82, 1.5)], []),
    T.Q3_K: ([(108, 1.0)], []),
    T.Q4_K: ([(0, 1.0), (2, 7.5)], [(4, 12, 0x0F)]),
    T.Q5_K: ([(0, 1.0), (2, 15.5)], [(4, 12, 0x0F)]),
    T.Q6_K: ([(208, 1.0)], [(192, 208, 0x07)]),
}
FLOAT_TYPES = (T.F32, T.F16, T.BF16)
SUPPORTED = FLOAT_TYPES + tuple(LAYOUT)


def _raw(qtype: T, n_blocks: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """n_blocks random blocks, uint8 [n_blocks, block bytes], scale fields = scale * ratio."""
    bb = GGML_QUANT_SIZES[qtype][1]
    b = np.frombuffer(rng.bytes(n_blocks * bb), np.uint8).reshape(n_blocks, bb).copy()
    fields, masks = LAYOUT[qtype]
    for start, stop, m in masks:
        b[:, start:stop] &= np.uint8(m)
    if qtype == T.Q6_K:
        b[:, 192:208] += np.uint8(1)                    # signed scales 1..8: never zero, never negative
    for off, ratio in fields:
        b[:, off:off + 2] = np.array([scale * ratio], np.float16).view(np.uint8)
    return b


@functools.cache
def unit_std(qtype: T) -> float:
    """Standard deviation of the dequantized values when d = 1 (measured on 512 blocks)."""
    rng = np.random.default_rng(12345)
    raw = _raw(qtype, 512, 1.0, rng)
    return float(np.std(dequantize(raw, qtype)))


def random_tensor(qtype: T, n_elements: int, std: float, rng: np.random.Generator,
                  mean: float = 0.0) -> np.ndarray:
    """Bytes of n_elements values of type qtype, about N(mean, std) -> uint8 [n_bytes].

    mean is honoured for the float types only (norm weights, biases are F32)."""
    qtype = T(qtype)
    if qtype in FLOAT_TYPES:
        x = (rng.standard_normal(n_elements, dtype=np.float32) * np.float32(std) + np.float32(mean))
        if qtype == T.F32:
            return x.view(np.uint8)
        if qtype == T.F16:
            return x.astype(np.float16).view(np.uint8)
        return (x.view(np.uint32) >> np.uint32(16)).astype(np.uint16).view(np.uint8)   # BF16 truncation
    if qtype not in LAYOUT:
        raise ValueError(f"no random-block recipe for {qtype.name}")
    bs = GGML_QUANT_SIZES[qtype][0]
    if n_elements % bs:
        raise ValueError(f"{n_elements} values are not whole {qtype.name} blocks of {bs}")
    d = max(std / unit_std(qtype), F16_MIN_NORMAL)
    return _raw(qtype, n_elements // bs, d, rng).reshape(-1)


# --- type choice: one type everywhere, or llama.cpp's Q4_K_M mix -----------------------------

# llama.cpp's fallback when a row is not a whole number of 256-blocks (llama-quant.cpp)
FALLBACK = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}

MIX_DOC = """Q4_K_M as llama.cpp's quantizer mixes it (checked against the golden tiny Q4_K_M files):
  output.weight                                   Q6_K
  attn_k, attn_v (models with >= 8 experts)       Q8_0
  attn_output (models with >= 8 experts)          Q5_K
  ffn_down, ffn_down_exps, ffn_down_shexp         Q6_K on layers where use_more_bits(il, n_layer)
                                                  (il < n/8, il >= 7n/8, or (il - n/8) % 3 == 2), else Q4_K
  every other matrix                              Q4_K
  rows not a multiple of 256                      Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0
  vectors, router (ffn_gate_inp), conv taps, ssm_a, dt bias: F32"""


def use_more_bits(il: int, n_layer: int) -> bool:
    return il < n_layer // 8 or il >= 7 * n_layer // 8 or (il - n_layer // 8) % 3 == 2


def mix_type(ftype: str, role: str, il: int, n_layer: int, n_expert: int) -> T:
    """The type of a 2-D+ weight called `role` (GGUF name without blk.N. and .weight)."""
    if ftype != "Q4_K_M":
        return T[ftype]
    if role == "output":
        return T.Q6_K
    if n_expert >= 8 and role in ("attn_k", "attn_v"):
        return T.Q8_0
    if n_expert >= 8 and role == "attn_output":
        return T.Q5_K
    if role.startswith("ffn_down") and use_more_bits(il, n_layer):
        return T.Q6_K
    return T.Q4_K


def fit_type(qtype: T, n_in: int) -> T:
    """qtype, or its fallback when rows of n_in values are not whole blocks."""
    bs = GGML_QUANT_SIZES[qtype][0]
    if n_in % bs == 0:
        return qtype
    fb = FALLBACK.get(qtype, T.F16)
    return fb if n_in % GGML_QUANT_SIZES[fb][0] == 0 else T.F16


FILE_TYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
             "Q3_K": 12, "Q4_K": 14, "Q4_K_M": 15, "Q5_K": 16, "Q6_K": 18, "BF16": 32}
TYPE_NAMES = tuple(FILE_TYPE)
