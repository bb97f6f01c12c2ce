"""Grouped decode jobs (jit/kernels/group.py) built from prepared LinearOps, for the decode plans.

`Jobs(pool)` owns every i64 block and quantized-activation buffer it hands out (their addresses
go into a plan's parameter slots, so they must live as long as the plan):

    jobs.rows([(op_q, q), (op_k, k), (op_v, v)], x)     -> address of a linear_group block:
        x quantized once per activation format, then the three matvecs as one pool job
    jobs.gate_up(op_gate, op_up, x, gate, up, out, "swiglu" | "gelu", table)
        -> gate and up by row chunks, each chunk finishing with out = act(gate) * up
"""
from __future__ import annotations

import numpy as np

from . import compile as jc
from .api import MATVEC_PROTO
from .cpu import CpuInfo, detect
from .kernels.group import GJ_FIELDS, GR_FIELDS, GU_FIELDS, N_QUANT, group_ir
from .linear import ONE_PROTO, _addr
from .pool import ALIGN


def kernels(cpu: CpuInfo | None = None) -> dict:
    cpu = cpu or detect()
    return jc.kernel(("group",), lambda: group_ir(cpu),
                     {"linear_group": ONE_PROTO, "group_rows": MATVEC_PROTO, "gate_up_swiglu": MATVEC_PROTO,
                      "gate_up_gelu": MATVEC_PROTO}, cpu)


def _aligned(nbytes: int, keep: list) -> int:
    """A zeroed buffer of nbytes starting on a 64-byte boundary (kept alive in keep)."""
    raw = np.zeros(nbytes + 64, np.uint8)
    keep.append(raw)
    return raw.ctypes.data + (-raw.ctypes.data % 64)


class Jobs:
    def __init__(self, pool):
        self.pool = pool
        self.run, self.ctx, _lock = pool.raw()
        self.k = kernels()
        self.linear_group = _addr(self.k["linear_group"])
        self._keep: list = []

    def _block(self, values: dict, fields) -> int:
        b = np.array([values.get(k, 0) for k in fields], np.int64)
        self._keep.append(b)
        return b.ctypes.data

    def _quantized(self, ops, x: int) -> tuple[dict, dict]:
        """linear_group's quantization slots for ops reading x, and each op's xq address."""
        slots, by_fn, xq_of = {}, {}, {}
        for op in ops:
            q = op._quant_addr
            if q == 0:                                  # F16/F32 weights read x itself
                xq_of[id(op)] = x
                continue
            if q not in by_fn:
                i = len(by_fn)
                if i == N_QUANT:
                    raise ValueError(f"more than {N_QUANT} activation formats in one group")
                by_fn[q] = _aligned(op._xbytes, self._keep)
                slots.update({f"quant{i}": q, f"x{i}": x, f"xq{i}": by_fn[q], f"n{i}": op.n_in})
            xq_of[id(op)] = by_fn[q]
        return slots, xq_of

    def _job(self, slots: dict, driver: str, table: int, rows: int, row_bytes: int) -> int:
        slots.update(run=self.run, ctx=self.ctx, driver=_addr(self.k[driver]), table=table, rows=rows,
                     chunk=self.pool.chunk_rows(rows, row_bytes))
        return self._block(slots, GJ_FIELDS)

    def table(self, parts: list) -> tuple[int, int, int]:
        """A group_rows table of parts [(op, xq address, y address)], each part's rows from the next
        ALIGN-row boundary -> (its address, the job's rows, the pool's chunk of rows)."""
        table, begin = [len(parts)], 0
        for op, xq, y in parts:
            table += [op._kern_addr, op._w, xq, y, begin, op.n_out, op.n_in]
            begin += -(-op.n_out // ALIGN) * ALIGN
        assert len(table) == 1 + len(GR_FIELDS) * len(parts)
        t = np.array(table, np.int64)
        self._keep.append(t)
        return t.ctypes.data, begin, self.pool.chunk_rows(begin, max(p[0].row_bytes for p in parts))

    def rows(self, parts: list, x: int) -> int:
        """parts: [(op, y address)], every op reading the float32 vector at x."""
        ops = [op for op, _ in parts]
        if len({op.n_in for op in ops}) != 1:
            raise ValueError("grouped matvecs must read vectors of one length")
        slots, xq_of = self._quantized(ops, x)
        table, rows, _ = self.table([(op, xq_of[id(op)], y) for op, y in parts])
        return self._job(slots, "group_rows", table, rows, max(op.row_bytes for op in ops))

    def gate_up(self, op_g, op_u, x: int, gate: int, up: int, out: int, act: str, table: int = 0) -> int:
        if op_g.n_in != op_u.n_in or op_g.n_out != op_u.n_out or op_g.n_out % 16:
            raise ValueError("gate and up must have one shape, rows a multiple of 16")
        slots, xq_of = self._quantized([op_g, op_u], x)
        t = dict(kern_g=_addr(op_g._kern), w_g=op_g._w, xq_g=xq_of[id(op_g)], gate=gate, kern_u=_addr(op_u._kern),
                 w_u=op_u._w, xq_u=xq_of[id(op_u)], up=up, n=op_g.n_in, out=out, table=table)
        return self._job(slots, f"gate_up_{act}", self._block(t, GU_FIELDS), op_g.n_out,
                         op_g.row_bytes + op_u.row_bytes)
