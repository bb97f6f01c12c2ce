"""A decode plan: a llama-family model's per-token work over all layers in one native call.

`LlamaPlan(model, state)` allocates the run state once (llama2.c's RunState: x, h, q, k, v, att,
o, gate, up, g, down, cos/sin), fills one i64 parameter block per layer (jit/kernels/layer.py
slots) pointing at those buffers, the layer's weights (linear_one blocks: the same kernels as
jit.linear) and its KV cache in `state`, and per token only writes the position-dependent slots
and calls `llama_layers(P, n_layer, H)`: q/k/v and gate/up each run as one pool job (jit.group),
and H, the output head, turns the last layer's x into the logits in the same call. The result
has the bits of the per-op path (tested).
Used only with the native pool (its pool_run is called from the plan).
"""
from __future__ import annotations

import ctypes
import sys
import weakref

import numpy as np

from . import api
from . import compile as jc
from .attention import MIN_RING
from .attention import kernel as attention_kernel
from .cpu import CpuInfo, detect
from .kernels import attention as ka
from .group import Jobs
from .kernels.layer import HEAD, L, SLOTS, LayerShape, indirect_token_ir, llama_layer_ir, supported
from .kernels.tiles import LO_FIELDS
from .linear import _addr, op_for, tiles

LAYERS_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
LO = {k: i for i, k in enumerate(LO_FIELDS)}


def layers_fn(shape: LayerShape, cpu: CpuInfo | None = None):
    """llama_layers(P, n, H): the n layers in order (P advancing by one block each), then the head."""
    cpu = cpu or detect()
    return jc.kernel(("llama_layers", shape), lambda: llama_layer_ir(shape, cpu), {"llama_layers": LAYERS_PROTO},
                     cpu)["llama_layers"]


def shape_of(model, state) -> LayerShape:
    """The layer kernel's key: the model's sizes and the state's KV cache type."""
    c = model.config
    return LayerShape(c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.rope_dim, c.n_ff, float(np.float32(c.eps)),
                      bool(c.rope_neox), state.kv_type)


def plannable(model, state) -> bool:
    """A plain llama block (no biases, no per-head norms), weights the JIT covers, kernels that
    compile here, the native pool."""
    c = model.config
    cpu = detect()
    shape = shape_of(model, state)
    if not (api.enabled() and supported(shape) and ka.supported(cpu, c.head_dim, c.head_dim, shape.kv)):
        return False
    if state.n_ctx < MIN_RING or not hasattr(api.get_pool(), "raw"):
        return False
    for lay in model.layers:
        if any(getattr(lay, f) is not None for f in ("attn_q_b", "attn_k_b", "attn_v_b", "attn_output_b",
                                                     "attn_q_norm", "attn_k_norm")):
            return False
        if not all(api.supports(getattr(lay, f).ggml_type) for f in ("attn_q", "attn_k", "attn_v", "attn_output",
                                                                    "ffn_gate", "ffn_up", "ffn_down")):
            return False
    return True


def token_fn(name: str, n_slots: int, n_embd: int, eps: float):
    """name(P, n, H): layer il through the function in its block's first slot, then the head."""
    cpu, eps = detect(), float(np.float32(eps))
    return jc.kernel((name, n_slots, n_embd, eps), lambda: indirect_token_ir(name, n_slots, n_embd, eps, cpu),
                     {name: LAYERS_PROTO}, cpu)[name]


def linear_block(op, x: int, y: int, keep: list) -> int:
    """A linear_one block of op reading x and writing y (an F32 weight reads x itself); (op, block)
    is appended to keep, which must live as long as native code holds the address."""
    b = op._one_p.copy()
    b[LO["x"]], b[LO["y"]] = x, y
    if b[LO["quant"]] == 0:
        b[LO["xq"]] = x
    keep.append((op, b))
    return b.ctypes.data


class PlanBase:
    """What every decode plan shares: its linear_one blocks (`_blocks`, the head's the last)."""
    _blocks: list

    def _setup(self, model, state, n_layer: int) -> None:
        """The model, its layer count, the native pool (its run function and context in _run and
        _ctx, its lock) and weak references to the state's arrays."""
        self.model, self.n_layer = model, n_layer
        self._pool = api.get_pool()
        self._run, self._ctx, self._lock = self._pool.raw()
        self.refs = StateRefs(state)

    def _block(self, op, x: int, y: int) -> int:
        return linear_block(op, x, y, self._blocks)

    def _call(self) -> None:
        """The native call over every layer and the head; then what a MoE block's weight callback
        could not raise inside it (jit.moe.MoeBlock.check)."""
        with self._lock:
            self._fn(self.P.ctypes.data, self.n_layer, self.head.H)
            for block in getattr(self, "_moe", ()):
                block.check()

    def _ring_step(self, x: np.ndarray, pos: int, st, n_swa: int, krow: int, vrow: int) -> np.ndarray:
        """A step of a plan with full and sliding-window layers (Gemma 3, Step-3.5): both kinds'
        cos/sin, the window's first key, every layer's cache row (slot pos % ring, krow / vrow:
        their parameter slots), the rings' positions as the per-op path keeps them, then the call."""
        self._pool.wake()                    # the workers spin again while this thread prepares
        for (cn, sn), swa in ((("cos", "sin"), False), (("cos_swa", "sin_swa"), True)):
            cos, sin = rope_row(pos, self._rope[swa])
            np.copyto(self.buf[cn], cos)
            np.copyto(self.buf[sn], sin)
        np.copyto(self.buf["x"], x)
        self._qpos[0] = pos
        self._kbeg[True][0] = max(0, pos - n_swa + 1)
        self.AP[:, ka.P_SCRATCH] = pos + 129
        slot = pos % self._ring
        self.P[:, krow] = self._kbase + slot * self._row_bytes
        self.P[:, vrow] = self._vbase + slot * self._row_bytes
        for il in self._swa:                      # the rings' position bookkeeping
            st.arrays[f"pos.k.{il}"][slot[il]] = pos
            st.arrays[f"pos.v.{il}"][slot[il]] = pos
        out = self.head.target()
        self._call()
        return self.head.result(out)


class LlamaPlan(PlanBase):
    def __init__(self, model, state):
        c = model.config
        self._setup(model, state, c.n_layer)
        pool, run, ctx = self._pool, self._run, self._ctx
        self.shape = shape_of(model, state)
        self._fn = layers_fn(self.shape)
        E, F, D = c.n_embd, c.n_ff, c.head_dim
        qd, kvd = c.n_head * D, c.n_head_kv * D
        buf = {name: np.zeros(n, np.float32) for name, n in
               (("x", E), ("h", E), ("q", qd), ("k", kvd), ("v", kvd), ("att", qd), ("o", E), ("gate", F),
                ("up", F), ("g", F), ("down", E), ("cos", c.rope_dim // 2), ("sin", c.rope_dim // 2))}
        self.buf = buf
        self._rope = (c.rope_dim, c.rope_base, c.rope_freq_scale, model.rope_freqs)
        self._qpos = np.zeros(1, np.int64)
        self._kbeg = np.zeros(1, np.int64)
        attn_fn = _addr(attention_kernel(D, D, True, self.shape.kv))
        lin_one = _addr(tiles()["linear_one"])
        self.P = np.zeros((c.n_layer, len(SLOTS)), np.int64)
        self.AP = np.zeros((c.n_layer, ka.N_PARAMS), np.int64)
        self._blocks = []                    # linear_one blocks (kept alive)
        self._jobs = jobs = Jobs(pool)       # grouped q/k/v and gate/up jobs (kept alive)
        self._kbase = np.zeros(c.n_layer, np.int64)
        self._vbase = np.zeros(c.n_layer, np.int64)
        self._row_bytes = ka.KV_BYTES[self.shape.kv] * kvd      # one position's K (or V) row in the cache
        ptr = {k: v.ctypes.data for k, v in buf.items()}
        for il, lay in enumerate(model.layers):
            p, ap = self.P[il], self.AP[il]
            kc, vc = state.arrays[f"k.{il}"], state.arrays[f"v.{il}"]
            self._kbase[il], self._vbase[il] = kc.ctypes.data, vc.ctypes.data
            ap[ka.P_Q], ap[ka.P_K], ap[ka.P_V] = ptr["q"], kc.ctypes.data, vc.ctypes.data
            ap[ka.P_QPOS], ap[ka.P_KBEG] = self._qpos.ctypes.data, self._kbeg.ctypes.data
            ap[ka.P_R], ap[ka.P_HQ], ap[ka.P_HKV] = state.n_ctx, c.n_head, c.n_head_kv
            ap[ka.P_SCALE:ka.P_SCALE + 1].view(np.float32)[0] = np.float32(1.0 / np.sqrt(D))
            p[L["job_qkv"]] = jobs.rows([(op_for(lay.attn_q), ptr["q"]), (op_for(lay.attn_k), ptr["k"]),
                                         (op_for(lay.attn_v), ptr["v"])], ptr["h"])
            p[L["job_ffn"]] = jobs.gate_up(op_for(lay.ffn_gate), op_for(lay.ffn_up), ptr["h"], ptr["gate"], ptr["up"],
                                           ptr["g"], "swiglu")
            p[L["lo_o"]] = self._block(op_for(lay.attn_output), ptr["att"], ptr["o"])
            p[L["lo_down"]] = self._block(op_for(lay.ffn_down), ptr["g"], ptr["down"])
            p[L["x"]], p[L["h"]] = ptr["x"], ptr["h"]
            p[L["attn_norm"]] = model.vec(lay.attn_norm).ctypes.data
            p[L["ffn_norm"]] = model.vec(lay.ffn_norm).ctypes.data
            for k in ("q", "k", "v", "cos", "sin", "att", "o", "down"):
                p[L[k]] = ptr[k]
            p[L["attn_p"]], p[L["attn_fn"]], p[L["run"]], p[L["ctx"]] = ap.ctypes.data, attn_fn, run, ctx
            p[L["attn_chunk"]] = max(1, -(-c.n_head // pool.n))
            p[L["linear_one"]], p[L["linear_group"]] = lin_one, jobs.linear_group
        self.head = Head(self, model.output, model.vec(model.output_norm), E)

    def step(self, x: np.ndarray, pos: int) -> np.ndarray:
        """x [n_embd] (the token's embedding) through every layer at position pos -> the logits
        [n_vocab] (an array no earlier caller still holds), or the last layer's output [n_embd]
        if the plan has no head."""
        self._pool.wake()                    # the workers spin again while this thread prepares
        cos, sin = rope_row(pos, self._rope)
        np.copyto(self.buf["cos"], cos)
        np.copyto(self.buf["sin"], sin)
        np.copyto(self.buf["x"], x)
        self._qpos[0] = pos
        self.AP[:, ka.P_SCRATCH] = pos + 129
        self.P[:, L["krow"]] = self._kbase + pos * self._row_bytes
        self.P[:, L["vrow"]] = self._vbase + pos * self._row_bytes
        out = self.head.target()
        self._call()
        return self.head.result(out)


class Head:
    """The output head inside a plan's native call (layer.head_ir): x -> rms_norm * norm -> output
    matrix -> logits, when the JIT has a kernel for the output matrix; else H is None (no head)
    and the model applies its own after the plan."""

    def __init__(self, plan, output, norm: np.ndarray, n_embd: int):
        self.H = None
        self._outs: list[np.ndarray] = []
        self._addrs: list[int] = []
        self._x = plan.buf["x"]
        from inference import ops

        if not (ops.ROUND_ACTIVATIONS and api.supports(output.ggml_type)):      # ops.linear's JIT case
            return
        op = op_for(output)
        self.xn = np.zeros(n_embd, np.float32)
        self.n_vocab = op.n_out
        self._norm = norm
        lo = plan._block(op, self.xn.ctypes.data, 0)           # y: set by target() every step
        self._lo = plan._blocks[-1][1]
        vals = dict(x=self._x.ctypes.data, norm=norm.ctypes.data, xn=self.xn.ctypes.data,
                    linear_one=_addr(tiles()["linear_one"]), lo=lo)
        self._h = np.array([vals[k] for k in HEAD], np.int64)
        self.H = self._h.ctypes.data

    def target(self) -> np.ndarray | None:
        """The array this step's logits go to, written by the output matrix itself (no copy): an
        earlier one that every caller has let go of (no reference or view left), else a new one.
        None without a head."""
        if self.H is None:
            return None
        for i in range(len(self._outs)):          # (no enumerate: its tuple would hold one more)
            out = self._outs[i]
            if sys.getrefcount(out) == 3:          # self._outs, `out`, getrefcount's argument
                self._lo[LO["y"]] = self._addrs[i]
                return out
        out = np.empty(self.n_vocab, np.float32)
        if len(self._outs) < 4:
            self._outs.append(out)
            self._addrs.append(out.ctypes.data)
        self._lo[LO["y"]] = out.ctypes.data
        return out

    def result(self, out: np.ndarray | None) -> np.ndarray:
        return self._x.copy() if out is None else out


def rope_row(pos: int, rope: tuple) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [rope_dim/2] of one position (ggml_cpu.rope_angles; rope = its other arguments)."""
    from inference import ggml_cpu

    cos, sin = ggml_cpu.rope_angles(np.array([pos]), *rope)
    return cos[0], sin[0]


class StateRefs:
    """Which state (and which of its buffers) a plan points into, without keeping them alive:
    a plan is valid for `state` only while these very arrays are the state's (ids alone could be
    reused by a new state's arrays after the old ones are freed)."""

    def __init__(self, state):
        self.state = weakref.ref(state)
        self.arrays = {k: weakref.ref(a) for k, a in state.arrays.items()}

    def matches(self, state) -> bool:
        return (self.state() is state and self.arrays.keys() == state.arrays.keys()
                and all(r() is state.arrays[k] for k, r in self.arrays.items()))
