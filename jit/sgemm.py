"""`matmul(a, b, out, accumulate)`: float32 C = A B (or C += A B) on the JIT kernel
(kernels/sgemm.py) and the native pool, for arrays whose rows are contiguous (any row stride).
numpy's BLAS may run narrower vectors than the CPU has (OPENBLAS_CORETYPE=Haswell on an AVX-512
machine: 115-125 GMAC/s on 2 Zen 5 cores, where this kernel runs the CPU's full width).
"""
from __future__ import annotations

import numpy as np

from . import compile as jc
from .api import MATVEC_PROTO, get_pool
from .cpu import CpuInfo, detect
from .kernels.sgemm import N_PARAMS, P_A, P_B, P_C, P_K, P_LDA, P_LDB, P_LDC, P_M, P_N, sgemm_ir, shape, symbol


def _kernel(accumulate: bool, cpu: CpuInfo):
    names = {symbol(False): MATVEC_PROTO, symbol(True): MATVEC_PROTO}
    return jc.kernel(("sgemm",), lambda: sgemm_ir(cpu), names, cpu)[symbol(accumulate)]


def usable(cpu: CpuInfo | None = None) -> bool:
    return (cpu or detect()).has_fma


def _rows_ok(x: np.ndarray) -> bool:
    return x.dtype == np.float32 and x.ndim == 2 and x.strides[1] == 4 and x.strides[0] % 4 == 0 and x.strides[0] >= 0


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, accumulate: bool = False, pool=None,
           cpu: CpuInfo | None = None) -> np.ndarray:
    """a [M, K], b [K, N] (N a multiple of 16) -> out [M, N] = a b (accumulate: out += a b)."""
    M, K = a.shape
    N = b.shape[1]
    if out is None:
        if accumulate:
            raise ValueError("sgemm: accumulate needs out")
        out = np.empty((M, N), np.float32)
    if b.shape[0] != K or out.shape != (M, N) or N % 16:
        raise ValueError(f"sgemm: {a.shape} x {b.shape} -> {out.shape} do not fit (N a multiple of 16)")
    if not (_rows_ok(a) and _rows_ok(b) and _rows_ok(out)):
        raise ValueError("sgemm: float32 arrays with contiguous rows")
    if M == 0 or K == 0:
        if not accumulate:
            out[...] = 0.0
        return out
    cpu = cpu or detect()
    p = np.zeros(N_PARAMS, np.int64)
    p[P_A], p[P_B], p[P_C] = a.ctypes.data, b.ctypes.data, out.ctypes.data
    p[P_M], p[P_N], p[P_K] = M, N, K
    p[P_LDA], p[P_LDB], p[P_LDC] = a.strides[0] // 4, b.strides[0] // 4, out.strides[0] // 4
    mr = shape(cpu)[0]
    tiles = -(-M // mr)
    pool = pool or get_pool()
    n = getattr(pool, "n", 1)
    pool.run(_kernel(accumulate, cpu), (p.ctypes.data, 0, 0), tiles, (0,), chunk=max(1, -(-tiles // n)))
    return out
