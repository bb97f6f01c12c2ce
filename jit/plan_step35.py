"""A Step-3.5 decode plan: every layer of a token in one native call (see jit/plan.py).

Full and sliding layers differ in head count and rotated dims, so each layer kind has its own
compiled layer function (kernels/step35_layer.py), named in its parameter block; MoE layers call
their jit.moe block (router, routing, experts, shared expert) from inside the same call. Sliding
layers attend through their ring, and the plan keeps the ring's position arrays as the per-op
path does, so a planned state rewinds and continues on either path.
"""
from __future__ import annotations

import numpy as np

from inference.models.moe import GATING_SIGMOID, shared_expert

from . import api
from . import compile as jc
from . import moe as jm
from .attention import MIN_RING
from .attention import kernel as attention_kernel
from .cpu import detect
from .group import Jobs
from .kernels import attention as ka
from .kernels.moe_block import padded
from .kernels.step35_layer import SLOTS, S, Step35Shape, step35_layer_ir, supported
from .linear import ONE_PROTO, _addr, op_for, tiles
from .plan import Head, PlanBase, token_fn

ATTN = ("attn_q", "attn_k", "attn_v", "attn_gate", "attn_output")
DENSE = ("ffn_gate", "ffn_up", "ffn_down")


def moe_shape(model, il: int):
    c, lay = model.cfg, model.layers[il]
    return jm.shape_for(lay.ffn_gate_inp, lay.ffn_gate_exps, lay.ffn_down_exps, c.n_expert_used, lay.exp_probs_b,
                        c.weights_norm, c.weights_scale, c.clamp_exp[il], shared_expert(lay), c.clamp_shexp[il])


def layer_shape(model, state, il: int) -> Step35Shape:
    c, lay = model.cfg, model.layers[il]
    dense = lay.ffn_gate_inp is None
    limit = c.clamp_shexp[il] if dense and c.clamp_shexp[il] > jm.CLAMP_EPS else 0.0
    return Step35Shape(c.n_embd, c.n_head[il], c.n_head_kv[il], c.head_dim,
                       c.n_rot_swa if c.is_swa[il] else c.n_rot_full, float(np.float32(c.eps)),
                       lay.ffn_gate.shape[0] if dense else 0, float(np.float32(limit)), state.kv_type)


def _layer_ok(model, state, il: int) -> bool:
    c, lay = model.cfg, model.layers[il]
    if lay.attn_qkv is not None or lay.attn_q_b is not None or lay.attn_qkv_b is not None:
        return False
    if any(w is None for w in (lay.attn_q_norm, lay.attn_k_norm, lay.attn_gate)):
        return False
    if not supported(layer_shape(model, state, il)) or c.n_head[il] % c.n_head_kv[il]:
        return False
    if state.arrays[f"k.{il}"].shape[0] < MIN_RING:
        return False
    if lay.ffn_gate_inp is None:
        return lay.ffn_gate.shape == lay.ffn_up.shape and all(api.supports(getattr(lay, f).ggml_type)
                                                              for f in ATTN + DENSE)
    return (c.gating_func == GATING_SIGMOID and moe_shape(model, il) is not None
            and all(api.supports(getattr(lay, f).ggml_type) for f in ATTN))


def plannable(model, state) -> bool:
    from inference import ops

    c = model.cfg
    if not (api.enabled() and ops.ROUND_ACTIVATIONS and state.kv_type == "f16" and c.head_dim_v == c.head_dim):
        return False
    if not (ka.supported(detect(), c.head_dim, c.head_dim, "f16") and hasattr(api.get_pool(), "raw")):
        return False
    return all(_layer_ok(model, state, il) for il in range(c.n_layer))


class Step35Plan(PlanBase):
    def __init__(self, model, state):
        c = model.cfg
        self._setup(model, state, c.n_layer)
        pool, run, ctx = self._pool, self._run, self._ctx
        cpu = detect()
        E, D, n = c.n_embd, c.head_dim, c.n_layer
        hq, hkv = max(c.n_head[:n]), max(c.n_head_kv[:n])
        n_ff = max([lay.ffn_gate.shape[0] for lay in model.layers if lay.ffn_gate is not None] or [16])
        self.buf = buf = {name: np.zeros(size, np.float32) for name, size in
                          (("x", E), ("h", E), ("q", hq * D), ("k", hkv * D), ("v", hkv * D), ("g", padded(hq)),
                           ("att", hq * D), ("o", E), ("f_gate", n_ff), ("f_up", n_ff), ("f_act", n_ff),
                           ("down", E), ("mo", E), ("cos", c.n_rot_full // 2), ("sin", c.n_rot_full // 2),
                           ("cos_swa", c.n_rot_swa // 2), ("sin_swa", c.n_rot_swa // 2))}
        ptr = {k: v.ctypes.data for k, v in buf.items()}
        self._rope = {False: (c.n_rot_full, c.freq_base, c.freq_scale, model.rope_freqs),
                      True: (c.n_rot_swa, c.freq_base_swa, 1.0, None)}
        self._qpos = np.zeros(1, np.int64)
        self._kbeg = {False: np.zeros(1, np.int64), True: np.zeros(1, np.int64)}
        attn_fn = _addr(attention_kernel(D, D, True, "f16"))
        lin_one = _addr(tiles()["linear_one"])
        self.P = np.zeros((n, len(SLOTS)), np.int64)
        self.AP = np.zeros((n, ka.N_PARAMS), np.int64)
        self._keep: list = []
        self._blocks: list = []              # linear_one blocks (kept alive; the head's is the last)
        self._moe: list = []                 # the MoE layers' jit.moe blocks
        self._jobs = jobs = Jobs(pool)
        self._kbase = np.array([state.arrays[f"k.{il}"].ctypes.data for il in range(n)], np.int64)
        self._vbase = np.array([state.arrays[f"v.{il}"].ctypes.data for il in range(n)], np.int64)
        self._ring = np.array([state.arrays[f"k.{il}"].shape[0] for il in range(n)], np.int64)
        self._row_bytes = np.array([ka.KV_BYTES["f16"] * c.n_head_kv[il] * D for il in range(n)], np.int64)
        for il, lay in enumerate(model.layers):
            swa, shape = c.is_swa[il], layer_shape(model, state, il)
            p, ap = self.P[il], self.AP[il]
            fn = jc.kernel(("step35_layer", shape), lambda s=shape: step35_layer_ir(s, cpu),
                           {"step35_layer": ONE_PROTO}, cpu)["step35_layer"]
            self._keep.append(fn)
            p[S["layer"]] = _addr(fn)
            ap[ka.P_Q], ap[ka.P_K], ap[ka.P_V] = ptr["q"], self._kbase[il], self._vbase[il]
            ap[ka.P_QPOS], ap[ka.P_KBEG] = self._qpos.ctypes.data, self._kbeg[swa].ctypes.data
            ap[ka.P_R], ap[ka.P_HQ], ap[ka.P_HKV] = self._ring[il], c.n_head[il], c.n_head_kv[il]
            ap[ka.P_SCALE:ka.P_SCALE + 1].view(np.float32)[0] = np.float32(1.0 / np.sqrt(D))
            p[S["job_qkv"]] = jobs.rows([(op_for(lay.attn_q), ptr["q"]), (op_for(lay.attn_k), ptr["k"]),
                                         (op_for(lay.attn_v), ptr["v"]), (op_for(lay.attn_gate), ptr["g"])], ptr["h"])
            p[S["lo_o"]] = self._block(op_for(lay.attn_output), ptr["att"], ptr["o"])
            if lay.ffn_gate_inp is None:
                p[S["job_ffn"]] = jobs.rows([(op_for(lay.ffn_gate), ptr["f_gate"]), (op_for(lay.ffn_up), ptr["f_up"])],
                                            ptr["h"])
                p[S["lo_down"]] = self._block(op_for(lay.ffn_down), ptr["f_act"], ptr["down"])
                p[S["down"]] = ptr["down"]
            else:
                block = jm.MoeBlock(moe_shape(model, il), lay.ffn_gate_inp, lay.ffn_gate_exps, lay.ffn_up_exps,
                                    lay.ffn_down_exps, lay.exp_probs_b, shared_expert(lay), h=ptr["h"], out=ptr["mo"])
                self._moe.append(block)
                p[S["moe_fn"]], p[S["moe_p"]], p[S["down"]] = block.fn_addr, block.M, ptr["mo"]
            for slot, vec in (("attn_norm", lay.attn_norm), ("q_norm", lay.attn_q_norm), ("k_norm", lay.attn_k_norm),
                              ("ffn_norm", lay.ffn_norm)):
                p[S[slot]] = vec.ctypes.data
            for k in ("x", "h", "q", "k", "v", "g", "att", "o", "f_gate", "f_up", "f_act"):
                p[S[k]] = ptr[k]
            p[S["cos"]], p[S["sin"]] = (ptr["cos_swa"], ptr["sin_swa"]) if swa else (ptr["cos"], ptr["sin"])
            p[S["attn_p"]], p[S["attn_fn"]], p[S["run"]], p[S["ctx"]] = ap.ctypes.data, attn_fn, run, ctx
            p[S["attn_chunk"]] = max(1, -(-c.n_head[il] // pool.n))
            p[S["linear_one"]], p[S["linear_group"]] = lin_one, jobs.linear_group
        self._fn = token_fn("step35_layers", len(SLOTS), E, c.eps)
        self._swa = [il for il in range(n) if c.is_swa[il]]
        self.head = Head(self, model.output, model.output_norm, E)

    def step(self, x: np.ndarray, pos: int, st) -> np.ndarray:
        """x [n_embd] (the token's embedding) through every layer of state st (the plan's, see
        refs) at position pos -> the logits [n_vocab] (an array no earlier caller still holds),
        or the last layer's output [n_embd] if the plan has no head."""
        return self._ring_step(x, pos, st, self.model.cfg.n_swa, S["krow"], S["vrow"])
