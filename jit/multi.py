"""Several matvecs, each weight with its own input row, as ONE pool job: a decode step's selected
experts of an MoE layer (gate and up reading the token, down reading each expert's hidden row)
and MLA's per-head k_b / v_b (32 small matrices). Separately each was a pool dispatch of its own,
a few microseconds of work between two meetings of the threads.

    linear_each(ws, xs, rows) -> y [K, n_out]:  y[k] = W_k . xs[rows[k]]
    linear_parts(ws, xs, rows) -> [y_k]:         the same for weights of different output widths

Every row is computed by the weight's own matvec kernel from the activation bytes its own
quantizer writes (the group_rows driver of kernels/group.py), so the bits are those of K
separate `jit.linear.linear` calls; only the number of pool jobs changes.
"""
from __future__ import annotations

import threading
from itertools import accumulate

import numpy as np

from .group import kernels as group_kernels
from .linear import op_for
from .pool import ALIGN


class _Buffers(threading.local):
    """Per-thread scratch (activation bytes, tables) grown as needed: a step allocates only y."""

    def __init__(self):
        self.xq: dict[int, np.ndarray] = {}


_buf = _Buffers()


def _scratch(key: int, nbytes: int) -> np.ndarray:
    b = _buf.xq.get(key)
    if b is None or b.size < nbytes:
        b = _buf.xq[key] = np.empty(nbytes, np.uint8)
    return b


def linear_each(ws: list, xs: np.ndarray, rows: list[int] | None = None) -> np.ndarray:
    """ws: K GGUF weights of one shape (out, in), each of a JIT-supported type; xs [n_x, in]
    float32; rows[k] (default k): the row of xs weight k reads -> [K, out] float32."""
    ops = [op_for(w) for w in ws]
    if any(op.n_out != ops[0].n_out for op in ops):
        raise ValueError("linear_each: every weight must have one shape and read rows of xs")
    y, _ = _run(ops, xs, rows)
    return y.reshape(len(ops), -1)[:, :ops[0].n_out]       # equal widths: part k at k * width


def linear_parts(ws: list, xs: np.ndarray, rows: list[int] | None = None) -> list[np.ndarray]:
    """linear_each for weights of one input width and any output widths -> [y_k [out_k]]: e.g. a
    decode step's projections that all read the normed hidden state, as one pool job."""
    ops = [op_for(w) for w in ws]
    y, starts = _run(ops, xs, rows)
    return [y[s:s + op.n_out] for s, op in zip(starts, ops)]


def _run(ops: list, xs: np.ndarray, rows: list[int] | None) -> tuple[np.ndarray, list[int]]:
    """The job -> (y flat, where each part starts): part k after the earlier parts' widths, each
    rounded up to ALIGN rows (a cache line of y). Per decode step this runs ~20 times, so the
    table is built as one Python list (no ctypes lookups per part)."""
    xs = np.ascontiguousarray(xs, dtype=np.float32).reshape(-1, xs.shape[-1])
    rows = range(len(ops)) if rows is None else [int(r) for r in rows]
    n_in, n_x = ops[0].n_in, xs.shape[0]
    if any(op.n_in != n_in for op in ops) or xs.shape[1] != n_in:
        raise ValueError("linear_each: every weight must have one shape and read rows of xs")
    if len(rows) != len(ops) or (len(rows) and not 0 <= min(rows) <= max(rows) < n_x):
        raise ValueError("linear_each: one row of xs per weight")
    x_addr = xs.ctypes.data
    # each activation format quantized once for every row of xs
    xq_base: dict[int, tuple[int, int]] = {}           # quantizer address -> (xq base, row stride)
    for op in ops:
        q = op._quant_addr
        if q in xq_base:
            continue
        if q == 0:                                      # F32/F16 weights read the float rows as they are
            xq_base[q] = (x_addr, 4 * n_in)
            continue
        base = _scratch(q, n_x * op._xbytes).ctypes.data
        op._qrows(q, x_addr, base, n_in, n_x, 4 * n_in, op._xbytes)
        xq_base[q] = (base, op._xbytes)
    starts = [0, *accumulate(-(-op.n_out // ALIGN) * ALIGN for op in ops)]
    total = starts.pop()
    y = np.empty(total, np.float32)
    y_addr = y.ctypes.data
    table = [len(ops)]
    for op, r, at in zip(ops, rows, starts):
        base, step = xq_base[op._quant_addr]
        table += (op._kern_addr, op._w, base + r * step, y_addr + 4 * at, at, op.n_out, n_in)
    table = np.array(table, np.int64)
    pool = ops[0]._pool
    chunk = pool.chunk_rows(total, max(op.row_bytes for op in ops)) if hasattr(pool, "chunk_rows") else None
    pool.run(group_kernels()["group_rows"], (table.ctypes.data, 0, 0), total, (n_in,), chunk)
    return y, starts
