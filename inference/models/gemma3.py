"""Gemma 3, as llama.cpp's src/models/gemma3.cpp computes it.

    x = token_embd[tokens] * sqrt(n_embd)
    per layer:  h = rms_norm(x) * attn_norm
                q, k, v = h @ attn_q.T, h @ attn_k.T, h @ attn_v.T           (per head: [head_dim])
                q, k = rms_norm(q_head) * attn_q_norm, rms_norm(k_head) * attn_k_norm
                q, k = rope_neox(q), rope_neox(k)    base rope.freq_base_swa on sliding layers,
                                                     rope.freq_base (and linear scaling) on full ones
                q = q * f_attention_scale             (1/sqrt(head_dim); 27B: 1/sqrt(n_embd/n_head))
                a = attention(q, K, V, scale 1, window n_swa on sliding layers) @ attn_output.T
                x = x + rms_norm(a) * post_attention_norm
                h = rms_norm(x) * ffn_norm
                f = (gelu_tanh(h @ ffn_gate.T) * (h @ ffn_up.T)) @ ffn_down.T
                x = x + rms_norm(f) * post_ffw_norm
    logits = (rms_norm(x) * output_norm) @ output.T         (output = token_embd when tied)
    logits = cap * tanh(logits / cap)                       (if final_logit_softcapping is set)

Layer il slides iff il % pattern < pattern - 1 (pattern: attention.sliding_window_pattern, 6), or
as the per-layer bool array of that key says. A sliding layer's query at p sees keys at p_k with
0 <= p - p_k < n_swa (llama.cpp's LLAMA_SWA_TYPE_STANDARD), so its cache is a ring buffer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import interrupt, ops
from ..errors import UnsupportedModelError
from ..gguf_file import Tensor
from .base import KV, RING, Model as BaseModel, State, cached_plan
from ..kv_cache import kv_dtype
from .llama import check_shape, check_tokens, rope_scaling

RING_SLACK = 256   # ring entries kept beyond the window, so rewinds of up to this many tokens work


@dataclass
class Config:
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int              # attention.key_length
    n_ff: int
    eps: float
    rope_dim: int
    rope_base: float           # full-attention layers
    rope_freq_scale: float     # full-attention layers (linear scaling)
    rope_base_swa: float       # sliding layers (rope.freq_base_swa, default 10000)
    n_swa: int                 # attention.sliding_window (0: no sliding layers)
    is_swa: tuple[bool, ...]   # per layer
    attn_scale: float
    final_softcap: float       # 0: none
    n_ctx_train: int


@dataclass
class Layer:
    """blk.N.<name>.weight for each field."""
    attn_norm: Tensor
    attn_q: Tensor
    attn_k: Tensor
    attn_v: Tensor
    attn_q_norm: Tensor
    attn_k_norm: Tensor
    attn_output: Tensor
    post_attention_norm: Tensor
    ffn_norm: Tensor
    ffn_gate: Tensor
    ffn_up: Tensor
    ffn_down: Tensor
    post_ffw_norm: Tensor


def swa_layers(model: BaseModel, n_layer: int, n_swa: int) -> tuple[bool, ...]:
    if n_swa <= 0:
        return (False,) * n_layer
    pattern = model.meta("attention.sliding_window_pattern", 6)
    if isinstance(pattern, (list, tuple, np.ndarray)):
        if len(pattern) != n_layer:
            raise UnsupportedModelError(
                f"{model.gguf.path}: sliding_window_pattern has {len(pattern)} entries for {n_layer} layers")
        return tuple(bool(b) for b in pattern)
    n = int(pattern)
    return tuple(n == 0 or il % n < n - 1 for il in range(n_layer))


USE_PLAN = True     # decode a token through jit.plan_gemma when it applies (tests compare with False)


class Model(BaseModel):
    arch = ("gemma3",)

    def __init__(self, gguf):
        super().__init__(gguf)
        n_embd = int(self.meta("embedding_length"))
        n_head = int(self.meta("attention.head_count"))
        n_layer = int(self.meta("block_count"))
        head_dim = int(self.meta("attention.key_length", n_embd // n_head))
        if int(self.meta("attention.value_length", head_dim)) != head_dim:
            raise UnsupportedModelError(f"{gguf.path}: key and value head sizes differ; not supported")
        n_swa = int(self.meta("attention.sliding_window", 0) or 0)
        self.token_embd = self.tensor("token_embd.weight")
        self.config = c = Config(
            n_vocab=self.token_embd.shape[0],
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            n_head_kv=int(self.meta("attention.head_count_kv", n_head)),
            head_dim=head_dim,
            n_ff=int(self.meta("feed_forward_length")),
            eps=float(self.meta("attention.layer_norm_rms_epsilon")),
            rope_dim=int(self.meta("rope.dimension_count", head_dim)),
            rope_base=float(self.meta("rope.freq_base", 10000.0)),
            rope_freq_scale=rope_scaling(self),
            rope_base_swa=float(self.meta("rope.freq_base_swa", 10000.0)),
            n_swa=n_swa,
            is_swa=swa_layers(self, n_layer, n_swa),
            # llama.cpp (after gemma_pytorch): 27B scales by n_embd/n_head, the others by head_dim
            attn_scale=1.0 / np.sqrt(n_embd // n_head if n_layer == 62 else head_dim),
            final_softcap=float(self.meta("final_logit_softcapping", 0.0) or 0.0),
            n_ctx_train=int(self.meta("context_length", 32768)),
        )
        if c.n_head % c.n_head_kv or c.rope_dim > c.head_dim:
            raise UnsupportedModelError(
                f"{gguf.path}: {c.n_head} query heads over {c.n_head_kv} KV heads, rope over "
                f"{c.rope_dim} of {c.head_dim} dims: not a layout this engine can run")
        check_shape(self, self.token_embd, (c.n_vocab, n_embd))
        self.output_norm = check_shape(self, self.tensor("output_norm.weight"), (n_embd,))
        self.output = check_shape(self, self.tensor("output.weight", required=False), (c.n_vocab, n_embd)) \
            or self.token_embd
        self.layers = [self._layer(il) for il in range(n_layer)]
        self._vec: dict[str, np.ndarray] = {}

    def _layer(self, il: int) -> Layer:
        c = self.config
        q_dim, kv_dim = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
        p = f"blk.{il}."

        def t(name, shape):
            return check_shape(self, self.tensor(p + name + ".weight"), shape)

        return Layer(
            attn_norm=t("attn_norm", (c.n_embd,)),
            attn_q=t("attn_q", (q_dim, c.n_embd)),
            attn_k=t("attn_k", (kv_dim, c.n_embd)),
            attn_v=t("attn_v", (kv_dim, c.n_embd)),
            attn_q_norm=t("attn_q_norm", (c.head_dim,)),
            attn_k_norm=t("attn_k_norm", (c.head_dim,)),
            attn_output=t("attn_output", (c.n_embd, q_dim)),
            post_attention_norm=t("post_attention_norm", (c.n_embd,)),
            ffn_norm=t("ffn_norm", (c.n_embd,)),
            ffn_gate=t("ffn_gate", (c.n_ff, c.n_embd)),
            ffn_up=t("ffn_up", (c.n_ff, c.n_embd)),
            ffn_down=t("ffn_down", (c.n_embd, c.n_ff)),
            post_ffw_norm=t("post_ffw_norm", (c.n_embd,)),
        )

    def vec(self, t: Tensor) -> np.ndarray:
        v = self._vec.get(t.name)
        if v is None:
            v = self._vec[t.name] = ops.vector(t)
        return v

    def norm(self, x: np.ndarray, w: Tensor) -> np.ndarray:
        return ops.rms_norm(x, self.vec(w), self.config.eps)

    @property
    def n_ctx_train(self) -> int:
        return self.config.n_ctx_train

    # --- the engine's interface ---------------------------------------------------------------
    def new_state(self, n_ctx: int | None = None, ring_slack: int = RING_SLACK) -> State:
        """Full layers: KV [n_ctx, Hkv, D]; sliding layers: RING [n_swa + slack, Hkv, D] with positions."""
        c = self.config
        n_ctx = int(n_ctx or c.n_ctx_train)
        s = State(n_ctx, kv_type=self.kv_type)
        dt = kv_dtype(self.kv_type)                          # float16 (F16 cache) or float32
        for il in range(c.n_layer):
            if c.is_swa[il]:
                n = min(n_ctx, c.n_swa + ring_slack)
                for name in (f"k.{il}", f"v.{il}"):
                    s.add(name, np.zeros((n, c.n_head_kv, c.head_dim), dt), RING, window=c.n_swa)
            else:
                for name in (f"k.{il}", f"v.{il}"):
                    s.add(name, np.zeros((n_ctx, c.n_head_kv, c.head_dim), dt), KV)
        return s

    def forward(self, tokens, state: State, last_only: bool = False) -> np.ndarray:
        c = self.config
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        T, p0 = len(tokens), state.n_past
        state.check_room(T)
        check_tokens(tokens, c.n_vocab)
        pos = np.arange(p0, p0 + T)
        x = ops.embed(self.token_embd, tokens) * np.float32(np.sqrt(c.n_embd))   # x: [T, n_embd]
        plan = self.decode_plan(state) if T == 1 else None
        logits = None
        if plan is not None:                 # every layer (and the head) in one native call, the same bits
            out = plan.step(x[0], p0, state)[None]
            if plan.head.H is not None:
                logits = out                                                 # [1, n_vocab]
            else:
                x = out
        else:
            for il, L in enumerate(self.layers):
                a = self.attention(il, L, self.norm(x, L.attn_norm), pos, state)    # a: [T, n_embd]
                x = x + self.norm(a, L.post_attention_norm)
                f = self.ffn(L, self.norm(x, L.ffn_norm))                            # f: [T, n_embd]
                x = x + self.norm(f, L.post_ffw_norm)
                interrupt.layer_done(il, c.n_layer)
        state.n_past = p0 + T
        if last_only:
            x = x[-1:]
        if logits is None:
            logits = ops.linear(self.output, self.norm(x, self.output_norm))    # [T, n_vocab]
        if c.final_softcap:
            logits = np.float32(c.final_softcap) * np.tanh(logits / np.float32(c.final_softcap))
        return logits

    def decode_plan(self, state: State):
        """jit.plan_gemma.GemmaPlan for this state when the JIT runs this model (cached), else None."""
        if not (USE_PLAN and ops.SINGLE_QUERY_DECODE_ORDER):      # the plan sums in decode order
            return None
        return cached_plan(self, state, "plan_gemma", "GemmaPlan")

    def attention(self, il: int, L: Layer, h: np.ndarray, pos: np.ndarray, state: State) -> np.ndarray:
        c = self.config
        T = h.shape[0]
        q = ops.linear(L.attn_q, h).reshape(T, c.n_head, c.head_dim)        # [T, Hq, D]
        k = ops.linear(L.attn_k, h).reshape(T, c.n_head_kv, c.head_dim)     # [T, Hkv, D]
        v = ops.linear(L.attn_v, h).reshape(T, c.n_head_kv, c.head_dim)     # [T, Hkv, D]
        q, k = self.norm(q, L.attn_q_norm), self.norm(k, L.attn_k_norm)    # RMSNorm per head
        if c.is_swa[il]:
            base, fscale = c.rope_base_swa, 1.0
        else:
            base, fscale = c.rope_base, c.rope_freq_scale
        q = ops.rope_neox(q, pos, c.rope_dim, base, fscale) * np.float32(c.attn_scale)
        k = ops.rope_neox(k, pos, c.rope_dim, base, fscale)
        if c.is_swa[il]:
            o = self.ring_attention(state, il, q, k, v, pos)
        else:
            kc, vc = state.arrays[f"k.{il}"], state.arrays[f"v.{il}"]        # [n_ctx, Hkv, D]
            n = int(pos[-1]) + 1
            kc[pos[0]:n], vc[pos[0]:n] = k, v
            o = ops.cached_attention(q, kc, vc, pos, 1.0)
        return ops.linear(L.attn_output, o.reshape(T, -1))                   # [T, n_embd]

    def ring_attention(self, state: State, il: int, q, k, v, pos) -> np.ndarray:
        """Sliding-window attention through the ring (position p in slot p % R): the batch's keys
        are written in pieces of at most R - n_swa + 1 queries, so no piece overwrites a key its
        own queries still see. The same bits as attending over the ring's entries + the batch."""
        c = self.config
        kr, vr = state.arrays[f"k.{il}"], state.arrays[f"v.{il}"]           # [R, Hkv, D]
        kp, vp = state.arrays[f"pos.k.{il}"], state.arrays[f"pos.v.{il}"]   # [R] (-1: empty)
        R, T = kr.shape[0], len(pos)
        piece = T if pos[-1] < R else max(1, R - c.n_swa + 1)
        out = np.empty((T, c.n_head, c.head_dim), np.float32)
        for s in range(0, T, piece):
            sl = slice(s, s + piece)
            slots = pos[sl] % R
            kr[slots], vr[slots] = k[sl], v[sl]
            kp[slots] = vp[slots] = pos[sl]
            out[sl] = ops.cached_attention(q[sl], kr, vr, pos[sl], 1.0, window=c.n_swa, single=T == 1)
        return out

    def ffn(self, L: Layer, h: np.ndarray) -> np.ndarray:
        g = ops.gelu_f16_mul(ops.linear(L.ffn_gate, h), ops.linear(L.ffn_up, h))   # [T, n_ff]
        return ops.linear(L.ffn_down, g)                                            # [T, n_embd]
