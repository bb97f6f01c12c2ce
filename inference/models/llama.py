"""Llama-family decoders: llama, mistral, smollm, qwen2 (q/k/v biases), qwen3 (per-head q/k RMSNorm).

One forward serves them all, as llama.cpp's src/models/llama.cpp and qwen3.cpp compute it:

    x = token_embd[tokens]
    per layer:  h = rms_norm(x) * attn_norm
                q, k, v = h @ attn_q.T (+ bias), h @ attn_k.T (+ bias), h @ attn_v.T (+ bias)
                q, k = rms_norm(q_head) * attn_q_norm, ... (qwen3 only)
                q, k = rope(q), rope(k)        (llama: adjacent pairs; qwen2/qwen3: NEOX halves)
                x = x + attention(q, K, V, causal) @ attn_output.T (+ bias)
                x = x + (silu(h2 @ ffn_gate.T) * (h2 @ ffn_up.T)) @ ffn_down.T,  h2 = rms_norm(x) * ffn_norm
    logits = (rms_norm(x) * output_norm) @ output.T       (output = token_embd when tied)

K and V go into the cache as its type stores them (model.kv_type): float16, llama.cpp's default
F16 cache (rounded on the way in), or float32 unrounded (-ctk f32 -ctv f32).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import interrupt, ops
from ..errors import UnsupportedModelError
from ..kv_cache import kv_dtype
from ..gguf_file import Tensor
from .base import KV, Model as BaseModel, State, cached_plan

NEOX_ARCHS = ("qwen2", "qwen3")  # llama.cpp's llama_model_rope_type: LLAMA_ROPE_TYPE_NEOX


@dataclass
class Config:
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int            # attention.key_length, else n_embd / n_head
    n_ff: int
    eps: float               # attention.layer_norm_rms_epsilon
    rope_neox: bool          # NEOX halves (qwen) vs adjacent pairs (llama)
    rope_dim: int            # rope.dimension_count (rotated dims per head)
    rope_base: float         # rope.freq_base
    rope_freq_scale: float   # 1 / rope.scaling.factor (linear scaling)
    n_ctx_train: int


@dataclass
class Layer:
    """One block's weights, named after the GGUF tensors blk.N.<name>.weight (biases: <name>_b)."""
    attn_norm: Tensor
    attn_q: Tensor
    attn_k: Tensor
    attn_v: Tensor
    attn_output: Tensor
    ffn_norm: Tensor
    ffn_gate: Tensor
    ffn_up: Tensor
    ffn_down: Tensor
    attn_q_b: Tensor | None = None
    attn_k_b: Tensor | None = None
    attn_v_b: Tensor | None = None
    attn_output_b: Tensor | None = None
    attn_q_norm: Tensor | None = None
    attn_k_norm: Tensor | None = None


def rope_scaling(model: BaseModel) -> float:
    """freq_scale from rope.scaling.{type,factor} (or the legacy rope.scale_linear); refuses YaRN/LongRoPE."""
    kind = str(model.meta("rope.scaling.type", "none"))
    factor = float(model.meta("rope.scaling.factor", 0.0) or model.meta("rope.scale_linear", 0.0) or 0.0)
    if kind not in ("none", "linear") and factor > 1.0:
        raise UnsupportedModelError(
            f"{model.gguf.path}: RoPE scaling {kind!r} (factor {factor}) is not supported yet; "
            "use a GGUF without YaRN/LongRoPE context extension")
    return 1.0 / factor if factor > 0.0 else 1.0


def check_shape(model: BaseModel, t: Tensor | None, shape: tuple[int, ...]) -> Tensor | None:
    if t is not None and tuple(t.shape) != tuple(shape):
        raise UnsupportedModelError(
            f"{model.gguf.path}: tensor {t.name!r} has shape {t.shape}, expected {shape}; "
            "this file's layout is not one the llama architecture understands")
    return t


class Model(BaseModel):
    arch = ("llama", "qwen2", "qwen3", "mistral", "smollm")

    def __init__(self, gguf):
        super().__init__(gguf)
        arch = gguf.architecture
        if int(self.meta("expert_count", 0) or 0) > 0:
            raise UnsupportedModelError(
                f"{gguf.path}: a mixture-of-experts {arch} model (expert_count="
                f"{self.meta('expert_count')}) is not supported; use a dense model")
        n_embd = int(self.meta("embedding_length"))
        n_head = int(self.meta("attention.head_count"))
        head_dim = int(self.meta("attention.key_length", n_embd // n_head))
        if int(self.meta("attention.value_length", head_dim)) != head_dim:
            raise UnsupportedModelError(f"{gguf.path}: key and value head sizes differ; not supported")
        self.token_embd = self.tensor("token_embd.weight")
        self.config = c = Config(
            n_vocab=self.token_embd.shape[0],
            n_embd=n_embd,
            n_layer=int(self.meta("block_count")),
            n_head=n_head,
            n_head_kv=int(self.meta("attention.head_count_kv", n_head)),
            head_dim=head_dim,
            n_ff=int(self.meta("feed_forward_length")),
            eps=float(self.meta("attention.layer_norm_rms_epsilon")),
            rope_neox=arch in NEOX_ARCHS,
            rope_dim=int(self.meta("rope.dimension_count", head_dim)),
            rope_base=float(self.meta("rope.freq_base", 10000.0)),
            rope_freq_scale=rope_scaling(self),
            n_ctx_train=int(self.meta("context_length", 4096)),
        )
        if c.n_head % c.n_head_kv or c.rope_dim > c.head_dim:
            raise UnsupportedModelError(
                f"{gguf.path}: {c.n_head} query heads over {c.n_head_kv} KV heads, rope over "
                f"{c.rope_dim} of {c.head_dim} dims: not a layout this engine can run")
        check_shape(self, self.token_embd, (c.n_vocab, n_embd))
        self.output_norm = check_shape(self, self.tensor("output_norm.weight"), (n_embd,))
        self.output = check_shape(self, self.tensor("output.weight", required=False), (c.n_vocab, n_embd)) \
            or self.token_embd  # tied embeddings
        ff = self.tensor("rope_freqs.weight", required=False)   # llama3: per-frequency divisors
        self.rope_freqs = ops.vector(check_shape(self, ff, (c.rope_dim // 2,))) if ff is not None else None
        self.layers = [self._layer(il) for il in range(c.n_layer)]
        # norm weights and biases are small: keep them as float32 vectors
        self._vec = {}

    def _layer(self, il: int) -> Layer:
        c = self.config
        q_dim, kv_dim = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
        p = f"blk.{il}."

        def t(name, shape, required=True):
            return check_shape(self, self.tensor(p + name, required), shape)

        if self.tensor(p + "attn_qkv.weight", required=False) is not None:
            raise UnsupportedModelError(f"{self.gguf.path}: fused attn_qkv weights are not supported")
        if self.tensor(p + "ffn_gate_inp.weight", required=False) is not None:
            raise UnsupportedModelError(f"{self.gguf.path}: layer {il} is a mixture of experts; not supported")
        qk_norm = self.gguf.architecture == "qwen3" or self.tensor(p + "attn_q_norm.weight", False) is not None
        return Layer(
            attn_norm=t("attn_norm.weight", (c.n_embd,)),
            attn_q=t("attn_q.weight", (q_dim, c.n_embd)),
            attn_k=t("attn_k.weight", (kv_dim, c.n_embd)),
            attn_v=t("attn_v.weight", (kv_dim, c.n_embd)),
            attn_output=t("attn_output.weight", (c.n_embd, q_dim)),
            ffn_norm=t("ffn_norm.weight", (c.n_embd,)),
            ffn_gate=t("ffn_gate.weight", (c.n_ff, c.n_embd)),
            ffn_up=t("ffn_up.weight", (c.n_ff, c.n_embd)),
            ffn_down=t("ffn_down.weight", (c.n_embd, c.n_ff)),
            attn_q_b=t("attn_q.bias", (q_dim,), False),
            attn_k_b=t("attn_k.bias", (kv_dim,), False),
            attn_v_b=t("attn_v.bias", (kv_dim,), False),
            attn_output_b=t("attn_output.bias", (c.n_embd,), False),
            attn_q_norm=t("attn_q_norm.weight", (c.head_dim,), qk_norm),
            attn_k_norm=t("attn_k_norm.weight", (c.head_dim,), qk_norm),
        )

    # --- helpers ------------------------------------------------------------------------------
    def vec(self, t: Tensor | None) -> np.ndarray | None:
        """A norm weight or bias as float32 (cached: they are small)."""
        if t is None:
            return None
        v = self._vec.get(t.name)
        if v is None:
            v = self._vec[t.name] = ops.vector(t)
        return v

    def linear(self, w: Tensor, x: np.ndarray, b: Tensor | None = None) -> np.ndarray:
        y = ops.linear(w, x)
        return y + self.vec(b) if b is not None else y

    def rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        c = self.config
        f = ops.rope_neox if c.rope_neox else ops.rope_norm
        return f(x, pos, c.rope_dim, c.rope_base, c.rope_freq_scale, self.rope_freqs)

    @property
    def n_ctx_train(self) -> int:
        return self.config.n_ctx_train

    # --- the engine's interface ---------------------------------------------------------------
    def new_state(self, n_ctx: int | None = None) -> State:
        c = self.config
        n_ctx = int(n_ctx or c.n_ctx_train)
        s = State(n_ctx, kv_type=self.kv_type)
        dt = kv_dtype(self.kv_type)                          # float16 (F16 cache) or float32
        for il in range(c.n_layer):
            s.add(f"k.{il}", np.zeros((n_ctx, c.n_head_kv, c.head_dim), dt), KV)
            s.add(f"v.{il}", np.zeros((n_ctx, c.n_head_kv, c.head_dim), dt), KV)
        return s

    def forward(self, tokens, state: State, last_only: bool = False) -> np.ndarray:
        c = self.config
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        T, p0 = len(tokens), state.n_past
        state.check_room(T)
        check_tokens(tokens, c.n_vocab)
        pos = np.arange(p0, p0 + T)
        x = ops.embed(self.token_embd, tokens)                               # x: [T, n_embd]
        plan = self.decode_plan(state) if T == 1 else None
        if plan is not None:                 # every layer (and the head) in one native call, the same bits
            out = plan.step(x[0], p0)[None]
            if plan.head.H is not None:
                state.n_past = p0 + T
                return out                                                   # [1, n_vocab]
            x = out
        else:
            for il, L in enumerate(self.layers):
                h = ops.rms_norm(x, self.vec(L.attn_norm), c.eps)            # h: [T, n_embd]
                x = x + self.attention(il, L, h, pos, state)
                h = ops.rms_norm(x, self.vec(L.ffn_norm), c.eps)
                x = x + self.ffn(L, h)
                interrupt.layer_done(il, c.n_layer)
        state.n_past = p0 + T
        if last_only:
            x = x[-1:]
        x = ops.rms_norm(x, self.vec(self.output_norm), c.eps)
        return ops.linear(self.output, x)                                    # [T, n_vocab]

    def decode_plan(self, state: State):
        """jit.plan.LlamaPlan for this state when the JIT runs this model (cached: the plan holds
        the run-state buffers and points at the state's KV cache), else None."""
        if not (USE_PLAN and ops.SINGLE_QUERY_DECODE_ORDER):      # the plan sums in decode order
            return None
        return cached_plan(self, state, "plan", "LlamaPlan")

    def attention(self, il: int, L: Layer, h: np.ndarray, pos: np.ndarray, state: State) -> np.ndarray:
        c = self.config
        T = h.shape[0]
        q = self.linear(L.attn_q, h, L.attn_q_b).reshape(T, c.n_head, c.head_dim)      # [T, Hq, D]
        k = self.linear(L.attn_k, h, L.attn_k_b).reshape(T, c.n_head_kv, c.head_dim)   # [T, Hkv, D]
        v = self.linear(L.attn_v, h, L.attn_v_b).reshape(T, c.n_head_kv, c.head_dim)   # [T, Hkv, D]
        if L.attn_q_norm is not None:                       # qwen3: RMSNorm over each head
            q = ops.rms_norm(q, self.vec(L.attn_q_norm), c.eps)
            k = ops.rms_norm(k, self.vec(L.attn_k_norm), c.eps)
        q, k = self.rope(q, pos), self.rope(k, pos)
        kc, vc = state.arrays[f"k.{il}"], state.arrays[f"v.{il}"]            # [n_ctx, Hkv, D]
        n = int(pos[-1]) + 1
        kc[pos[0]:n], vc[pos[0]:n] = k, v      # an F16 cache rounds them (llama.cpp's default)
        # llama.cpp's sums, single-token decoding included (F16 or F32 math by the cache's type)
        o = ops.cached_attention(q, kc, vc, pos, 1.0 / np.sqrt(c.head_dim))
        return self.linear(L.attn_output, o.reshape(T, -1), L.attn_output_b)  # [T, n_embd]

    def ffn(self, L: Layer, h: np.ndarray) -> np.ndarray:
        g = ops.swiglu_ggml(ops.linear(L.ffn_gate, h), ops.linear(L.ffn_up, h))   # [T, n_ff]
        return ops.linear(L.ffn_down, g)                                          # [T, n_embd]


USE_PLAN = True     # decode a token through jit.plan when it applies (tests compare with False)


def check_tokens(tokens: np.ndarray, n_vocab: int) -> None:
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= n_vocab):
        raise ValueError(f"token id out of range [0, {n_vocab}): {tokens.min()}..{tokens.max()}")
