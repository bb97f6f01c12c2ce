"""numpy twins of the JIT kernels: the activation quantizers bit for bit, and the matvec dot
products as exact integer sums with float64 accumulation (the kernels' float32 accumulation
must agree to rounding). Byte layouts: see jit/kernels/quantize.py and jit/kernels/matvec.py.
"""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T

F32 = np.float32


def _blocks(x: np.ndarray, bs: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=F32).reshape(-1)
    if x.size % bs:
        raise ValueError(f"{x.size} values are not a whole number of {bs}-blocks")
    return x.reshape(-1, bs)


@np.errstate(over="ignore", invalid="ignore")   # f16 overflow to inf is what llama.cpp stores too
def _q8_32(x: np.ndarray, with_sum: bool) -> np.ndarray:
    xb = _blocks(x, 32)
    amax = np.abs(xb).max(axis=1)
    d = amax / F32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(amax != 0, F32(127) / amax, F32(0)).astype(F32)
    q = np.clip(np.rint(xb * inv[:, None]), -128, 127).astype(np.int8)
    d16 = d.astype(np.float16)
    head, aux = [d16.view(np.uint8).reshape(-1, 2)], [d16.astype(F32)]
    qsum = q.astype(np.int32).sum(axis=1, dtype=np.int32)
    if with_sum:
        s = (d * qsum.astype(F32)).astype(np.float16)
        head.append(s.view(np.uint8).reshape(-1, 2))
        aux.append(s.astype(F32))
    else:
        aux.append(qsum.view(F32))                  # Q8_0: the integer sum, stored as its bits
    blocks = np.concatenate(head + [q.view(np.uint8)], axis=1).reshape(-1)
    return np.concatenate([blocks, np.stack(aux, axis=1).reshape(-1).view(np.uint8)])


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """float32 [n] -> Q8_0 blocks (34 B each) as uint8 [n/32*34]."""
    return _q8_32(x, False)


def quantize_q8_1(x: np.ndarray) -> np.ndarray:
    """float32 [n] -> Q8_1 blocks (36 B: f16 d, f16 s, i8 qs[32])."""
    return _q8_32(x, True)


def quantize_q8_K(x: np.ndarray) -> np.ndarray:
    """float32 [n] -> Q8_K blocks (292 B: f32 d, i8 qs[256], i16 bsums[16])."""
    xb = _blocks(x, 256)
    a = np.abs(xb)
    first = a.argmax(axis=1)                       # first index of the largest |x|
    mx = xb[np.arange(len(xb)), first]
    zero = a.max(axis=1) == 0
    with np.errstate(divide="ignore"):
        iscale = np.where(zero, F32(0), F32(-127) / np.where(zero, F32(1), mx)).astype(F32)
        d = np.where(zero, F32(0), F32(1) / np.where(zero, F32(1), iscale)).astype(F32)
    q = np.minimum(np.rint(iscale[:, None] * xb), 127).astype(np.int32)
    bsums = q.reshape(-1, 16, 16).sum(axis=2).astype(np.int16)
    return np.concatenate(
        [d.view(np.uint8).reshape(-1, 4), q.astype(np.int8).view(np.uint8), bsums.view(np.uint8).reshape(-1, 32)],
        axis=1,
    ).reshape(-1)


def quantize_q8_K_il(x: np.ndarray) -> np.ndarray:
    """Q8_K with each block's qs interleaved (kernels/quantize.py IL_ORDER: the Q4_K batch kernels')."""
    from .kernels.quantize import IL_ORDER
    b = quantize_q8_K(x).reshape(-1, 292).copy()
    b[:, 4:260] = b[:, 4:260][:, IL_ORDER]
    return b.reshape(-1)


@np.errstate(over="ignore")
def quantize_f16(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=F32).astype(np.float16).view(np.uint8)


def quantize_bf16(x: np.ndarray) -> np.ndarray:
    """float32 [n] -> x rounded to BF16 (nearest even), kept as float32 bytes [4n]."""
    u = np.ascontiguousarray(x, dtype=F32).reshape(-1).view(np.uint32)
    u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return u.view(np.uint8)


# ----------------------------------------------------------------------------- unpacking

def _f16(b: np.ndarray) -> np.ndarray:
    """uint8 [..., 2] -> float32 [...]"""
    return np.ascontiguousarray(b).view(np.float16)[..., 0].astype(F32)


def unpack_q8_32(xq: np.ndarray, with_sum: bool):
    """-> d f32 [nb], s f32 [nb] or None, q int32 [nb, 32] (the f32 scale copies are ignored)"""
    bb = 36 if with_sum else 34
    nb = xq.size // (bb + 8)
    b = xq[: nb * bb].reshape(-1, bb)
    d = _f16(b[:, 0:2])
    s = _f16(b[:, 2:4]) if with_sum else None
    q = b[:, bb - 32:].view(np.int8).astype(np.int32)
    return d, s, q


def unpack_q8_K(xq: np.ndarray):
    """-> d f32 [nb], q int32 [nb, 256], bsums int32 [nb, 16]"""
    b = xq.reshape(-1, 292)
    d = np.ascontiguousarray(b[:, 0:4]).view(F32)[:, 0]
    q = b[:, 4:260].view(np.int8).astype(np.int32)
    bs = np.ascontiguousarray(b[:, 260:292]).view(np.int16).astype(np.int32)
    return d, q, bs


@np.errstate(invalid="ignore")
def dequantize_activation(xq: np.ndarray, fmt: str) -> np.ndarray:
    """The float values the quantized activation stands for (float64)."""
    if fmt == "f16":
        return xq.view(np.float16).astype(np.float64)
    if fmt in RAW_F32:
        return xq.view(F32).astype(np.float64)
    if fmt == "q8_K":
        d, q, _ = unpack_q8_K(xq)
    else:
        d, _, q = unpack_q8_32(xq, fmt == "q8_1")
    return (d.astype(np.float64)[:, None] * q).reshape(-1)


def _q4_nibbles_32(qs: np.ndarray) -> np.ndarray:
    """[..., 16] bytes -> [..., 32]: element j < 16 is qs[j] & 15, element 16 + j is qs[j] >> 4."""
    return np.concatenate([qs & 15, qs >> 4], axis=-1).astype(np.int32)


def _fifth_bits_32(qh: np.ndarray) -> np.ndarray:
    """[..., 4] bytes of a little-endian u32 -> [..., 32]: 16 where bit j is set."""
    h = np.ascontiguousarray(qh).view("<u4")[..., 0].astype(np.int64)
    return (((h[..., None] >> np.arange(32)) & 1) * 16).astype(np.int32)


def k_scales_mins(sc12: np.ndarray):
    """Q4_K/Q5_K 12-byte packed 6-bit scales -> (sc [..., 8], m [..., 8]) int32."""
    q = sc12.astype(np.int32)
    sc = np.empty(q.shape[:-1] + (8,), np.int32)
    m = np.empty_like(sc)
    sc[..., :4] = q[..., 0:4] & 63
    m[..., :4] = q[..., 4:8] & 63
    sc[..., 4:] = (q[..., 8:12] & 15) | ((q[..., 0:4] >> 6) << 4)
    m[..., 4:] = (q[..., 8:12] >> 4) | ((q[..., 4:8] >> 6) << 4)
    return sc, m


def q6_K_values(b: np.ndarray) -> np.ndarray:
    """Q6_K blocks [nb, 210] -> unsigned 6-bit values [nb, 256] (subtract 32 for the weight)."""
    ql, qh = b[:, 0:128].astype(np.int32), b[:, 128:192].astype(np.int32)
    out = np.empty((len(b), 256), np.int32)
    for h in range(2):
        L0, L1, H = ql[:, 64 * h:64 * h + 32], ql[:, 64 * h + 32:64 * h + 64], qh[:, 32 * h:32 * h + 32]
        o = out[:, 128 * h:]
        o[:, 0:32] = (L0 & 15) | ((H & 3) << 4)
        o[:, 32:64] = (L1 & 15) | (((H >> 2) & 3) << 4)
        o[:, 64:96] = (L0 >> 4) | (((H >> 4) & 3) << 4)
        o[:, 96:128] = (L1 >> 4) | (((H >> 6) & 3) << 4)
    return out


# ----------------------------------------------------------------------------- dot products

ACTIVATION = {  # weight type -> activation format (llama.cpp's vec_dot_type)
    T.F32: "f32", T.F16: "f16", T.Q8_0: "q8_0", T.Q4_0: "q8_0", T.Q4_1: "q8_1", T.Q5_0: "q8_0",
    T.Q5_1: "q8_1", T.Q4_K: "q8_K", T.Q5_K: "q8_K", T.Q6_K: "q8_K",
    T.BF16: "bf16", T.IQ4_NL: "q8_0", T.IQ4_XS: "q8_K", T.Q2_K: "q8_K", T.Q3_K: "q8_K",
}
# formats the kernels take as the float32 x itself (BF16's kernel rounds x to BF16 as it reads it)
RAW_F32 = ("f32", "bf16")

QUANTIZE = {"f32": lambda x: np.ascontiguousarray(x, F32).view(np.uint8), "f16": quantize_f16, "bf16": quantize_bf16,
            "q8_0": quantize_q8_0, "q8_1": quantize_q8_1, "q8_K": quantize_q8_K,
            "q8_K_il": quantize_q8_K_il}


def block_terms(w: np.ndarray, qtype: T, n_cols: int, xq: np.ndarray) -> np.ndarray:
    """The per-block float64 contributions each kernel sums for every row: [rows, n_blocks].

    Integer parts exact, scale products rounded to float32 as the kernels do; so
    y = terms.sum(1) up to float32 accumulation, |error| <= ~n_blocks * eps * sum |terms|.
    """
    qtype = T(qtype)
    if qtype == T.F32:
        wf = w.view(F32).reshape(-1, n_cols).astype(np.float64)
        return wf * xq.view(F32).astype(np.float64)
    if qtype == T.F16:
        wf = w.view(np.float16).reshape(-1, n_cols).astype(np.float64)
        return wf * xq.view(np.float16).astype(np.float64)
    if qtype in (T.Q8_0, T.Q4_0):
        dx, _, qx = unpack_q8_32(xq, False)
        bb = 34 if qtype == T.Q8_0 else 18
        b = w.reshape(-1, n_cols // 32, bb)
        dw = _f16(b[..., 0:2])
        qw = b[..., 2:].view(np.int8).astype(np.int32) if qtype == T.Q8_0 else _q4_nibbles_32(b[..., 2:]) - 8
        isum = (qw * qx[None]).sum(-1)
        return (dw * dx[None]).astype(np.float64) * isum
    if qtype == T.Q5_0:
        dx, _, qx = unpack_q8_32(xq, False)
        b = w.reshape(-1, n_cols // 32, 22)
        qw = _q4_nibbles_32(b[..., 6:]) + _fifth_bits_32(b[..., 2:6]) - 16
        return (_f16(b[..., 0:2]) * dx[None]).astype(np.float64) * (qw * qx[None]).sum(-1)
    if qtype in (T.Q4_1, T.Q5_1):
        dx, sx, qx = unpack_q8_32(xq, True)
        five = qtype == T.Q5_1
        b = w.reshape(-1, n_cols // 32, 24 if five else 20)
        dw, mw = _f16(b[..., 0:2]), _f16(b[..., 2:4])
        qw = _q4_nibbles_32(b[..., 8:]) + _fifth_bits_32(b[..., 4:8]) if five else _q4_nibbles_32(b[..., 4:])
        isum = (qw * qx[None]).sum(-1)
        return (dw * dx[None]).astype(np.float64) * isum + (mw * sx[None]).astype(np.float64)
    if qtype in (T.Q4_K, T.Q5_K):
        dx, qx, bsx = unpack_q8_K(xq)
        five = qtype == T.Q5_K
        b = w.reshape(-1, n_cols // 256, 176 if five else 144)
        d, dmin = _f16(b[..., 0:2]), _f16(b[..., 2:4])
        sc, m = k_scales_mins(b[..., 4:16])
        qs = b[..., 48 if five else 16:].reshape(b.shape[:2] + (4, 32)).astype(np.int32)
        vals = np.stack([qs & 15, qs >> 4], axis=3).reshape(b.shape[:2] + (8, 32))  # sub-block j = 2c + hi
        if five:   # bit j of qh[l] -> +16 on element l of sub-block j
            qh = b[..., 16:48].astype(np.int32)
            vals = vals + ((qh[..., None, :] >> np.arange(8)[:, None]) & 1) * 16
        isum = (sc * (vals * qx.reshape(1, -1, 8, 32)).sum(-1)).sum(-1)
        msum = (m * (bsx[:, 0::2] + bsx[:, 1::2])[None]).sum(-1)
        return (d * dx[None]).astype(np.float64) * isum - (dmin * dx[None]).astype(np.float64) * msum
    if qtype == T.Q6_K:
        dx, qx, bsx = unpack_q8_K(xq)
        b = w.reshape(-1, 210)
        nb = n_cols // 256
        q = (q6_K_values(b) - 32).reshape(-1, nb, 16, 16)
        sc = b[:, 192:208].view(np.int8).astype(np.int32).reshape(-1, nb, 16)
        d = _f16(b[:, 208:210]).reshape(-1, nb)
        isum = (sc * (q * qx.reshape(1, nb, 16, 16)).sum(-1)).sum(-1)
        return (d * dx[None]).astype(np.float64) * isum
    from .twins_more import block_terms_more   # BF16, IQ4_NL, IQ4_XS

    return block_terms_more(w, qtype, n_cols, xq)


def matvec(w: np.ndarray, qtype: T, n_cols: int, x: np.ndarray) -> np.ndarray:
    """y = W x the way the kernels compute it (activation quantized first), in float64."""
    xq = QUANTIZE[ACTIVATION[T(qtype)]](x)
    return block_terms(w, qtype, n_cols, xq).sum(axis=1)
