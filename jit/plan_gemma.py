"""A Gemma 3 decode plan: every layer of a token in one native call (see jit/plan.py).

Sliding layers attend through their ring (position p in slot p % R, window n_swa); the plan
also keeps the ring's position arrays (pos.k.N / pos.v.N) as the per-op path does, so a state
decoded by the plan rewinds and continues on either path.
"""
from __future__ import annotations

import numpy as np

from . import api
from . import compile as jc
from .attention import MIN_RING
from .attention import kernel as attention_kernel
from .cpu import detect
from .kernels import attention as ka
from .kernels.gemma_layer import SLOTS, G, GemmaShape, gemma_layer_ir, supported
from .group import Jobs
from .linear import _addr, op_for, tiles
from .plan import LAYERS_PROTO, Head, PlanBase

WEIGHTS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def shape_of(model, state) -> GemmaShape:
    """The layer kernel's key: the model's sizes and the state's KV cache type."""
    c = model.config
    return GemmaShape(c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.rope_dim, c.n_ff, float(np.float32(c.eps)),
                      float(np.float32(c.attn_scale)), kv=state.kv_type)


def gelu_table() -> np.ndarray:
    """llama.cpp's F16 GELU table (inference.ggml_cpu.gelu_table), float32 [65536] by F16 bits."""
    from inference import ggml_cpu

    return ggml_cpu.gelu_table()


def plannable(model, state) -> bool:
    c = model.config
    shape, cpu = shape_of(model, state), detect()
    if not cpu.has_f16c:                        # the GELU table is indexed by F16C's half bits
        return False
    if not (api.enabled() and supported(shape) and ka.supported(cpu, c.head_dim, c.head_dim, shape.kv)):
        return False
    rings = [state.arrays[f"k.{il}"].shape[0] for il in range(c.n_layer)]
    if min(rings) < MIN_RING or not hasattr(api.get_pool(), "raw"):
        return False
    return all(api.supports(getattr(lay, f).ggml_type) for lay in model.layers for f in WEIGHTS)


class GemmaPlan(PlanBase):
    def __init__(self, model, state):
        c = model.config
        self._setup(model, state, c.n_layer)
        pool, run, ctx = self._pool, self._run, self._ctx
        self.shape = shape_of(model, state)
        cpu = detect()
        self._fn = jc.kernel(("gemma_layers", self.shape), lambda: gemma_layer_ir(self.shape, cpu),
                             {"gemma_layers": LAYERS_PROTO}, cpu)["gemma_layers"]
        E, F, D = c.n_embd, c.n_ff, c.head_dim
        qd, kvd, half = c.n_head * D, c.n_head_kv * D, c.rope_dim // 2
        self.buf = buf = {name: np.zeros(n, np.float32) for name, n in
                          (("x", E), ("h", E), ("q", qd), ("k", kvd), ("v", kvd), ("att", qd), ("o", E), ("gate", F),
                           ("up", F), ("g", F), ("down", E), ("cos", half), ("sin", half), ("cos_swa", half),
                           ("sin_swa", half))}
        ptr = {k: v.ctypes.data for k, v in buf.items()}
        self._table = gelu_table()
        self._rope = {False: (c.rope_dim, c.rope_base, c.rope_freq_scale, None),
                      True: (c.rope_dim, c.rope_base_swa, 1.0, None)}
        self._qpos = np.zeros(1, np.int64)
        self._kbeg = {False: np.zeros(1, np.int64), True: np.zeros(1, np.int64)}
        attn_fn = _addr(attention_kernel(D, D, True, self.shape.kv))
        lin_one = _addr(tiles()["linear_one"])
        self.P = np.zeros((c.n_layer, len(SLOTS)), np.int64)
        self.AP = np.zeros((c.n_layer, ka.N_PARAMS), np.int64)
        self._blocks = []
        self._jobs = jobs = Jobs(pool)
        self._kbase = np.array([state.arrays[f"k.{il}"].ctypes.data for il in range(c.n_layer)], np.int64)
        self._vbase = np.array([state.arrays[f"v.{il}"].ctypes.data for il in range(c.n_layer)], np.int64)
        self._ring = np.array([state.arrays[f"k.{il}"].shape[0] for il in range(c.n_layer)], np.int64)
        self._row_bytes = ka.KV_BYTES[self.shape.kv] * kvd      # one position's K (or V) row in the cache
        for il, lay in enumerate(model.layers):
            swa = c.is_swa[il]
            p, ap = self.P[il], self.AP[il]
            ap[ka.P_Q], ap[ka.P_K], ap[ka.P_V] = ptr["q"], self._kbase[il], self._vbase[il]
            ap[ka.P_QPOS], ap[ka.P_KBEG] = self._qpos.ctypes.data, self._kbeg[swa].ctypes.data
            ap[ka.P_R], ap[ka.P_HQ], ap[ka.P_HKV] = self._ring[il], c.n_head, c.n_head_kv
            ap[ka.P_SCALE:ka.P_SCALE + 1].view(np.float32)[0] = np.float32(1.0)
            p[G["job_qkv"]] = jobs.rows([(op_for(lay.attn_q), ptr["q"]), (op_for(lay.attn_k), ptr["k"]),
                                         (op_for(lay.attn_v), ptr["v"])], ptr["h"])
            p[G["job_ffn"]] = jobs.gate_up(op_for(lay.ffn_gate), op_for(lay.ffn_up), ptr["h"], ptr["gate"], ptr["up"],
                                           ptr["g"], "gelu", self._table.ctypes.data)
            p[G["lo_o"]] = self._block(op_for(lay.attn_output), ptr["att"], ptr["o"])
            p[G["lo_down"]] = self._block(op_for(lay.ffn_down), ptr["g"], ptr["down"])
            for slot, t in (("attn_norm", lay.attn_norm), ("q_norm", lay.attn_q_norm), ("k_norm", lay.attn_k_norm),
                            ("post_attn_norm", lay.post_attention_norm), ("ffn_norm", lay.ffn_norm),
                            ("post_ffw_norm", lay.post_ffw_norm)):
                p[G[slot]] = model.vec(t).ctypes.data
            for k in ("x", "h", "q", "k", "v", "att", "o", "down"):
                p[G[k]] = ptr[k]
            p[G["cos"]], p[G["sin"]] = (ptr["cos_swa"], ptr["sin_swa"]) if swa else (ptr["cos"], ptr["sin"])
            p[G["attn_p"]], p[G["attn_fn"]], p[G["run"]], p[G["ctx"]] = ap.ctypes.data, attn_fn, run, ctx
            p[G["attn_chunk"]] = max(1, -(-c.n_head // pool.n))
            p[G["linear_one"]], p[G["linear_group"]] = lin_one, jobs.linear_group
        self._swa = [il for il in range(c.n_layer) if c.is_swa[il]]
        self.head = Head(self, model.output, model.vec(model.output_norm), E)

    def step(self, x: np.ndarray, pos: int, st) -> np.ndarray:
        """x [n_embd] (the scaled embedding) through every layer of state st (the plan's, see
        refs) at position pos -> the logits [n_vocab] before any soft-capping (an array no
        earlier caller still holds), or the last layer's output [n_embd] if the plan has no head."""
        return self._ring_step(x, pos, st, self.model.config.n_swa, G["krow"], G["vrow"])
