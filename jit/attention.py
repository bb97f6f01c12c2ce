"""`attend(...)`: attention over a KV cache on the JIT kernel (jit/kernels/attention.py), bit for
bit inference.ops._attention_f16 (llama.cpp's CPU attention; an F16 cache is a float16 array,
an F32 cache a float32 one, half=False in the twin). Kernels are keyed by the cache type. A batch runs the
query heads that share a KV head together (kernels/attention_batch.py), a single query in decode
order one head at a time (kernels/attention.py).

General over models: any head sizes that are multiples of 16, grouped KV heads, a plain cache
(R = its length) or a sliding-window ring (R slots, position p in slot p % R), a window given per
query as the first key position it sees. The pool splits (query, head) rows over threads.
"""
from __future__ import annotations

import numpy as np

from . import compile as jc
from .api import MATVEC_PROTO, get_pool
from .cpu import CpuInfo, detect
from .kernels.attention import N_PARAMS, P_HKV, P_HQ, P_K, P_KBEG, P_Q, P_QPOS, P_R, P_SCALE, P_SCRATCH, P_V
from .kernels.attention import attention_ir, supported, symbol
from .kernels.attention_batch import attention_group_ir, group_for
from .kernels.attention_batch import symbol as group_symbol

MIN_RING = 64     # a ring shorter than the decode step would need a modulo per key: numpy does those


def kernel(dk: int, dv: int, decode: bool, kv: str = "f16", cpu: CpuInfo | None = None):
    """The kernel of one query head per row over a cache of type kv ("f16" | "f32")."""
    cpu = cpu or detect()
    name = symbol(dk, dv, decode, kv)
    return jc.kernel(("attention", dk, dv, decode, kv), lambda: attention_ir(dk, dv, decode, kv, cpu),
                     {name: MATVEC_PROTO}, cpu)[name]


def group_kernel(dk: int, dv: int, group: int, kv: str = "f16", cpu: CpuInfo | None = None):
    """The batch kernel over `group` query heads that share a KV head (units of (token, heads))."""
    cpu = cpu or detect()
    name = group_symbol(dk, dv, group, kv)
    return jc.kernel(("attention_group", dk, dv, group, kv), lambda: attention_group_ir(dk, dv, group, kv, cpu),
                     {name: MATVEC_PROTO}, cpu)[name]


def usable(dk: int, dv: int, ring: int, cpu: CpuInfo | None = None, half: bool = True) -> bool:
    return ring >= MIN_RING and supported(cpu or detect(), dk, dv, "f16" if half else "f32")


def kv_of(kc: np.ndarray, vc: np.ndarray) -> str:
    """The cache type of a K and V cache pair: "f16" (float16 arrays) or "f32" (float32)."""
    if kc.dtype != vc.dtype or kc.dtype not in (np.float16, np.float32):
        raise ValueError(f"attend: the caches must both be float16 or both float32, not {kc.dtype} and {vc.dtype}")
    return "f16" if kc.dtype == np.float16 else "f32"


def attend(q: np.ndarray, kc: np.ndarray, vc: np.ndarray, q_pos: np.ndarray, k_begin: np.ndarray, scale: float,
           decode: bool, threads: int | None = None, pool=None, cpu: CpuInfo | None = None) -> np.ndarray:
    """q [T, Hq, Dk]; kc [R, Hkv, Dk], vc [R, Hkv, Dv] caches, both float16 (F16) or both float32
    (F32) (position p in slot p % R);
    query t at q_pos[t] sees keys k_begin[t] .. q_pos[t]. decode: a single query's summation
    order (ggml_vec_dot_f16) instead of a batch's. -> [T, Hq, Dv] float32."""
    q = np.ascontiguousarray(q, np.float32)
    T, Hq, dk = q.shape
    R, Hkv, dv = vc.shape
    if kc.shape != (R, Hkv, dk) or Hq % Hkv or not (kc.flags.c_contiguous and vc.flags.c_contiguous):
        raise ValueError(f"attend: q {q.shape}, k {kc.shape}, v {vc.shape} do not fit together (or not contiguous)")
    kv = kv_of(kc, vc)
    q_pos = np.ascontiguousarray(q_pos, np.int64).reshape(T)
    k_begin = np.ascontiguousarray(k_begin, np.int64).reshape(T)
    if T and (k_begin.min() < 0 or np.any(k_begin > q_pos) or np.any(q_pos - k_begin >= R) or R < MIN_RING):
        raise ValueError("attend: every query needs 0 <= k_begin <= q_pos and its keys inside the ring")
    out = np.empty((T, Hq, dv), np.float32)
    if T == 0:
        return out
    scratch = int(np.max(q_pos - (k_begin & ~63) + 1)) + 64
    p = np.zeros(N_PARAMS, np.int64)
    for slot, arr in ((P_Q, q), (P_K, kc), (P_V, vc), (P_QPOS, q_pos), (P_KBEG, k_begin)):
        p[slot] = arr.ctypes.data
    p[P_R], p[P_HQ], p[P_HKV], p[P_SCRATCH] = R, Hq, Hkv, scratch
    p[P_SCALE:P_SCALE + 1].view(np.float32)[0] = np.float32(scale)
    pool = pool or get_pool(threads)
    if decode:                                          # one row per (query, head)
        fn, rows = kernel(dk, dv, True, kv, cpu), T * Hq
    else:                                               # one row per (query, heads sharing a KV head)
        group = group_for(Hq, Hkv)
        fn, rows = group_kernel(dk, dv, group, kv, cpu), T * Hq // group
    chunk = max(1, -(-rows // (pool.n * 8)))           # small chunks: later queries see more keys
    pool.run(fn, (p.ctypes.data, 0, out.ctypes.data), rows, (0,), chunk=chunk)
    return out
