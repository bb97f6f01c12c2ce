"""Step-3.5 (`general.architecture = "step35"`): sliding-window / full attention with a
per-head sigmoid output gate, and a MoE FFN (sigmoid router, shared expert, SwiGLU clamp).

The math is llama.cpp's (src/models/step35.cpp), as written down in
shared/docs/kimi-linear-and-step35.md section 2. Per layer il < block_count - nextn:
    x  = RMSNorm(h, attn_norm)
    q, k, v = W_q x, W_k x, W_v x;  q, k = RMSNorm per head (attn_q_norm, attn_k_norm)
    q, k = RoPE-NEOX  (full layers: first key_length/2 dims, freq_base, rope_freqs;
                       sliding layers: all dims, freq_base_swa, no factors)
    o  = softmax(q k^T / sqrt(head_dim) + mask) v   (sliding: 0 <= p_q - p_k < n_swa)
    h' = h + W_o (o * sigmoid(W_gate x) per head)
    h  = h' + FFN(RMSNorm(h', ffn_norm))   (dense SwiGLU, or routed experts + shared expert)
logits = W_out RMSNorm(h, output_norm).  Every norm weight in the GGUF already includes the +1.
Decode: with the JIT and an F16 cache, one token runs every layer and the head in one native call
(jit/plan_step35.py, the same bits as the per-op forward below).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import interrupt, kv_cache, ops
from ..errors import TokenizerError, UnsupportedModelError
from ..gguf_file import Tensor
from ..kv_cache import check_kv_type
from . import base, moe
from .base import KV, RING, State

RING_SLACK = 64         # extra ring slots beyond the window, so short rewinds keep the window
Q_BLOCK = 256           # queries attended at once, at most ...
SCORE_BUDGET = 1 << 22  # ... and at most this many scores [heads, queries, keys] per block
USE_PLAN = True         # decode a token through jit.plan_step35 when it applies (tests compare with False)


# ---------------------------------------------------------------------------------- config
def _per_layer(value, n: int, what: str, cast=float) -> list:
    """A u32/f32 key or a per-layer array -> list of n values."""
    if np.ndim(value) == 0:
        return [cast(value)] * n
    arr = list(np.asarray(value).reshape(-1))
    if len(arr) < n:
        raise UnsupportedModelError(f"step35: {what} has {len(arr)} entries for {n} layers; "
                                    "the file is inconsistent, re-convert it")
    return [cast(a) for a in arr[:n]]


@dataclass
class Config:
    n_embd: int
    n_layer: int                 # trunk layers run (block_count - nextn_predict_layers)
    n_head: list[int]            # per layer (full and sliding layers differ)
    n_head_kv: list[int]
    head_dim: int                # key_length
    head_dim_v: int              # value_length
    is_swa: list[bool]           # per layer: sliding-window attention
    n_swa: int                   # window, current token included
    n_rot_full: int              # rotated dims on full layers (rope.dimension_count / 2)
    n_rot_swa: int               # rotated dims on sliding layers (dimension_count_swa or un-halved)
    freq_base: float
    freq_base_swa: float
    freq_scale: float            # full layers only (1 / rope.scaling.factor); sliding layers use 1
    eps: float
    n_expert: int
    n_expert_used: int
    gating_func: int
    weights_norm: bool
    weights_scale: float
    clamp_exp: list[float]       # SwiGLU clamp of routed experts per layer (<= 1e-6: off)
    clamp_shexp: list[float]     # ... of the shared expert and of dense FFN layers

    @classmethod
    def from_model(cls, m: base.Model) -> "Config":
        n_all = int(m.meta("block_count"))
        n_layer = n_all - int(m.meta("nextn_predict_layers", 0))
        head_dim = int(m.meta("attention.key_length"))
        head_dim_v = int(m.meta("attention.value_length", head_dim))
        for k, full in (("attention.key_length_swa", head_dim), ("attention.value_length_swa", head_dim_v)):
            if int(m.meta(k, full)) != full:
                raise UnsupportedModelError(f"step35: {k} differs from the full layers' head size; "
                                            "llama.cpp cannot run such a file either")
        pattern = m.meta("attention.sliding_window_pattern")
        if np.ndim(pattern) == 0:
            raise UnsupportedModelError("step35: attention.sliding_window_pattern must be a "
                                        "per-layer array; re-convert the model")
        n_rot = int(m.meta("rope.dimension_count", head_dim))
        scaling = str(m.meta("rope.scaling.type", "linear"))
        if scaling not in ("none", "linear"):
            raise UnsupportedModelError(f"step35: rope scaling {scaling!r} is not supported "
                                        "(only linear scaling and rope_freqs factors)")
        factor = float(m.meta("rope.scaling.factor", m.meta("rope.scale_linear", 0.0)))
        gating = moe.check_gating(int(m.meta("expert_gating_func", 0)) or moe.GATING_SIGMOID, "step35")
        return cls(
            n_embd=int(m.meta("embedding_length")),
            n_layer=n_layer,
            n_head=_per_layer(m.meta("attention.head_count"), n_all, "head_count", int),
            n_head_kv=_per_layer(m.meta("attention.head_count_kv"), n_all, "head_count_kv", int),
            head_dim=head_dim,
            head_dim_v=head_dim_v,
            is_swa=_per_layer(pattern, n_all, "sliding_window_pattern", bool),
            n_swa=int(m.meta("attention.sliding_window")),
            n_rot_full=n_rot // 2,
            n_rot_swa=int(m.meta("rope.dimension_count_swa", n_rot)),
            freq_base=float(m.meta("rope.freq_base", 10000.0)),
            freq_base_swa=float(m.meta("rope.freq_base_swa", 10000.0)),
            freq_scale=1.0 if factor == 0.0 else 1.0 / factor,
            eps=float(m.meta("attention.layer_norm_rms_epsilon")),
            n_expert=int(m.meta("expert_count", 0)),
            n_expert_used=int(m.meta("expert_used_count", 0)),
            gating_func=gating,
            weights_norm=bool(m.meta("expert_weights_norm", False)),
            weights_scale=float(m.meta("expert_weights_scale", 0.0)),
            clamp_exp=_per_layer(m.meta("swiglu_clamp_exp", 0.0), n_all, "swiglu_clamp_exp"),
            clamp_shexp=_per_layer(m.meta("swiglu_clamp_shexp", 0.0), n_all, "swiglu_clamp_shexp"),
        )


# --------------------------------------------------------------------------------- weights
class Layer:
    """blk.N.* tensors; matrices stay Tensor views, small vectors are float32 arrays."""

    def __init__(self, m: base.Model, il: int):
        def t(name: str, required: bool = True) -> Tensor | None:
            return m.tensor(f"blk.{il}.{name}", required)

        def vec(name: str, required: bool = True) -> np.ndarray | None:
            w = t(name, required)
            return None if w is None else ops.vector(w)

        self.attn_norm = vec("attn_norm.weight")                # [n_embd]
        self.attn_qkv = t("attn_qkv.weight", False)             # [q | k | v, n_embd] or None
        self.attn_q = None if self.attn_qkv else t("attn_q.weight")   # [Hq*d, n_embd]
        self.attn_k = None if self.attn_qkv else t("attn_k.weight")   # [Hkv*d, n_embd]
        self.attn_v = None if self.attn_qkv else t("attn_v.weight")   # [Hkv*dv, n_embd]
        self.attn_qkv_b = vec("attn_qkv.bias", False)
        self.attn_q_b, self.attn_k_b, self.attn_v_b = (vec(f"attn_{x}.bias", False) for x in "qkv")
        self.attn_q_norm = vec("attn_q_norm.weight", False)     # [d]
        self.attn_k_norm = vec("attn_k_norm.weight", False)     # [d]
        self.attn_gate = t("attn_gate.weight", False)           # [Hq, n_embd]
        self.attn_output = t("attn_output.weight")              # [n_embd, Hq*dv]
        self.ffn_norm = vec("ffn_norm.weight")
        self.ffn_gate_inp = t("ffn_gate_inp.weight", False)     # [n_expert, n_embd]; None: dense
        moe = self.ffn_gate_inp is not None
        self.ffn_gate = None if moe else t("ffn_gate.weight")   # [n_ff, n_embd]
        self.ffn_up = None if moe else t("ffn_up.weight")       # [n_ff, n_embd]
        self.ffn_down = None if moe else t("ffn_down.weight")   # [n_embd, n_ff]
        self.ffn_gate_exps = t("ffn_gate_exps.weight") if moe else None  # [n_exp, n_ff_exp, n_embd]
        self.ffn_up_exps = t("ffn_up_exps.weight") if moe else None      # [n_exp, n_ff_exp, n_embd]
        self.ffn_down_exps = t("ffn_down_exps.weight") if moe else None  # [n_exp, n_embd, n_ff_exp]
        self.exp_probs_b = vec("exp_probs_b.bias", False) if moe else None  # [n_exp] selection bias
        self.ffn_gate_shexp = t("ffn_gate_shexp.weight", False)  # [n_ff_sh, n_embd]
        self.ffn_up_shexp = t("ffn_up_shexp.weight", False)
        self.ffn_down_shexp = t("ffn_down_shexp.weight", False)  # [n_embd, n_ff_sh]

    def check(self, cfg: "Config", il: int) -> None:
        """Every present tensor has the shape the metadata implies (numpy order)."""
        E, d, dv, hq, hkv = cfg.n_embd, cfg.head_dim, cfg.head_dim_v, cfg.n_head[il], cfg.n_head_kv[il]
        ff = (self.ffn_gate or self.ffn_gate_exps or self.ffn_gate_shexp)
        n_ff = None if ff is None else ff.shape[-2]
        n_sh = None if self.ffn_gate_shexp is None else self.ffn_gate_shexp.shape[0]
        want = {"attn_norm": (E,), "ffn_norm": (E,), "attn_qkv": ((hq + hkv) * d + hkv * dv, E),
                "attn_q": (hq * d, E), "attn_k": (hkv * d, E), "attn_v": (hkv * dv, E),
                "attn_q_norm": (d,), "attn_k_norm": (d,), "attn_gate": (hq, E), "attn_output": (E, hq * dv),
                "ffn_gate": (n_ff, E), "ffn_up": (n_ff, E), "ffn_down": (E, n_ff),
                "ffn_gate_inp": (cfg.n_expert, E), "exp_probs_b": (cfg.n_expert,),
                "ffn_gate_exps": (cfg.n_expert, n_ff, E), "ffn_up_exps": (cfg.n_expert, n_ff, E),
                "ffn_down_exps": (cfg.n_expert, E, n_ff),
                "ffn_gate_shexp": (n_sh, E), "ffn_up_shexp": (n_sh, E), "ffn_down_shexp": (E, n_sh)}
        for name, shape in want.items():
            w = getattr(self, name)
            if w is not None and tuple(w.shape) != shape:
                raise UnsupportedModelError(f"step35: blk.{il}.{name} has shape {tuple(w.shape)}, the "
                                            f"metadata implies {shape}; the file is inconsistent")
        if len({x is None for x in (self.ffn_gate_shexp, self.ffn_up_shexp, self.ffn_down_shexp)}) > 1:
            raise UnsupportedModelError(f"step35: blk.{il} has only part of the shared expert")


# ------------------------------------------------------------------------------- helpers
def attend(q, k, v, q_pos, k_pos, scale, window=None, round_f16=False) -> np.ndarray:
    """ops.attention over query blocks, each against only the keys it can see.

    q: [T, Hq, d]; k: [S, Hkv, d]; v: [S, Hkv, dv] -> [T, Hq, dv]
    """
    out = np.empty(q.shape[:2] + (v.shape[-1],), np.float32)
    n_keys = len(k) if window is None else min(len(k), Q_BLOCK + window)   # keys a block sees
    blk = max(1, min(Q_BLOCK, SCORE_BUDGET // (q.shape[1] * max(1, n_keys))))
    for t0 in range(0, len(q), blk):
        qp = q_pos[t0:t0 + blk]
        lo = -np.inf if window is None else qp.min() - window + 1
        sel = (k_pos <= qp.max()) & (k_pos >= lo)
        out[t0:t0 + blk] = ops.attention(q[t0:t0 + blk], k[sel], v[sel], qp, k_pos[sel],
                                         scale, window, round_f16)
    return out


# ----------------------------------------------------------------------------------- model
class Model(base.Model):
    arch = ("step35",)

    def __init__(self, gguf):
        super().__init__(gguf)
        self.cfg = cfg = Config.from_model(self)
        self.token_embd = self.tensor("token_embd.weight")         # [n_vocab, n_embd]
        self.output_norm = ops.vector(self.tensor("output_norm.weight"))
        self.output = self.tensor("output.weight", False) or self.token_embd  # [n_vocab, n_embd]
        rf = self.tensor("rope_freqs.weight", False)                # [n_rot_max/2] divisors
        self.rope_freqs = None if rf is None else ops.vector(rf).astype(np.float64)
        self.layers = [Layer(self, il) for il in range(cfg.n_layer)]
        if self.rope_freqs is not None and len(self.rope_freqs) < cfg.n_rot_full // 2:
            raise UnsupportedModelError("step35: rope_freqs is shorter than the rotated dimensions")
        for il, L in enumerate(self.layers):
            L.check(cfg, il)
            if L.ffn_gate_inp is not None and (cfg.n_expert_used < 1 or cfg.n_expert < cfg.n_expert_used):
                raise UnsupportedModelError(f"step35: layer {il} is MoE but expert_count / "
                                            "expert_used_count are missing or inconsistent")

    # --- state ----------------------------------------------------------------------------
    def ring_size(self, n_ctx: int, slack: int = RING_SLACK) -> int:
        return max(1, min(self.cfg.n_swa + slack, n_ctx))

    def new_state(self, n_ctx: int | None = None, kv_type: str | None = None,
                  ring_slack: int = RING_SLACK) -> State:
        """Full layers: k.N / v.N [n_ctx, Hkv, d] indexed by position (KV).
        kv_type (default: the model's): "f16" float16 caches (llama.cpp's default; attention
        rounds as its CPU path) or "f32" float32 caches (exact float32 attention).
        Sliding layers: k.N / v.N [n_swa + slack, Hkv, d] rings, slot = position % size,
        with each slot's position in pos.k.N / pos.v.N (-1 = empty); the slack beyond the
        window is how far the state can be rewound."""
        cfg = self.cfg
        n_ctx = int(n_ctx or self.n_ctx_train)
        kv_type = check_kv_type(kv_type or self.kv_type)
        st = State(n_ctx, kv_type=kv_type)
        kv_dtype = kv_cache.kv_dtype(kv_type)
        for il in range(cfg.n_layer):
            hkv = cfg.n_head_kv[il]
            if cfg.is_swa[il]:
                r = self.ring_size(n_ctx, ring_slack)
                st.add(f"k.{il}", np.zeros((r, hkv, cfg.head_dim), kv_dtype), RING, window=cfg.n_swa)
                st.add(f"v.{il}", np.zeros((r, hkv, cfg.head_dim_v), kv_dtype), RING, window=cfg.n_swa)
            else:
                st.add(f"k.{il}", np.zeros((n_ctx, hkv, cfg.head_dim), kv_dtype), KV)
                st.add(f"v.{il}", np.zeros((n_ctx, hkv, cfg.head_dim_v), kv_dtype), KV)
        return st

    # --- forward --------------------------------------------------------------------------
    def forward(self, tokens: np.ndarray, state: State, last_only: bool = False,
                trace: dict | None = None) -> np.ndarray:
        """tokens [T] at positions n_past.. -> logits [T, n_vocab] ([1, n_vocab] with last_only).

        trace (debugging): receives the residual stream after each layer's mixer and FFN,
        as blk_N_after_mixer / blk_N_after_ffn [T, n_embd].
        """
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        T, n_vocab = len(tokens), self.n_vocab
        if T and (tokens.min() < 0 or tokens.max() >= n_vocab):
            raise TokenizerError(f"token id out of range [0, {n_vocab}) in the input")
        state.check_room(T)
        if T == 0:
            return np.zeros((0, n_vocab), np.float32)
        pos = np.arange(state.n_past, state.n_past + T, dtype=np.int64)   # [T]
        h = ops.embed(self.token_embd, tokens)                             # h: [T, n_embd]
        plan = self.decode_plan(state) if T == 1 and trace is None else None
        if plan is not None:                 # every layer (and the head) in one native call, the same bits
            out = plan.step(h[0], int(pos[0]), state)[None]
            state.n_past += 1
            if plan.head.H is not None:
                return out                                                 # [1, n_vocab]
            return ops.linear(self.output, ops.rms_norm(out, self.output_norm, self.cfg.eps))
        for il, L in enumerate(self.layers):
            h = h + self.attention(il, L, ops.rms_norm(h, L.attn_norm, self.cfg.eps), pos, state)
            if trace is not None:
                trace[f"blk_{il}_after_mixer"] = h.copy()
            h = h + self.ffn(il, L, ops.rms_norm(h, L.ffn_norm, self.cfg.eps))
            if trace is not None:
                trace[f"blk_{il}_after_ffn"] = h.copy()
            interrupt.layer_done(il, len(self.layers))
        state.n_past += T
        if last_only:
            h = h[-1:]
        return ops.linear(self.output, ops.rms_norm(h, self.output_norm, self.cfg.eps))  # [T, n_vocab]

    def decode_plan(self, state: State):
        """jit.plan_step35.Step35Plan for this state when the JIT runs this model (cached), else None."""
        if not (USE_PLAN and ops.SINGLE_QUERY_DECODE_ORDER):      # the plan sums in decode order
            return None
        return base.cached_plan(self, state, "plan_step35", "Step35Plan")

    def qkv(self, L: Layer, x: np.ndarray, hq: int, hkv: int):
        """x: [T, n_embd] -> q [T, Hq, d], k [T, Hkv, d], v [T, Hkv, dv], and the head gate's
        logits [T, Hq] (None without attn_gate); one token's projections run as one pool job."""
        d, dv, T = self.cfg.head_dim, self.cfg.head_dim_v, len(x)
        gate = None
        if T == 1 and L.attn_qkv is None:
            ws = [L.attn_q, L.attn_k, L.attn_v] + ([L.attn_gate] if L.attn_gate is not None else [])
            q, k, v, *g = (p[None] for p in ops.linear_parts(ws, x, [0] * len(ws)))
            gate = g[0] if g else None
        elif L.attn_qkv is not None:
            qkv = ops.linear(L.attn_qkv, x)                           # [T, Hq*d + Hkv*d + Hkv*dv]
            if L.attn_qkv_b is not None:
                qkv = qkv + L.attn_qkv_b
            q, k, v = np.split(qkv, [hq * d, hq * d + hkv * d], axis=1)
        else:
            q, k, v = (ops.linear(w, x) for w in (L.attn_q, L.attn_k, L.attn_v))
        if L.attn_q_b is not None:   # separate biases (also allowed next to a fused matrix)
            q, k, v = q + L.attn_q_b, k + L.attn_k_b, v + L.attn_v_b
        if L.attn_gate is not None and gate is None:
            gate = ops.linear(L.attn_gate, x)
        return q.reshape(T, hq, d), k.reshape(T, hkv, d), v.reshape(T, hkv, dv), gate

    def attention(self, il: int, L: Layer, x: np.ndarray, pos: np.ndarray, state: State) -> np.ndarray:
        """x: [T, n_embd] at positions pos [T] -> [T, n_embd]; writes this layer's cache."""
        cfg = self.cfg
        hq, hkv, swa = cfg.n_head[il], cfg.n_head_kv[il], cfg.is_swa[il]
        q, k, v, gate = self.qkv(L, x, hq, hkv)
        if L.attn_q_norm is not None:
            q = ops.rms_norm(q, L.attn_q_norm, cfg.eps)                # per head, over d
        if L.attn_k_norm is not None:
            k = ops.rms_norm(k, L.attn_k_norm, cfg.eps)
        if swa:
            rope = dict(n_dims=cfg.n_rot_swa, base=cfg.freq_base_swa)
        else:
            rope = dict(n_dims=cfg.n_rot_full, base=cfg.freq_base, freq_scale=cfg.freq_scale,
                        freq_factors=self.rope_freqs)
        q = ops.rope_neox(q, pos, **rope)
        k = ops.rope_neox(k, pos, **rope)
        scale = 1.0 / np.sqrt(cfg.head_dim)
        if state.kv_type == "f16":
            # K and V are stored as half (float16 caches), as llama.cpp does; q and the
            # probabilities are rounded to half too (llama.cpp's CPU path, ops.cached_attention)
            if swa:
                o = self.ring_attention(state, il, q, k, v, pos, scale)
            else:
                kc, vc = state.arrays[f"k.{il}"], state.arrays[f"v.{il}"]    # [n_ctx, Hkv, d]
                kc[pos[0]:pos[-1] + 1], vc[pos[0]:pos[-1] + 1] = k, v
                o = ops.cached_attention(q, kc, vc, pos, scale)              # o: [T, Hq, dv]
        else:
            o = self.exact_attention(state, il, q, k, v, pos, scale)
        if gate is not None:
            o = o * ops.sigmoid_ggml(gate)[:, :, None]                           # gate: [T, Hq, 1]
        return ops.linear(L.attn_output, o.reshape(len(x), hq * cfg.head_dim_v))

    def exact_attention(self, state: State, il: int, q, k, v, pos, scale) -> np.ndarray:
        """Plain float32 attention over float32 caches (no half rounding) -> [T, Hq, dv]."""
        if self.cfg.is_swa[il]:
            k_all, v_all, k_pos = self.ring_update(state, il, k, v, pos)
        else:
            kc, vc = state.arrays[f"k.{il}"], state.arrays[f"v.{il}"]
            kc[pos[0]:pos[-1] + 1], vc[pos[0]:pos[-1] + 1] = k, v
            n = pos[-1] + 1
            k_all, v_all, k_pos = kc[:n], vc[:n], np.arange(n)
        return attend(q, k_all, v_all, pos, k_pos, scale, self.cfg.n_swa if self.cfg.is_swa[il] else None)

    def ring_attention(self, state: State, il: int, q, k, v, pos, scale) -> np.ndarray:
        """Sliding-window attention through the ring (position p in slot p % R): the batch's keys
        are written in pieces of at most R - n_swa + 1 queries, so no piece overwrites a key its
        own queries still see (as gemma3's). q [T, Hq, d], k [T, Hkv, d], v [T, Hkv, dv]."""
        n_swa = self.cfg.n_swa
        kr, vr = state.arrays[f"k.{il}"], state.arrays[f"v.{il}"]           # [R, Hkv, d]
        kp, vp = state.arrays[f"pos.k.{il}"], state.arrays[f"pos.v.{il}"]   # [R] (-1: empty)
        R, T = kr.shape[0], len(pos)
        piece = T if pos[-1] < R else max(1, R - n_swa + 1)
        out = np.empty(q.shape[:2] + (vr.shape[2],), np.float32)
        for s in range(0, T, piece):
            sl = slice(s, s + piece)
            slots = pos[sl] % R
            kr[slots], vr[slots] = k[sl], v[sl]
            kp[slots] = vp[slots] = pos[sl]
            out[sl] = ops.cached_attention(q[sl], kr, vr, pos[sl], scale, window=n_swa, single=T == 1)
        return out

    def ring_update(self, state: State, il: int, k, v, pos):
        """Keys the new tokens see on a sliding layer, then store the newest ones in the ring.

        k: [T, Hkv, d], v: [T, Hkv, dv] -> (k [S, Hkv, d], v [S, Hkv, dv], positions [S]) with
        S = ring entries before pos[0] followed by the T new tokens.
        """
        kr, vr = state.arrays[f"k.{il}"], state.arrays[f"v.{il}"]
        pk, pv = state.arrays[f"pos.k.{il}"], state.arrays[f"pos.v.{il}"]
        old = np.flatnonzero((pk >= 0) & (pk < pos[0]) & (pk > pos[0] - self.cfg.n_swa))
        k_all = np.concatenate([kr[old], k])
        v_all = np.concatenate([vr[old], v])
        k_pos = np.concatenate([pk[old], pos])
        R = len(pk)
        keep = slice(max(0, len(pos) - R), None)           # the newest R tokens
        slots = pos[keep] % R
        kr[slots], vr[slots] = k[keep], v[keep]
        pk[slots] = pv[slots] = pos[keep]
        return k_all, v_all, k_pos

    # --- feed-forward ---------------------------------------------------------------------
    def ffn(self, il: int, L: Layer, y: np.ndarray) -> np.ndarray:
        """y: [T, n_embd] -> [T, n_embd]."""
        cfg = self.cfg
        if L.ffn_gate_inp is None:   # dense; build_ffn applies the shared-expert clamp here too
            return moe.ffn(y, L.ffn_gate, L.ffn_up, L.ffn_down, cfg.clamp_shexp[il])
        return moe.moe_layer(y, L.ffn_gate_inp, L.ffn_gate_exps, L.ffn_up_exps, L.ffn_down_exps,
                             cfg.n_expert_used, cfg.gating_func, L.exp_probs_b, cfg.weights_norm,
                             cfg.weights_scale, cfg.clamp_exp[il], moe.shared_expert(L), cfg.clamp_shexp[il])
