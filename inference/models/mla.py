"""Multi-head latent attention (MLA) in its absorbed form, as kimi-linear's full-attention layers.

Per token (R = kv_lora_rank, r = rope dims, n = nope dims = key_length_mla - r, dv = value_length_mla):
    q          = W_q x  -> per head [q_nope (n) | q_pe (r)]
    [c | k_pe] = W_kva x                          c: [R], k_pe: [r] shared by all heads (no RoPE)
    c          = rms_norm(c, kv_a_norm)
    Q_h        = [k_b[h] q_nope_h | q_pe_h]       [R + r]
    K_s        = [c_s | k_pe_s],  V_s = c_s       the cache row is K_s: [R + r] per token
    P_h        = softmax(Q_h . K / sqrt(key_length_mla) + causal)
    out_h      = v_b[h] (sum_s P_h(s) c_s)        [dv];  out = W_o concat_h out_h
This equals plain MHA with k_nope_h = k_b[h]^T c and v_h = v_b[h] c (the HF form).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ops
from ..gguf_file import Tensor


@dataclass
class MLAWeights:
    """One MLA layer, attributes named after the GGUF tensors (blk.N.<name>)."""
    attn_q: Tensor               # (H*(n+r), E)
    attn_kv_a_mqa: Tensor        # (R+r, E)
    attn_kv_a_norm: np.ndarray   # (R,)
    attn_k_b: Tensor             # (H, R, n): k_b[h] maps q_nope (n) -> latent (R)
    attn_v_b: Tensor             # (H, dv, R): v_b[h] maps latent (R) -> value (dv)
    attn_output: Tensor          # (E, H*dv)


def per_head(w: Tensor, x: np.ndarray) -> np.ndarray:
    """Batched per-head matmul with a stacked weight, dequantized one head matrix at a time.

    w: (H, out, in); x: [T, H, in] -> [T, H, out]
    """
    return np.stack([ops.linear(ops.expert(w, h), x[:, h]) for h in range(x.shape[1])], axis=1)


def mla_mixer(x: np.ndarray, w: MLAWeights, cache: np.ndarray, n_past: int, n_head: int,
              n_rope: int, key_length: int, eps: float) -> np.ndarray:
    """x: [T, E] normed hidden; cache: [n_ctx, R + r], rows n_past.. are written -> [T, E].

    With an F16 cache (llama.cpp's default) attention rounds q and the probabilities to F16 too."""
    T = x.shape[0]
    H, r = n_head, n_rope
    R = cache.shape[1] - r
    n = key_length - r
    q = ops.linear(w.attn_q, x).reshape(T, H, n + r)                    # [T, H, n + r]
    ckp = ops.linear(w.attn_kv_a_mqa, x)                                # [T, R + r]
    c = ops.rms_norm(ckp[:, :R], w.attn_kv_a_norm, eps)                 # [T, R]
    cache[n_past:n_past + T, :R] = c
    cache[n_past:n_past + T, R:] = ckp[:, R:]
    q_abs = per_head(w.attn_k_b, q[:, :, :n])                           # [T, H, R]
    Q = np.concatenate([q_abs, q[:, :, n:]], axis=-1)                   # [T, H, R + r]
    S = n_past + T
    long = ops.attention_is_long(T, H, S)                               # blocked BLAS attention reads F16 as is
    K = (cache[:S] if long else cache[:S].astype(np.float32))[:, None, :]   # [S, 1, R + r]
    V = K[:, :, :R]                                                     # [S, 1, R]
    pos = np.arange(S)
    lat = ops.attention(Q, K, V, pos[n_past:], pos, 1.0 / np.sqrt(key_length),
                        round_f16=cache.dtype == np.float16)            # [T, H, R]
    out = per_head(w.attn_v_b, lat)                                     # [T, H, dv]
    return ops.linear(w.attn_output, out.reshape(T, -1))                # [T, E]
