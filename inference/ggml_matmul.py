"""The quantized matrix products of llama.cpp's x86 CPU backend (AVX512-VNNI build, weight
repacking on), bit for bit: which kernel runs for a weight type and batch size, and its float32
order. See ggml_cpu.py for why bits matter (near ties after 8-bit activation rounding).

Kernels (vendor/llama.cpp of llama_cpp_python 0.3.36, ggml/src/ggml-cpu/):
- Q5_0, Q8_0 weights . Q8_0 activations: llamafile tinyBLAS_Q0_AVX for batches >= 2 and
  ggml_vec_dot_q{5,8}_0_q8_0 for one row compute the same thing: per 32-block 8 int32 lanes of 4
  products each, acc[l] = fma(f16(d_w) * f16(d_a), lane[l], acc[l]); then hsum_float_8(acc).
- Q4_K weights with rows % 8 == 0: repacked to block_q4_Kx8 (repack.cpp); activations to Q8_K, in
  groups of 4 rows by ggml_quantize_mat_q8_K_4x8 and the rest by quantize_row_q8_K_ref; gemv
  (the rest) computes, per 256-superblock b, the exact integers isum = sum_j sc_j * dot_j and
  imin = sum_j m_j * bsum_j over its 8 sub-blocks j of 32, then acc = fma(f32(isum), d_w * d_a, acc),
  accm = fma(f32(imin), dmin_w * d_a, accm); y = acc - accm. gemm (4 rows at a time, AVX512 path)
  does the same per pair of sub-blocks (4 fmas per superblock).
- Q6_K weights: batches >= 8 go through the tiled K-quant matmul (tiled/tiled-kernel.cpp, VNNI
  microkernel): per superblock s1 = sum_s sc_s * (dot16_s - 32 * bsum16_s) (exact),
  buf = fma(f32(s1) * d_w, d_a, buf) (GCC contracts the add of the product); smaller batches go
  through ggml_vec_dot_q6_K_q8_K: 8 int32 lanes per superblock, acc[l] = fma(d_a * d_w, lane, acc[l]),
  hsum_float_8.
Each was checked bit for bit against that build's libggml (ggml_mul_mat, repack buffer for Q4_K) on
Gemma 3 270M's tensors with batches of 1 to 33 rows. Not emulated (ops.linear's float64 sums):
Q4_0 / IQ4_NL (repacked 8x8 there), Q4_K with rows % 8 != 0 (tiled or vec_dot), other K-quants.
"""
from __future__ import annotations

import numpy as np

from .ggml_cpu import F32, F64, f16, fma
from .quants.kquants import _nibbles_by_32, _scale_min_k4
from .quants.simple import _high_bits, _split32

EXACT = True             # False: ops.linear's generic float64 sums instead (to measure what this buys)
KINDS = ("Q5_0", "Q8_0", "Q4_K", "Q6_K")
_LANE_BUDGET = 1 << 22   # float32 elements of the per-block lane arrays held at once


def hsum8(acc: np.ndarray) -> np.ndarray:
    """hsum_float_8 over the first axis (8 lanes): (h0 + h2) + (h1 + h3), h = acc[4:8] + acc[0:4]."""
    h = acc[4:8] + acc[0:4]
    return (h[0] + h[2]) + (h[1] + h[3])


def _slabs(n_out: int, per_row: int):
    step = max(8, _LANE_BUDGET // max(1, per_row) // 8 * 8)
    for r0 in range(0, n_out, step):
        yield r0, min(n_out, r0 + step)


# --- activations ----------------------------------------------------------------------------------
def quantize_q8_0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """quantize_row_q8_0 (x86): per 32-block d = amax/127, q = round(x * (127/amax)) (product
    rounded first). x [T, n] -> q [T, n/32, 32] (integers as float32), d [T, n/32] stored F16."""
    T = x.shape[0]
    b = np.asarray(x, F32).reshape(T, -1, 32)
    amax = np.max(np.abs(b), axis=2)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        inv = np.where(amax > 0, F32(127.0) / amax, F32(0.0)).astype(F32)
        q = np.clip(np.nan_to_num(np.rint(b * inv[..., None])), -127, 127).astype(F32)
    return q, f16(amax / F32(127.0))


def quantize_q8_K(x: np.ndarray, packed4: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Q8_K rounding of x [T, n] -> q [T, n/256, 256] (integers as float32), d [T, n/256] float32.

    packed4=False: quantize_row_q8_K_ref: max = first element of largest magnitude, iscale = -127/max,
    q = min(127, nearest_int(iscale * x)) (the product rounded to float32 first: ggml-base is not
    contracted, checked against llama.cpp on a row where it matters); d = 1/iscale.
    packed4=True: ggml_quantize_mat_q8_K_4x8 (x86): iscale = -127/amax if some element equals +amax,
    else 127/amax (the same but for +-amax ties); q = round(f32(iscale * x)), saturated."""
    T = x.shape[0]
    b = np.asarray(x, F32).reshape(T, x.shape[1] // 256, 256)
    if packed4:
        amax = np.max(np.abs(b), axis=2)
        mx = np.where((b == amax[..., None]).any(axis=2), amax, -amax)
    else:
        idx = np.argmax(np.abs(b), axis=2)
        mx = np.take_along_axis(b, idx[..., None], axis=2)[..., 0]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        iscale = np.where(mx != 0, F32(-127.0) / mx, F32(0.0)).astype(F32)
        d = np.where(mx != 0, F32(1.0) / iscale, F32(0.0)).astype(F32)
        q = np.rint(b * iscale[..., None])
    return np.clip(np.nan_to_num(q), -128, 127).astype(F32), d


# --- Q5_0 / Q8_0 --------------------------------------------------------------------------------
def q0_codes(blocks: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Q5_0 [O, nb, 22] / Q8_0 [O, nb, 34] blocks -> codes [O, nb, 32] float32 (element order), d [O, nb]."""
    O, nb, bb = blocks.shape
    flat = blocks.reshape(O * nb, bb)
    d = flat[:, 0:2].copy().view(np.float16).astype(F32).reshape(O, nb)
    if kind == "Q8_0":
        q = flat[:, 2:].view(np.int8)
    else:
        q = (_split32(flat[:, 6:]) | _high_bits(flat[:, 2:6])).view(np.int8) - np.int8(16)
    return q.astype(F32).reshape(O, nb, 32), d


def dot_q0(wq: np.ndarray, wd: np.ndarray, q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Weight codes wq [O, nb, 32] with d wd [O, nb] . Q8_0 activations q [T, nb, 32], d [T, nb]
    (F16 values) -> [T, O]: 8 lanes of 4 products per block, fma-accumulated over blocks, hsum_float_8."""
    T, nb, _ = q.shape
    a = q.reshape(T, nb, 8, 4).transpose(1, 2, 0, 3)                       # [nb, 8, T, 4]
    out = np.empty((T, wq.shape[0]), F32)
    for r0, r1 in _slabs(wq.shape[0], T * nb * 8):
        w = wq[r0:r1].reshape(r1 - r0, nb, 8, 4).transpose(1, 2, 3, 0)     # [nb, 8, 4, o]
        lanes = np.matmul(a, w)                                            # [nb, 8, T, o] exact
        acc = np.zeros((8, T, r1 - r0), F32)
        for b in range(nb):
            acc = fma(d[:, b, None] * wd[None, r0:r1, b], lanes[b], acc)   # d_w * d_a: exact
        out[:, r0:r1] = hsum8(acc)
    return out


# --- Q4_K (repacked) ----------------------------------------------------------------------------
def q4_K_parts(blocks: np.ndarray):
    """[O, nb, 144] -> d, dmin [O, nb] float32; sc, mn [O, nb, 8] float64; q [O, nb, 8, 32] float32."""
    O, nb, _ = blocks.shape
    flat = blocks.reshape(O * nb, 144)
    d = flat[:, 0:2].copy().view(np.float16).astype(F32).reshape(O, nb)
    dmin = flat[:, 2:4].copy().view(np.float16).astype(F32).reshape(O, nb)
    sc, mn = _scale_min_k4(flat[:, 4:16])
    q = _nibbles_by_32(flat[:, 16:]).astype(F32).reshape(O, nb, 8, 32)
    return d, dmin, sc.astype(F64).reshape(O, nb, 8), mn.astype(F64).reshape(O, nb, 8), q


def q8_K_rows_for_repack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The repack path's activation rounding: rows in groups of 4 packed, the remainder by the ref."""
    T = x.shape[0]
    n4 = T - T % 4
    qa, da = quantize_q8_K(x[:n4], packed4=True)
    qb, db = quantize_q8_K(x[n4:])
    return np.concatenate([qa, qb]), np.concatenate([da, db])


def dot_q4_K_repack(blocks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Q4_K rows [O, nb, 144] (O % 8 == 0) . x [T, n] as ggml_gemm/gemv_q4_K_8x8_q8_K -> [T, O]."""
    T = x.shape[0]
    O, nb, _ = blocks.shape
    q, da = q8_K_rows_for_repack(x)                                        # [T, nb, 256], [T, nb]
    a = q.reshape(T, nb, 8, 32).transpose(1, 2, 0, 3)                      # [nb, 8, T, 32]
    bsum = q.reshape(T, nb, 8, 32).sum(axis=3).astype(F64)                 # [T, nb, 8]
    n4 = T - T % 4
    out = np.empty((T, O), F32)
    for r0, r1 in _slabs(O, T * nb * 8):
        d, dmin, sc, mn, wq = q4_K_parts(blocks[r0:r1])
        dots = np.matmul(a, wq.transpose(1, 2, 3, 0)).astype(F64)          # [nb, 8, T, o] exact
        acc = np.zeros((T, r1 - r0), F32)
        accm = np.zeros((T, r1 - r0), F32)
        for b in range(nb):
            dd = d[None, :, b] * da[:, b, None]                            # [T, o] float32
            ddm = dmin[None, :, b] * da[:, b, None]
            # gemm (rows < n4): one fma per pair of sub-blocks; gemv (the rest): one per superblock
            for js in ([0, 1], [2, 3], [4, 5], [6, 7]):
                isum = np.einsum("jto,oj->to", dots[b, js, :n4], sc[:, b, js]).astype(F32)
                imin = (bsum[:n4, b, js] @ mn[:, b, js].T).astype(F32)
                acc[:n4] = fma(isum, dd[:n4], acc[:n4])
                accm[:n4] = fma(imin, ddm[:n4], accm[:n4])
            isum = np.einsum("jto,oj->to", dots[b, :, n4:], sc[:, b]).astype(F32)
            imin = (bsum[n4:, b] @ mn[:, b].T).astype(F32)
            acc[n4:] = fma(isum, dd[n4:], acc[n4:])
            accm[n4:] = fma(imin, ddm[n4:], accm[n4:])
        out[:, r0:r1] = acc - accm
    return out


# --- Q6_K ---------------------------------------------------------------------------------------
def q6_K_parts(blocks: np.ndarray):
    """[O, nb, 210] -> d [O, nb] float32, sc [O, nb, 16] float64, q [O, nb, 256] codes 0..63 float32."""
    O, nb, _ = blocks.shape
    flat = blocks.reshape(O * nb, 210)
    ql = flat[:, :128].reshape(-1, 2, 2, 32)
    qh = flat[:, 128:192].reshape(-1, 2, 32)
    q = np.empty((O * nb, 2, 4, 32), np.uint8)
    np.bitwise_and(ql, np.uint8(15), out=q[:, :, 0:2])
    np.right_shift(ql, np.uint8(4), out=q[:, :, 2:4])
    for g in range(4):
        q[:, :, g] |= ((qh >> np.uint8(2 * g)) & np.uint8(3)) << np.uint8(4)
    d = flat[:, 208:210].copy().view(np.float16).astype(F32).reshape(O, nb)
    sc = flat[:, 192:208].view(np.int8).astype(F64).reshape(O, nb, 16)
    return d, sc, q.astype(F32).reshape(O, nb, 256)


def dot_q6_K(blocks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Q6_K rows [O, nb, 210] . x [T, n] -> [T, O]: the tiled kernel for T >= 8, else vec_dot."""
    T = x.shape[0]
    O, nb, _ = blocks.shape
    q, da = quantize_q8_K(x)
    bsum16 = q.reshape(T, nb, 16, 16).sum(axis=3).astype(F64)             # [T, nb, 16]
    out = np.empty((T, O), F32)
    for r0, r1 in _slabs(O, T * nb * 16):
        d, sc, wq = q6_K_parts(blocks[r0:r1])
        if T >= 8:
            out[:, r0:r1] = _q6_K_tiled(q, da, bsum16, d, sc, wq)
        else:
            out[:, r0:r1] = _q6_K_vec_dot(q, da, bsum16, d, sc, wq)
    return out


def _q6_K_tiled(q, da, bsum16, d, sc, wq):
    T, nb, _ = q.shape
    a = q.reshape(T, nb, 16, 16).transpose(1, 2, 0, 3)                     # [nb, 16, T, 16]
    w = wq.reshape(-1, nb, 16, 16).transpose(1, 2, 3, 0)                   # [nb, 16, 16, o]
    dots = np.matmul(a, w).astype(F64)                                     # [nb, 16, T, o]
    buf = np.zeros((T, w.shape[-1]), F32)
    for b in range(nb):
        raw = dots[b] - 32.0 * bsum16[:, b].T[:, :, None]                  # [16, T, o]
        s1 = np.einsum("sto,os->to", raw, sc[:, b]).astype(F32)
        buf = fma(s1 * d[None, :, b], da[:, b, None], buf)
    return buf


def _q6_K_vec_dot(q, da, bsum16, d, sc, wq):
    T, nb, _ = q.shape
    O = wq.shape[0]
    a = q.reshape(T, nb, 8, 8, 4).transpose(1, 2, 3, 0, 4)                 # [nb, c, l, T, 4]
    w = wq.reshape(O, nb, 8, 8, 4).transpose(1, 2, 3, 4, 0)                # [nb, c, l, 4, o]
    P = np.matmul(a, w).astype(F64)                                        # [nb, c, l, T, o]
    acc = np.zeros((8, T, O), F32)
    for b in range(nb):
        s = sc[:, b]                                                       # [o, 16]
        lanes = np.empty((8, T, O), F64)
        for l in range(8):
            pos = np.einsum("cto,oc->to", P[b, :, l], s[:, 2 * np.arange(8) + (l >= 4)])
            sub = np.outer(bsum16[:, b, 2 * l], s[:, 2 * l]) + np.outer(bsum16[:, b, 2 * l + 1], s[:, 2 * l + 1])
            lanes[l] = pos - 32.0 * sub
        acc = fma(da[:, b, None] * d[None, :, b], lanes.astype(F32), acc)
    return hsum8(acc)


# --- dispatch -------------------------------------------------------------------------------------
def mul_mat(kind: str, blocks: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """llama.cpp's result of x [T, n] . W.T for W's raw blocks [O, nb, block_bytes] of type `kind`,
    or None where the kernel is not emulated here."""
    O = blocks.shape[0]
    if kind in ("Q5_0", "Q8_0"):
        q, d = quantize_q8_0(x)
        out = np.empty((x.shape[0], O), F32)
        for r0, r1 in _slabs(O, 32 * blocks.shape[1]):
            wq, wd = q0_codes(blocks[r0:r1], kind)
            out[:, r0:r1] = dot_q0(wq, wd, q, d)
        return out
    if kind == "Q4_K" and O % 8 == 0:
        return dot_q4_K_repack(blocks, x)
    if kind == "Q6_K":
        return dot_q6_K(blocks, x)
    return None
