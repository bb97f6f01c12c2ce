"""kimi-linear (Kimi-Linear-48B-A3B): KDA linear-attention layers mixed with MLA layers, MoE FFN.

    h = token_embd[ids]                                          [T, E]
    per layer:  h += Mixer(rms_norm(h, attn_norm))               KDA (head_count_kv[il] == 0) or MLA
                h += FFN(rms_norm(h, ffn_norm))                  dense SwiGLU for il < lead, else MoE
    logits = W_out rms_norm(h, output_norm)
Math as llama.cpp computes it: ../shared/docs/kimi-linear-and-step35.md section 1; the mixers are
in kda.py and mla.py, the MoE routing in moe.py.
State: per KDA layer `blk.N.conv_{q,k,v}` [d_conv-1, D] and `blk.N.ssm` [H, d, d] (RECURRENT),
per MLA layer `blk.N.kv` [n_ctx, kv_lora_rank + rope dims] (KV, the compressed latent cache,
float16 arrays like llama.cpp's default F16 cache, or float32 with the "f32" cache type:
model.kv_type, recorded as state.kv_type).
Decode: with the JIT, one token runs every layer and the head in one native call
(jit/plan_kimi.py, the same bits as the per-op forward below).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import interrupt, ops
from ..errors import TokenizerError, UnsupportedModelError
from ..gguf_file import GGUFFile, Tensor
from ..kv_cache import kv_dtype
from . import base, moe
from .kda import KDAWeights, kda_mixer
from .mla import MLAWeights, mla_mixer

DEFAULT_N_CTX = 8192   # new_state() without n_ctx: the training context, capped here
FFN_ROWS = 512         # the dense FFN of a long chunk runs this many tokens at a time (base.in_row_parts)
USE_PLAN = True        # decode a token through jit.plan_kimi when it applies (tests compare with False)


@dataclass
class Config:
    n_embd: int
    n_layer: int
    n_head: int
    is_kda: list[bool]          # per layer: attention.head_count_kv[il] == 0
    eps: float                  # attention.layer_norm_rms_epsilon (every norm, the L2 norms too)
    kda_head_dim: int           # kda.head_dim
    d_conv: int                 # ssm.conv_kernel
    kv_lora_rank: int
    n_rope: int                 # rope.dimension_count = qk_rope_head_dim (no rotation applied)
    key_length_mla: int         # nope + rope
    value_length_mla: int
    n_expert: int
    n_expert_used: list[int]    # per layer
    n_dense_lead: int           # leading_dense_block_count
    gating: int                 # expert_gating_func (required)
    w_scale: float              # expert_weights_scale (0 = none)
    n_ctx_train: int


@dataclass
class Layer:
    attn_norm: np.ndarray
    ffn_norm: np.ndarray
    mixer: KDAWeights | MLAWeights
    # dense FFN (il < n_dense_lead)
    ffn_gate: Tensor | None = None
    ffn_up: Tensor | None = None
    ffn_down: Tensor | None = None
    # MoE
    ffn_gate_inp: Tensor | None = None
    ffn_gate_exps: Tensor | None = None
    ffn_up_exps: Tensor | None = None
    ffn_down_exps: Tensor | None = None
    exp_probs_b: np.ndarray | None = None
    ffn_gate_shexp: Tensor | None = None
    ffn_up_shexp: Tensor | None = None
    ffn_down_shexp: Tensor | None = None


def _per_layer(value, n_layer: int, what: str, path) -> list[int]:
    """A u32 or a per-layer array (block_count entries, MTP layers last) -> n_layer ints."""
    arr = np.atleast_1d(np.asarray(value))
    if arr.size == 1:
        return [int(arr[0])] * n_layer
    if arr.size < n_layer:
        raise UnsupportedModelError(f"{path}: {what} has {arr.size} entries for {n_layer} layers")
    return [int(a) for a in arr[:n_layer]]


class Model(base.Model):
    # MLA's decompressed attention over a long cache decompresses every key once per chunk: 2048
    # queries share it instead of 512 (kimi-linear-48b-slice at 32k tokens: 84.7 against 73.8
    # t/s, the same run); the KDA mixer and the dense FFN run such a chunk in parts of 512
    prefill_chunk = 2048
    arch = ("kimi-linear",)

    def __init__(self, gguf: GGUFFile):
        super().__init__(gguf)
        self.config = self._read_config()
        c = self.config
        self.token_embd = self.tensor("token_embd.weight")
        self.output_norm = ops.vector(self.tensor("output_norm.weight"))
        self.output = self.tensor("output.weight", required=False) or self.token_embd
        self.layers = [self._bind_layer(il) for il in range(c.n_layer)]

    # --- config and weights ------------------------------------------------------------------
    def _read_config(self) -> Config:
        path = self.gguf.path
        n_layer = int(self.meta("block_count")) - int(self.meta("nextn_predict_layers", 0))
        heads = _per_layer(self.meta("attention.head_count"), n_layer, "attention.head_count", path)
        if len(set(heads)) != 1:
            raise UnsupportedModelError(f"{path}: per-layer head counts differ ({heads}); "
                                        "kimi-linear expects one head count for every layer")
        kv = _per_layer(self.meta("attention.head_count_kv"), n_layer, "attention.head_count_kv", path)
        gating = moe.check_gating(self.meta("expert_gating_func"), str(path))
        return Config(
            n_embd=int(self.meta("embedding_length")), n_layer=n_layer, n_head=heads[0],
            is_kda=[k == 0 for k in kv], eps=float(self.meta("attention.layer_norm_rms_epsilon")),
            kda_head_dim=int(self.meta("kda.head_dim")), d_conv=int(self.meta("ssm.conv_kernel")),
            kv_lora_rank=int(self.meta("attention.kv_lora_rank")),
            n_rope=int(self.meta("rope.dimension_count")),
            key_length_mla=int(self.meta("attention.key_length_mla")),
            value_length_mla=int(self.meta("attention.value_length_mla")),
            n_expert=int(self.meta("expert_count")),
            n_expert_used=_per_layer(self.meta("expert_used_count"), n_layer, "expert_used_count", path),
            n_dense_lead=int(self.meta("leading_dense_block_count", 0)), gating=gating,
            w_scale=float(self.meta("expert_weights_scale", 0.0)),
            n_ctx_train=int(self.meta("context_length")),
        )

    def _t(self, il: int, name: str, required: bool = True) -> Tensor | None:
        return self.tensor(f"blk.{il}.{name}", required)

    def _v(self, il: int, name: str) -> np.ndarray:
        return ops.vector(self._t(il, name)).reshape(-1)

    def _bind_layer(self, il: int) -> Layer:
        c = self.config
        mixer = self._bind_kda(il) if c.is_kda[il] else self._bind_mla(il)
        layer = Layer(attn_norm=self._v(il, "attn_norm.weight"), ffn_norm=self._v(il, "ffn_norm.weight"),
                      mixer=mixer)
        if il < c.n_dense_lead:
            for n in ("ffn_gate", "ffn_up", "ffn_down"):
                setattr(layer, n, self._t(il, f"{n}.weight"))
        else:
            for n in ("ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
                setattr(layer, n, self._t(il, f"{n}.weight"))
            layer.exp_probs_b = self._v(il, "exp_probs_b.bias")
            for n in ("ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"):
                setattr(layer, n, self._t(il, f"{n}.weight", required=False))
        return layer

    def _bind_kda(self, il: int) -> KDAWeights:
        c = self.config
        D = c.n_head * c.kda_head_dim
        qkv = self._t(il, "attn_qkv.weight", required=False)
        sep = (None, None, None) if qkv is not None else \
            tuple(self._t(il, f"attn_{n}.weight") for n in "qkv")

        def conv(n: str) -> np.ndarray:   # GGUF ne [d_conv, 1, D(, 1)] -> (D, d_conv)
            return ops.vector(self._t(il, f"ssm_conv1d_{n}.weight")).reshape(D, c.d_conv)

        return KDAWeights(
            attn_q=sep[0], attn_k=sep[1], attn_v=sep[2], attn_qkv=qkv,
            ssm_conv1d_q=conv("q"), ssm_conv1d_k=conv("k"), ssm_conv1d_v=conv("v"),
            ssm_f_a=self._t(il, "ssm_f_a.weight"), ssm_f_b=self._t(il, "ssm_f_b.weight"),
            ssm_g_a=self._t(il, "ssm_g_a.weight"), ssm_g_b=self._t(il, "ssm_g_b.weight"),
            ssm_beta=self._t(il, "ssm_beta.weight"), ssm_a=self._v(il, "ssm_a"),
            ssm_dt=self._v(il, "ssm_dt.bias"), ssm_norm=self._v(il, "ssm_norm.weight"),
            attn_output=self._t(il, "attn_output.weight"))

    def _bind_mla(self, il: int) -> MLAWeights:
        if self._t(il, "attn_kv_b.weight", required=False) is not None:
            raise UnsupportedModelError(
                f"{self.gguf.path}: layer {il} stores MLA as an unsplit 'attn_kv_b' (a legacy "
                "kimi-linear conversion that llama.cpp cannot run correctly either); re-convert the "
                "model with a current llama.cpp convert_hf_to_gguf.py, which writes attn_k_b/attn_v_b")
        if self._t(il, "attn_q_a.weight", required=False) is not None:
            raise UnsupportedModelError(f"{self.gguf.path}: layer {il} has a low-rank query "
                                        "(attn_q_a/attn_q_b), which kimi-linear does not use")
        return MLAWeights(
            attn_q=self._t(il, "attn_q.weight"), attn_kv_a_mqa=self._t(il, "attn_kv_a_mqa.weight"),
            attn_kv_a_norm=self._v(il, "attn_kv_a_norm.weight"),
            attn_k_b=self._t(il, "attn_k_b.weight"), attn_v_b=self._t(il, "attn_v_b.weight"),
            attn_output=self._t(il, "attn_output.weight"))

    # --- state ---------------------------------------------------------------------------------
    def new_state(self, n_ctx: int | None = None) -> base.State:
        c = self.config
        n_ctx = int(n_ctx or min(c.n_ctx_train, DEFAULT_N_CTX))
        st = base.State(n_ctx, kv_type=self.kv_type)
        dt = kv_dtype(self.kv_type)
        D, d = c.n_head * c.kda_head_dim, c.kda_head_dim
        for il in range(c.n_layer):
            if c.is_kda[il]:
                for n in "qkv":
                    st.add(f"blk.{il}.conv_{n}", np.zeros((c.d_conv - 1, D), np.float32), base.RECURRENT)
                st.add(f"blk.{il}.ssm", np.zeros((c.n_head, d, d), np.float32), base.RECURRENT)
            else:
                # rows of the cache type: float16 (llama.cpp's default F16 cache) or float32
                st.add(f"blk.{il}.kv", np.zeros((n_ctx, c.kv_lora_rank + c.n_rope), dt), base.KV)
        return st

    # --- forward -------------------------------------------------------------------------------
    def forward(self, tokens: np.ndarray, state: base.State, last_only: bool = False) -> np.ndarray:
        return self._forward(tokens, state, last_only)

    def _forward(self, tokens, state: base.State, last_only: bool = False,
                 trace: dict | None = None) -> np.ndarray:
        """trace, if given, receives the residual stream after each mixer and FFN (debugging)."""
        c = self.config
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        T, p0 = len(tokens), state.n_past
        state.check_room(T)
        if T and (tokens.min() < 0 or tokens.max() >= self.n_vocab):
            raise TokenizerError(f"token id out of range [0, {self.n_vocab}): {tokens.min()}..{tokens.max()}")
        h = ops.embed(self.token_embd, tokens)                                  # [T, E]
        plan = self.decode_plan(state) if T == 1 and trace is None else None
        if plan is not None:                 # every layer (and the head) in one native call, the same bits
            out = plan.step(h[0], p0)[None]
            state.n_past = p0 + 1
            if plan.head.H is not None:
                return out                                                      # [1, n_vocab]
            return ops.linear(self.output, ops.rms_norm(out, self.output_norm, c.eps))
        for il, L in enumerate(self.layers):
            x = ops.rms_norm(h, L.attn_norm, c.eps)                             # [T, E]
            h = h + self._mixer(il, L, x, state)
            if trace is not None:
                trace[f"blk_{il}_after_mixer"] = h.copy()
            y = ops.rms_norm(h, L.ffn_norm, c.eps)
            h = h + self._ffn(il, L, y)
            if trace is not None:
                trace[f"blk_{il}_after_ffn"] = h.copy()
            interrupt.layer_done(il, c.n_layer)
        state.n_past = p0 + T
        if last_only:
            h = h[-1:]
        return ops.linear(self.output, ops.rms_norm(h, self.output_norm, c.eps))  # [T, n_vocab]

    def decode_plan(self, state: base.State):
        """jit.plan_kimi.KimiPlan for this state when the JIT runs this model (cached), else None."""
        return base.cached_plan(self, state, "plan_kimi", "KimiPlan") if USE_PLAN else None

    def _mixer(self, il: int, L: Layer, x: np.ndarray, state: base.State) -> np.ndarray:
        c = self.config
        if c.is_kda[il]:
            conv = tuple(state.arrays[f"blk.{il}.conv_{n}"] for n in "qkv")
            return kda_mixer(x, L.mixer, conv, state.arrays[f"blk.{il}.ssm"],
                             c.n_head, c.kda_head_dim, c.eps)
        return mla_mixer(x, L.mixer, state.arrays[f"blk.{il}.kv"], state.n_past, c.n_head,
                         c.n_rope, c.key_length_mla, c.eps, half=state.kv_type == "f16")

    def _ffn(self, il: int, L: Layer, y: np.ndarray) -> np.ndarray:
        c = self.config
        if il < c.n_dense_lead:                                                 # [T, E]
            return base.in_row_parts(lambda part: moe.ffn(part, L.ffn_gate, L.ffn_up, L.ffn_down), y, FFN_ROWS)
        return moe.moe_layer(y, L.ffn_gate_inp, L.ffn_gate_exps, L.ffn_up_exps, L.ffn_down_exps,
                             c.n_expert_used[il], c.gating, L.exp_probs_b, norm_w=True, scale=c.w_scale,
                             shexp=moe.shared_expert(L))
