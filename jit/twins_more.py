"""numpy twins of matvec_more.py's kernels (BF16, IQ4_NL, IQ4_XS): per-block float64 terms with
exact integer sums and float32 scale products, as twins.block_terms. Layouts: matvec_more.py."""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T

from .kernels.matvec_more import KVALUES
from .twins import F32, _f16, unpack_q8_32, unpack_q8_K

_K = np.array(KVALUES, np.int32)


def iq4_values(qs: np.ndarray) -> np.ndarray:
    """[..., 16] nibble bytes -> [..., 32] codebook integers (low nibbles, then high)."""
    return _K[np.concatenate([qs & 15, qs >> 4], axis=-1)]


def iq4_xs_scales(b: np.ndarray) -> np.ndarray:
    """IQ4_XS blocks [..., 136] -> signed sub-block scales ls - 32 [..., 8] (int32)."""
    sh = np.ascontiguousarray(b[..., 2:4]).view("<u2")[..., 0].astype(np.int32)
    sl = b[..., 4:8].astype(np.int32)
    j = np.arange(8)
    low = (sl[..., j // 2] >> (4 * (j % 2))) & 15
    high = (sh[..., None] >> (2 * j)) & 3
    return (low | (high << 4)) - 32


def block_terms_more(w: np.ndarray, qtype: T, n_cols: int, xq: np.ndarray) -> np.ndarray:
    qtype = T(qtype)
    if qtype == T.BF16:
        wf = (w.view(np.uint16).astype(np.uint32) << 16).view(F32).reshape(-1, n_cols).astype(np.float64)
        return wf * xq.view(F32).astype(np.float64)
    if qtype == T.IQ4_NL:
        dx, _, qx = unpack_q8_32(xq, False)
        b = w.reshape(-1, n_cols // 32, 18)
        isum = (iq4_values(b[..., 2:]) * qx[None]).sum(-1)
        return (_f16(b[..., 0:2]) * dx[None]).astype(np.float64) * isum
    if qtype == T.IQ4_XS:
        dx, qx, _ = unpack_q8_K(xq)
        b = w.reshape(-1, n_cols // 256, 136)
        vals = iq4_values(b[..., 8:].reshape(b.shape[:2] + (8, 16)))          # [rows, nb, 8, 32]
        isum = (vals * qx.reshape(1, -1, 8, 32)).sum(-1)                       # [rows, nb, 8]
        # the kernel's float scale per sub-block: f32(f32(d * dx) * (ls - 32))
        dsc = (_f16(b[..., 0:2]) * dx[None]).astype(F32)[..., None] * iq4_xs_scales(b).astype(F32)
        return (dsc.astype(np.float64) * isum).sum(-1)
    if qtype in (T.Q2_K, T.Q3_K):
        return _k16_terms(w, qtype, n_cols, xq)
    raise NotImplementedError(f"no matvec twin for {qtype.name}")


def two_bit_values(qs: np.ndarray) -> np.ndarray:
    """[..., 64] qs -> [..., 256]: element 128h + 32k + l is (qs[32h + l] >> 2k) & 3."""
    q = qs.reshape(qs.shape[:-1] + (2, 1, 32)).astype(np.int32)
    return ((q >> (2 * np.arange(4))[:, None]) & 3).reshape(qs.shape[:-1] + (256,))


def q3_K_scales(sc12: np.ndarray) -> np.ndarray:
    """[..., 12] -> signed scales [..., 16]"""
    s = sc12.astype(np.int32)
    j = np.arange(16)
    lo = (s[..., j % 8] >> (4 * (j // 8))) & 15
    hi = (s[..., 8 + j % 4] >> (2 * (j // 4))) & 3
    return (lo | (hi << 4)) - 32


def _k16_terms(w, qtype, n_cols, xq):
    dx, qx, bsx = unpack_q8_K(xq)
    nb = n_cols // 256
    if qtype == T.Q2_K:
        b = w.reshape(-1, nb, 84)
        sc = b[..., 0:16].astype(np.int32)
        scale, q = sc & 15, two_bit_values(b[..., 16:80])
        d, dmin = _f16(b[..., 80:82]), _f16(b[..., 82:84])
        sub = (dmin * dx[None]).astype(np.float64) * ((sc >> 4) * bsx[None]).sum(-1)
    else:
        b = w.reshape(-1, nb, 110)
        scale = q3_K_scales(b[..., 96:108])
        hm = b[..., 0:32].astype(np.int32)
        bits = ((hm[..., None, :] >> np.arange(8)[:, None]) & 1).reshape(b.shape[:2] + (256,))   # element 32i + l
        q = two_bit_values(b[..., 32:96]) + 4 * bits
        d = _f16(b[..., 108:110])
        sub = (d * dx[None]).astype(np.float64) * (4 * scale * bsx[None]).sum(-1)
    isum = (q.reshape(b.shape[:2] + (16, 16)) * qx.reshape(1, nb, 16, 16)).sum(-1)   # [rows, nb, 16]
    dsc = (d * dx[None]).astype(F32)[..., None] * scale.astype(F32)
    return (dsc.astype(np.float64) * isum).sum(-1) - sub
