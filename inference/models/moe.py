"""Mixture-of-experts FFN as llama.cpp's build_moe_ffn computes it (shared by kimi-linear, step35).

    p   = gate(W_r y)                      gate: softmax | sigmoid | raw logits | sqrt(softplus)
    sel = top_k(p + exp_probs_b)           the selection bias picks experts, never weights them
    w   = p[sel]                           (softmax_weight: softmax over the k chosen logits)
    w  /= max(sum w, 6.1035e-5)            if norm_w (the floor is the smallest F16 normal)
    w  *= scale                            only if scale is not 0 and not 1
    out = sum_e w_e * W_down_e(swiglu(W_gate_e y, W_up_e y))    (+ shared expert, added by caller)

`swiglu` takes an optional clamp `limit` (Step-3.5's swiglu_clamp_*): up is clipped to
[-limit, limit] and silu(gate) is capped above at limit; limit <= 1e-6 means no clamp. silu and
the sigmoid router use ggml's vector exp (ggml_v_expf), the sum of the weights is ggml's
(sequential, in double): the float32 operations a native decode step repeats bit for bit.
Expert weights are used as stored: each expert matrix is taken with ops.expert and applied once
per call to all the tokens routed to it.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import UnsupportedModelError
from ..gguf_file import Tensor

# llama_expert_gating_func_type (llama-hparams.h)
GATING_SOFTMAX = 1
GATING_SIGMOID = 2
GATING_SOFTMAX_WEIGHT = 3
GATING_SQRT_SOFTPLUS = 4
GATING_NAMES = {1: "softmax", 2: "sigmoid", 3: "softmax_weight", 4: "sqrt_softplus"}

NORM_FLOOR = np.float32(6.103515625e-5)
CLAMP_EPS = 1e-6
NATIVE_DECODE = True    # one token's MoE layer as one native call (jit.moe) where it applies; tests compare


def check_gating(gating: int, where: str) -> int:
    if int(gating) not in GATING_NAMES:
        raise UnsupportedModelError(
            f"{where}: expert_gating_func {gating} is not one of {GATING_NAMES}; "
            "this GGUF uses a router the engine does not know")
    return int(gating)


def route(logits: np.ndarray, n_used: int, gating: int, bias: np.ndarray | None = None,
          norm_w: bool = True, scale: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Router logits [T, n_expert] -> (selected experts [T, k] int64, weights [T, k] float32)."""
    logits = logits.astype(np.float32)
    if gating == GATING_SOFTMAX:
        probs = ops.softmax(logits, axis=-1)
    elif gating == GATING_SIGMOID:
        probs = ops.sigmoid_ggml(logits)
    elif gating == GATING_SOFTMAX_WEIGHT:
        probs = logits
    elif gating == GATING_SQRT_SOFTPLUS:
        probs = np.sqrt(ops.softplus(logits))
    else:
        raise UnsupportedModelError(f"unknown expert gating function {gating}")
    selection = probs + bias[None, :] if bias is not None else probs       # [T, n_expert]
    sel = np.argsort(-selection, axis=-1, kind="stable")[:, :n_used]       # [T, k]
    w = np.take_along_axis(probs, sel, axis=-1)                            # [T, k]
    if gating == GATING_SOFTMAX_WEIGHT:
        w = ops.softmax(w, axis=-1)
    if norm_w:   # ggml_vec_sum_f32: a sequential sum in double, rounded to float
        total = np.cumsum(w, axis=-1, dtype=np.float64)[:, -1:].astype(np.float32)
        w = w / np.maximum(total, NORM_FLOOR)
    if scale != 0.0 and scale != 1.0:
        w = w * np.float32(scale)
    return sel, w.astype(np.float32)


def swiglu(gate: np.ndarray, up: np.ndarray, limit: float = 0.0) -> np.ndarray:
    """silu(gate) * up, with Step-3.5's clamp when limit > 1e-6. Unclamped it is llama.cpp's
    ggml_swiglu_split (ggml_vec_swiglu_f32, its own exp), on the JIT kernel when selected."""
    if limit <= CLAMP_EPS:
        return ops.swiglu_ggml(np.asarray(gate, np.float32), np.asarray(up, np.float32))
    act = ops.silu_ggml(np.asarray(gate, np.float32))       # ggml_silu, then the clamps
    up = np.clip(up, -limit, limit)
    act = np.minimum(act, np.float32(limit))
    return act * up


def ffn(y: np.ndarray, gate: Tensor, up: Tensor, down: Tensor, limit: float = 0.0) -> np.ndarray:
    """Dense SwiGLU MLP (also the shared expert). y: [T, E] -> [T, E]; one token's gate and up
    run as one pool job (ops.linear_parts: the same bits)."""
    if y.shape[0] == 1 and gate.shape == up.shape:
        g, u = ops.linear_parts([gate, up], y, [0, 0])
        return ops.linear(down, swiglu(g[None], u[None], limit))
    return ops.linear(down, swiglu(ops.linear(gate, y), ops.linear(up, y), limit))


def experts(y: np.ndarray, sel: np.ndarray, w: np.ndarray, gate_exps: Tensor, up_exps: Tensor,
            down_exps: Tensor, limit: float = 0.0) -> np.ndarray:
    """sum_k w[t,k] * expert_{sel[t,k]}(y[t]).  y: [T, E]; sel, w: [T, k] -> [T, E].

    Tokens are grouped by expert so each expert matrix is dequantized (slab-wise) once per call.
    """
    T, E = y.shape
    if T == 1:
        return _experts_one(y, sel[0], w[0], gate_exps, up_exps, down_exps, limit)
    out = np.zeros((T, E), np.float32)
    for e in np.unique(sel):
        rows, slots = np.nonzero(sel == e)                   # tokens routed to e, and their slot
        ye = y[rows]                                         # [n_e, E]
        h = swiglu(ops.linear(ops.expert(gate_exps, int(e)), ye),
                   ops.linear(ops.expert(up_exps, int(e)), ye), limit)   # [n_e, n_ff]
        ze = ops.linear(ops.expert(down_exps, int(e)), h)    # [n_e, E]
        out[rows] += ze * w[rows, slots][:, None]           # rows unique: a token picks e once
    return out


def _experts_one(y: np.ndarray, sel: np.ndarray, w: np.ndarray, gate_exps: Tensor, up_exps: Tensor,
                 down_exps: Tensor, limit: float) -> np.ndarray:
    """One token (decode): the k experts' gate and up as one job, then their downs as another.
    y: [1, E]; sel, w: [k] -> [1, E], summed in the order of np.unique(sel) as a batch does."""
    es = np.unique(sel)                                                     # [k] ascending
    slot = {int(e): i for i, e in enumerate(sel)}
    k = len(es)
    gu = ops.linear_each([ops.expert(gate_exps, int(e)) for e in es] + [ops.expert(up_exps, int(e)) for e in es],
                         y, [0] * (2 * k))                                  # [2k, n_ff]
    h = swiglu(gu[:k], gu[k:], limit)                                       # [k, n_ff]
    z = ops.linear_each([ops.expert(down_exps, int(e)) for e in es], h)     # [k, E]
    out = np.zeros((1, y.shape[1]), np.float32)
    for i, e in enumerate(es):
        out[0] += z[i] * w[slot[int(e)]]
    return out


def moe_ffn(y: np.ndarray, gate_inp: Tensor, gate_exps: Tensor, up_exps: Tensor, down_exps: Tensor,
            n_used: int, gating: int, exp_probs_b: np.ndarray | None = None, norm_w: bool = True,
            scale: float = 0.0, limit: float = 0.0) -> np.ndarray:
    """The routed part of the MoE FFN. y: [T, E] -> [T, E] (add the shared expert yourself)."""
    sel, w = route(ops.linear(gate_inp, y), n_used, gating, exp_probs_b, norm_w, scale)
    return experts(y, sel, w, gate_exps, up_exps, down_exps, limit)


def shared_expert(layer) -> tuple | None:
    """A layer's shared expert (ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp), or None."""
    if layer.ffn_gate_shexp is None:
        return None
    return layer.ffn_gate_shexp, layer.ffn_up_shexp, layer.ffn_down_shexp


def moe_layer(y: np.ndarray, gate_inp: Tensor, gate_exps: Tensor, up_exps: Tensor, down_exps: Tensor,
              n_used: int, gating: int, exp_probs_b: np.ndarray | None = None, norm_w: bool = True,
              scale: float = 0.0, limit: float = 0.0, shexp: tuple | None = None,
              limit_sh: float = 0.0) -> np.ndarray:
    """A whole MoE FFN: the routed experts plus the shared expert shexp = (gate, up, down), if any.
    y: [T, E] -> [T, E]. One token runs as one native call where the JIT has one (jit.moe, the
    same bits as the operations below)."""
    if y.shape[0] == 1 and gating == GATING_SIGMOID:
        block = _native_block(gate_inp, gate_exps, up_exps, down_exps, n_used, exp_probs_b, norm_w, scale, limit,
                              shexp, limit_sh)
        if block is not None:
            return block(y[0])[None]
    out = moe_ffn(y, gate_inp, gate_exps, up_exps, down_exps, n_used, gating, exp_probs_b, norm_w, scale, limit)
    if shexp is not None:
        out = out + ffn(y, *shexp, limit_sh)
    return out


def _native_block(gate_inp, gate_exps, up_exps, down_exps, n_used, bias, norm_w, scale, limit, shexp, limit_sh):
    """jit.moe's MoeBlock for this layer (kept on the router tensor) when the per-op decode would
    run on the JIT kernels, else None."""
    if not (NATIVE_DECODE and ops.ROUND_ACTIVATIONS):
        return None
    try:
        from jit import api
        from jit import moe as jm
    except ImportError:
        return None
    if not api.enabled() or not hasattr(api.get_pool(), "raw"):
        return None

    def make():
        shape = jm.shape_for(gate_inp, gate_exps, down_exps, n_used, bias, norm_w, scale, limit, shexp, limit_sh)
        return None if shape is None else jm.MoeBlock(shape, gate_inp, gate_exps, up_exps, down_exps, bias, shexp)

    return jm.block_for(gate_inp, make)
