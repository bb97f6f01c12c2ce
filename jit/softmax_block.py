"""`update(...)`: one key block of an online softmax on the JIT kernel (jit/kernels/softmax_block.py),
rows split over the pool; `update_twin` is its numpy twin (inference.models.mla_prefill.softmax_block:
np.exp instead of ggml's polynomial)."""
from __future__ import annotations

import numpy as np

from . import compile as jc
from .api import MATVEC_PROTO, get_pool
from .cpu import CpuInfo, detect
from inference.models.mla_prefill import softmax_block

from .kernels.softmax_block import N_PARAMS, P_AL, P_L, P_LD, P_M, P_SCALE, P_VIS, SYMBOL, softmax_block_ir


def kernel(cpu: CpuInfo | None = None):
    cpu = cpu or detect()
    return jc.kernel(("softmax_block",), lambda: softmax_block_ir(cpu), {SYMBOL: MATVEC_PROTO}, cpu)[SYMBOL]


def usable(cpu: CpuInfo | None = None) -> bool:
    return (cpu or detect()).has_fma


def _check(sc, m, l, vis) -> None:
    rows, ld = sc.shape
    if sc.dtype != np.float32 or not sc.flags.c_contiguous or ld % 16:
        raise ValueError(f"softmax block: scores must be contiguous float32 rows of a multiple of 16, not {sc.shape}")
    for name, a, dt in (("m", m, np.float32), ("l", l, np.float32), ("vis", vis, np.int64)):
        if a.shape != (rows,) or a.dtype != dt or not a.flags.c_contiguous:
            raise ValueError(f"softmax block: {name} must be {rows} contiguous {np.dtype(dt).name}")
    if rows and (vis.min() < 0 or vis.max() > ld):
        raise ValueError(f"softmax block: visible counts must lie in 0..{ld}")


def _check_scale(scale: float) -> None:
    if not scale > 0:                       # the kernel scales the row's max, not every score
        raise ValueError(f"softmax block: the scale must be positive, got {scale}")


def update(sc: np.ndarray, m: np.ndarray, l: np.ndarray, vis: np.ndarray, scale: float,
           threads: int | None = None, pool=None, cpu: CpuInfo | None = None) -> np.ndarray:
    """sc [rows, LD] raw scores -> probabilities in place; m, l [rows] running max / sum updated
    in place; vis [rows] int64 visible columns per row. -> alpha [rows], the factor for the
    running accumulators (acc = alpha acc + sc @ V)."""
    _check(sc, m, l, vis)
    _check_scale(scale)
    alpha = np.empty(sc.shape[0], np.float32)
    p = np.zeros(N_PARAMS, np.int64)
    for slot, arr in ((P_M, m), (P_L, l), (P_AL, alpha), (P_VIS, vis)):
        p[slot] = arr.ctypes.data
    p[P_LD] = sc.shape[1]
    p[P_SCALE:P_SCALE + 1].view(np.float32)[0] = np.float32(scale)
    (pool or get_pool(threads)).run(kernel(cpu), (p.ctypes.data, 0, sc.ctypes.data), sc.shape[0], (0,))
    return alpha


def update_twin(sc, m, l, vis, scale) -> np.ndarray:
    """numpy twin of `update` (same contract): the engine's own path without the JIT."""
    _check(sc, m, l, vis)
    return softmax_block(sc, m, l, vis, scale)
