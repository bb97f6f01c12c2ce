"""A decode step's MoE FFN in one native call (jit/kernels/moe_block.py), for kimi-linear's and
Step-3.5's MoE layers: `MoeBlock(...)` prepares, once per layer, the router's and the shared
expert's blocks, the scratch buffers (llama2.c's RunState) and per-expert tables of kernel and
weight addresses that the native code patches its job tables from; an expert's LinearOp (and its
repacked copy) is made the first time the router chooses it, as the per-op path does;
`block(y)` then runs router, routing, the k experts and the shared expert for one token.

The result has the bits of inference/models/moe.py's per-op decode (tested). A decode plan passes
its own h / out buffers (the block reads h and writes out); alone the block owns them.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from . import api
from . import compile as jc
from .cpu import detect
from .group import Jobs
from .kernels.group import GJ_FIELDS
from .kernels.moe_block import CLAMP_EPS, MB_FIELDS, MoeShape, moe_ir, padded, supported
from .linear import ONE_PROTO, _addr, op_for, tiles
from .plan import linear_block


PREPARE_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_int64)


def kernel(shape: MoeShape):
    cpu = detect()
    return jc.kernel(("moe_ffn", shape), lambda: moe_ir(shape, cpu), {"moe_ffn": ONE_PROTO}, cpu)["moe_ffn"]


def expert_op(w, e: int):
    """The LinearOp of matrix e of a stacked weight (an MoE layer's expert, an MLA head)."""
    from inference import ops

    return op_for(ops.expert(w, e))


def shape_for(gate_inp, gate_exps, down_exps, k: int, bias, norm_w: bool, scale: float, limit: float,
              shexp, limit_sh: float) -> MoeShape | None:
    """The block's key, or None where it does not apply (a type the JIT lacks, shared gate and up
    of different shapes, odd sizes)."""
    n_exp, n_ff, E = gate_exps.shape
    if not all(api.supports(m.ggml_type) for m in [gate_inp, gate_exps, down_exps, *(shexp or ())]):
        return None
    if shexp is not None and (shexp[0].shape != shexp[1].shape or shexp[2].shape[0] != E):
        return None
    if tuple(down_exps.shape) != (n_exp, E, n_ff):
        return None
    down = expert_op(down_exps, 0)
    shape = MoeShape(E, n_exp, int(k), n_ff, 0 if shexp is None else shexp[0].shape[0], bias is not None,
                     bool(norm_w), float(np.float32(scale)), float(np.float32(limit)) if limit > CLAMP_EPS else 0.0,
                     float(np.float32(limit_sh)) if limit_sh > CLAMP_EPS else 0.0, down._xbytes if down._quant_addr else 0)
    return shape if supported(shape) else None


class MoeBlock:
    def __init__(self, shape: MoeShape, gate_inp, gate_exps, up_exps, down_exps, bias, shexp,
                 h: int | None = None, out: int | None = None):
        s = self.shape = shape
        self._fn = kernel(shape)
        pool = api.get_pool()
        run, ctx, self._lock = pool.raw()
        self._jobs = jobs = Jobs(pool)
        E, K, F = s.n_embd, s.k, s.n_ff
        n = {"h": E, "out": E, "logits": padded(s.n_exp), "probs": padded(s.n_exp), "wslot": K, "wasc": K,
             "gu": 2 * K * F, "act": K * F, "z": K * E, "sh_g": s.n_ff_sh, "sh_u": s.n_ff_sh,
             "sh_act": s.n_ff_sh, "sh": E}
        self.buf = {k: np.zeros(max(1, v), np.float32) for k, v in n.items()}
        ptr = {k: v.ctypes.data for k, v in self.buf.items()}
        if h is not None:
            ptr["h"] = h
        if out is not None:
            ptr["out"] = out
        self._keep: list = [bias]
        self._mats = (gate_exps, up_exps, down_exps)
        self._tabs = {k: np.zeros(s.n_exp, np.int64) for k in ("kern_g", "w_g", "kern_u", "w_u", "kern_d", "w_d")}
        self.error: BaseException | None = None
        self._failed: list[int] = []
        g0, u0, d0 = self._fill(0)          # the tables' templates (every expert shares kernel and formats)
        self._prepare = PREPARE_PROTO(self._prepare_expert)     # kept: native code calls it
        tab = {k: v.ctypes.data for k, v in self._tabs.items()}
        parts = [(g0, ptr["gu"] + 4 * j * F) for j in range(K)] + [(u0, ptr["gu"] + 4 * (K + j) * F) for j in range(K)]
        job_gu = jobs.rows(parts, ptr["h"])
        gu_table = ctypes.c_int64.from_address(job_gu + 8 * GJ_FIELDS.index("table")).value
        xq_d = np.zeros(K * s.xbytes_d + 64, np.uint8)
        xq = (xq_d.ctypes.data, s.xbytes_d) if s.xbytes_d else (ptr["act"], 4 * F)     # float downs: act's rows
        d_table, _, d_chunk = jobs.table([(d0, xq[0] + j * xq[1], ptr["z"] + 4 * j * E) for j in range(K)])
        slots = dict(h=ptr["h"], out=ptr["out"], prepare=ctypes.cast(self._prepare, ctypes.c_void_p).value,
                     logits=ptr["logits"], probs=ptr["probs"],
                     bias=0 if bias is None else bias.ctypes.data, taken=self._i64([0] * s.n_exp),
                     wslot=ptr["wslot"], wasc=ptr["wasc"], job_gu=job_gu, gu_table=gu_table, gu=ptr["gu"],
                     act=ptr["act"], quant_d=d0._quant_addr, xq_d=xq_d.ctypes.data, d_table=d_table, run=run,
                     ctx=ctx, group_rows=_addr(jobs.k["group_rows"]), d_chunk=d_chunk, z=ptr["z"],
                     linear_one=_addr(tiles()["linear_one"]), linear_group=jobs.linear_group,
                     lo_router=linear_block(op_for(gate_inp), ptr["h"], ptr["logits"], self._keep), **tab)
        self._keep.append(xq_d)
        if s.n_ff_sh:
            gs, us, ds = (op_for(m) for m in shexp)
            slots.update(job_sh=jobs.rows([(gs, ptr["sh_g"]), (us, ptr["sh_u"])], ptr["h"]),
                         sh_g=ptr["sh_g"], sh_u=ptr["sh_u"], sh_act=ptr["sh_act"], sh=ptr["sh"],
                         lo_sh_down=linear_block(ds, ptr["sh_act"], ptr["sh"], self._keep))
        self.M = self._i64([slots.get(k, 0) for k in MB_FIELDS])
        self.fn_addr = _addr(self._fn)

    def _fill(self, e: int) -> tuple:
        """Expert e's LinearOps (prepared: repacked where the JIT repacks) into the tables."""
        trio = tuple(expert_op(w, e) for w in self._mats)
        for name, op in zip("gud", trio):
            self._tabs[f"w_{name}"][e] = op._w
            self._tabs[f"kern_{name}"][e] = op._kern_addr
        return trio

    def _prepare_expert(self, e: int) -> None:
        """The callback for an expert chosen for the first time (on the thread running the block,
        between pool jobs: the pool's lock is re-entrant). It must not raise into native code: a
        failure lends e expert 0's matrices for this call and is raised by check() after it."""
        try:
            self._fill(int(e))
        except BaseException as exc:  # noqa: BLE001 - reported by check()
            self.error = self.error or exc
            self._failed.append(int(e))
            for v in self._tabs.values():
                v[e] = v[0]

    def check(self) -> None:
        """Raise what a callback could not (the step's result is then not to be used); the experts
        it failed on are prepared again when next chosen."""
        if self.error is not None:
            for e in self._failed:
                for v in self._tabs.values():
                    v[e] = 0
            err, self.error, self._failed = self.error, None, []
            raise RuntimeError(f"preparing an expert's weights failed: {err}") from err

    def _i64(self, values) -> int:
        a = np.array(values, np.int64)
        self._keep.append(a)
        return a.ctypes.data

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """y [n_embd] (the normed hidden state) -> routed + shared output [n_embd] (a new array)."""
        with self._lock:
            np.copyto(self.buf["h"], y)
            self._fn(self.M)
            self.check()
            return self.buf["out"].copy()


_cache_lock = threading.Lock()


def block_for(key_tensor, make) -> MoeBlock | None:
    """The MoeBlock kept on a layer's router tensor (made by make() on first use; None: none applies)."""
    cache = key_tensor.__dict__.setdefault("_moe_block", {})
    pool = api.get_pool()
    hit = cache.get(id(pool), False)
    if hit is False:
        with _cache_lock:
            hit = cache[id(pool)] = make()
    return hit
