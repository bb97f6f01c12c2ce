"""MLA prefill over a long latent cache in the decompressed (plain multi-head) form.

The absorbed form (mla.py) pays, per query, head and key, R + r multiply-adds for the score and R
for the value sum (R = 512: 1088). Decompressing each key block once per chunk into per-head keys
and values (k_nope_h = k_b[h]^T c_s, v_h = v_b[h] c_s; R (n + dv) per key and head) leaves
n + r + dv per query (320), so a chunk of T queries costs less this way once
T (2R + r) > T (n + r + dv) + R (n + dv), T > ~171 at kimi's sizes (`pays`).

Flash-style: key blocks of KEY_BLOCK, one head at a time, each decompressed once for all queries
of the chunk (its keys straight into the transposed layout the scores read) and met by
SCORE_ROWS queries at a time, over the keys they see (the scores stay in cache), with a
running max / sum / accumulator per (head, query) (jit.softmax_block on the JIT, its twin
otherwise); no [T, S] score array and nothing kept between calls: memory stays the latent cache.
The products run on jit.sgemm when the JIT is selected (numpy's BLAS here ran AVX2 kernels on an
AVX-512 CPU, and its threads took cores from our pool between calls: the last 2048 queries of a
32k prefill went from 8.3 to 4.8 s on Zen 5).
Equal to the absorbed attention to float32 rounding (not llama.cpp's F16 rounding of q and p).
"""
from __future__ import annotations

import numpy as np

from .. import interrupt, ops
from ..gguf_file import Tensor

KEY_BLOCK = 2048        # keys per block, decompressed per head for all queries of a pass
QUERY_BLOCK = 2048      # queries per pass (a longer chunk is cut; each pass decompresses again)
SCORE_ROWS = 512        # queries per score block: [SCORE_ROWS, KEY_BLOCK] scores (4 MB) stay in cache


def pays(T: int, R: int, n: int, r: int, dv: int) -> bool:
    """Whether decompressing keys and values costs fewer multiply-adds than the absorbed form."""
    return T * (2 * R + r) > T * (n + r + dv) + R * (n + dv)


def _matmul():
    """(a, b, out, accumulate) -> out = a b or out += a b: jit.sgemm when the JIT kernels are
    selected (numpy's BLAS may run narrower vectors than the CPU has), else numpy."""
    try:
        from jit import api
        if api.enabled():
            from jit import sgemm
            if sgemm.usable():
                def mm(a, b, out=None, accumulate=False):
                    if b.shape[1] % 16:                 # the kernel's panels are 16 columns
                        return _numpy_matmul(a, b, out, accumulate)
                    return sgemm.matmul(a, b, out, accumulate)
                return mm
    except ImportError:
        pass
    return _numpy_matmul


def _numpy_matmul(a, b, out=None, accumulate=False):
    if accumulate:
        out += a @ b
        return out
    return np.matmul(a, b, out=out)


def _softmax_update():
    """jit.softmax_block.update when the JIT kernels are selected, else its numpy twin."""
    try:
        from jit import api
        if api.enabled():
            from jit import softmax_block as jit_block
            if jit_block.usable():
                return jit_block.update
    except ImportError:
        pass
    return softmax_block


def softmax_block(sc: np.ndarray, m: np.ndarray, l: np.ndarray, vis: np.ndarray, scale: float) -> np.ndarray:
    """One key block of the online softmax (jit/kernels/softmax_block.py's math): sc [rows, LD]
    raw scores -> exp(scale sc - m_new) where a row sees the column (its first vis[row]), else 0;
    m, l [rows] running max and sum updated in place. -> alpha [rows] = exp(m_old - m_new), the
    factor for the running accumulators (1 for a row that saw nothing)."""
    seen = np.arange(sc.shape[1])[None, :] < vis[:, None]                  # [rows, LD]
    sc *= np.float32(scale)
    sc[~seen] = -np.inf
    m_new = np.maximum(m, sc.max(axis=1, initial=-np.inf))
    safe = np.where(np.isinf(m_new), np.float32(0), m_new)[:, None]      # rows that see nothing yet
    sc -= safe
    np.exp(sc, out=sc)
    with np.errstate(invalid="ignore"):
        alpha = np.where(vis > 0, np.exp(m - m_new), np.float32(1)).astype(np.float32)
    l *= alpha
    l += sc.sum(axis=1, dtype=np.float32)
    m[:] = m_new
    return alpha


def _dequant_heads(w: Tensor) -> np.ndarray:
    """A stacked per-head weight (ne [in, out, H]) as float32 [H, out, in]."""
    n_in, n_out, H = w.shape_ggml
    return ops.dequant_rows(w, 0, n_out * H).reshape(H, n_out, n_in)


def attention(q: np.ndarray, cache: np.ndarray, n_past: int, scale: float, R: int,
              attn_k_b: Tensor, attn_v_b: Tensor) -> np.ndarray:
    """q [T, H, n + r] (query t at position n_past + t; rope part last) over the cache rows
    [S = n_past + T, R + r] ([c | k_pe]). -> per-head values [T, H, dv] (v_b already applied)."""
    T = q.shape[0]
    kbT = np.ascontiguousarray(_dequant_heads(attn_k_b).transpose(0, 2, 1))     # [H, n, R]
    vbT = np.ascontiguousarray(_dequant_heads(attn_v_b).transpose(0, 2, 1))     # [H, R, dv]
    out = np.empty((T, q.shape[1], vbT.shape[2]), np.float32)
    update, mm = _softmax_update(), _matmul()
    for t0 in range(0, T, QUERY_BLOCK):
        t1 = min(T, t0 + QUERY_BLOCK)
        out[t0:t1] = _queries(q[t0:t1], cache[:n_past + t1], n_past + t0, scale, R, kbT, vbT, update, mm)
    return out


def _queries(q, cache, p0, scale, R, kbT, vbT, update, mm) -> np.ndarray:
    """Queries at positions p0.. over cache rows [0, p0 + T). -> [T, H, dv]"""
    T, H, D = q.shape
    n, dv = kbT.shape[1], vbT.shape[2]
    qh = np.ascontiguousarray(q.transpose(1, 0, 2), np.float32)                # [H, T, n + r]
    qpos = np.arange(p0, p0 + T)
    m = np.full((H, T), -np.inf, np.float32)                                   # running max
    l = np.zeros((H, T), np.float32)                                           # running sum
    acc = np.zeros((H, T, dv), np.float32)                                     # running sum of p v
    for k0 in range(0, cache.shape[0], KEY_BLOCK):
        interrupt.poll(k0 / cache.shape[0])     # a block is ~0.3 s of 512 queries: Stop here
        s = min(cache.shape[0], k0 + KEY_BLOCK) - k0
        ld = -(-s // 16) * 16                                                  # padded width
        c = np.zeros((ld, cache.shape[1]), np.float32)                         # [ld, R + r]
        c[:s] = cache[k0:k0 + s]
        vis = np.clip(qpos - k0 + 1, 0, s).astype(np.int64)                    # [T] keys each sees
        cT = np.ascontiguousarray(c[:, :R].T)                                  # [R, ld] latents^T
        Kt = np.empty((D, ld), np.float32)                                     # [n + r, ld] keys^T
        Kt[n:] = c[:, R:].T                                                    # k_pe: every head
        sc = np.empty(min(T, SCORE_ROWS) * ld, np.float32)                     # a block's [t, w] scores
        v = np.empty((ld, dv), np.float32)                                     # per head, reused
        for h in range(H):
            mm(kbT[h], cT, out=Kt[:n])                                         # k_nope_h^T [n, ld]
            mm(c[:, :R], vbT[h], out=v)                                        # [ld, dv]
            for t0 in range(0, T, SCORE_ROWS):                                 # scores stay in cache
                t1 = min(T, t0 + SCORE_ROWS)
                w = -(-int(vis[t1 - 1]) // 16) * 16          # the keys these queries see (vis grows with t)
                if w == 0:
                    continue                                 # none: the running sums stay as they are
                s_t = sc[:(t1 - t0) * w].reshape(t1 - t0, w)
                mm(qh[h, t0:t1], Kt[:, :w], out=s_t)                           # [t, w]
                alpha = update(s_t, m[h, t0:t1], l[h, t0:t1], vis[t0:t1], scale)
                acc[h, t0:t1] *= alpha[:, None]
                mm(s_t, v[:w], out=acc[h, t0:t1], accumulate=True)
    return (acc / l[:, :, None]).transpose(1, 0, 2)
