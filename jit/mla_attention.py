"""`decode(...)`: one query's MLA latent attention over a long cache on the JIT kernel
(jit/kernels/mla_attention.py), and its numpy twin `decode_twin`.

The keys are cut into blocks whose size depends only on S (never on the thread count); the pool
hands blocks to threads, each block leaves its own max / sum / accumulator and `merge` combines
them in block order: the answer is the same for any number of threads. Equal to plain softmax
attention to float32 rounding (online softmax, ggml's exp polynomial).
"""
from __future__ import annotations

import numpy as np

from . import compile as jc
from .api import MATVEC_PROTO, get_pool
from .cpu import CpuInfo, detect
from .kernels.mla_attention import N_PARAMS, P_BLK, P_H, P_K, P_L, P_M, P_Q, P_S, P_SCALE, TILE
from .kernels.mla_attention import mla_decode_ir, supported, symbol

MAX_BLOCKS = 32    # blocks per call at most (the partial accumulators: MAX_BLOCKS x H x R floats)
MIN_BLOCK = 64     # keys per block at least


def kernel(d: int, r_lat: int, half: bool, cpu: CpuInfo | None = None):
    cpu = cpu or detect()
    name = symbol(d, r_lat, half)
    return jc.kernel(("mla_decode", d, r_lat, half), lambda: mla_decode_ir(d, r_lat, half, cpu),
                     {name: MATVEC_PROTO}, cpu)[name]


def usable(d: int, r_lat: int, n_head: int, cpu: CpuInfo | None = None) -> bool:
    return n_head % 2 == 0 and supported(cpu or detect(), d, r_lat)


def block_size(S: int) -> int:
    """Keys per block: a multiple of the 16-key tile, a function of S alone."""
    per = -(-S // MAX_BLOCKS)
    return max(MIN_BLOCK, -(-per // TILE) * TILE)


def merge(m: np.ndarray, l: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Blocks' m [nb, H], l [nb, H], acc [nb, H, R] -> softmax-weighted values [H, R] (acc is
    overwritten)."""
    from inference import ggml_cpu

    top = m.max(axis=0)                                          # [H]
    w = ggml_cpu.v_expf(m - top)                                 # [nb, H]; ggml's exp, as the kimi plan's merge
    tot = (w * l).sum(axis=0, dtype=np.float32)                  # [H]
    np.multiply(acc, w[:, :, None], out=acc)                     # in place: no 2 MB temporary per step
    out = np.add.reduce(acc, axis=0)                             # block after block: a fixed order
    return out / tot[:, None]


def decode(q: np.ndarray, cache: np.ndarray, S: int, scale: float, r_lat: int, threads: int | None = None,
           pool=None, cpu: CpuInfo | None = None) -> np.ndarray:
    """q [H, D] float32 (one query, all heads); cache [>= S, D] float16 or float32 rows K_s, whose
    first r_lat elements are the values V_s. -> [H, r_lat] float32 = softmax(scale q K^T) V."""
    q = np.ascontiguousarray(q, np.float32)
    H, d = q.shape
    if cache.ndim != 2 or cache.shape[1] != d or cache.shape[0] < S or not cache.flags.c_contiguous:
        raise ValueError(f"mla decode: q {q.shape} and cache {cache.shape} do not fit (or not contiguous)")
    if cache.dtype not in (np.float16, np.float32) or S < 1:
        raise ValueError("mla decode: the cache must be float16 or float32 and hold a key")
    blk = block_size(S)
    nb = -(-S // blk)
    m, l = np.empty((nb, H), np.float32), np.empty((nb, H), np.float32)
    acc = np.empty((nb, H, r_lat), np.float32)
    p = np.zeros(N_PARAMS, np.int64)
    for slot, arr in ((P_Q, q), (P_K, cache), (P_M, m), (P_L, l)):
        p[slot] = arr.ctypes.data
    p[P_S], p[P_H], p[P_BLK] = S, H, blk
    p[P_SCALE:P_SCALE + 1].view(np.float32)[0] = np.float32(scale)
    fn = kernel(d, r_lat, cache.dtype == np.float16, cpu)
    (pool or get_pool(threads)).run(fn, (p.ctypes.data, 0, acc.ctypes.data), nb, (0,), chunk=1)
    return merge(m, l, acc)


def decode_twin(q: np.ndarray, cache: np.ndarray, S: int, scale: float, r_lat: int) -> np.ndarray:
    """numpy twin of `decode`: the same blocks and merge, each block's softmax in one pass."""
    H = q.shape[0]
    blk = block_size(S)
    nb = -(-S // blk)
    m, l = np.empty((nb, H), np.float32), np.empty((nb, H), np.float32)
    acc = np.empty((nb, H, r_lat), np.float32)
    for b in range(nb):
        k = cache[b * blk:min(S, (b + 1) * blk)].astype(np.float32)      # [s, D]
        sc = (q.astype(np.float32) @ k.T) * np.float32(scale)             # [H, s]
        m[b] = sc.max(axis=1)
        e = np.exp(sc - m[b][:, None]).astype(np.float32)
        l[b] = e.sum(axis=1, dtype=np.float32)
        acc[b] = e @ k[:, :r_lat]
    return merge(m, l, acc)
