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
from . import mla_prefill
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
    if x.shape[0] == 1:                                  # decode: every head in one job
        return ops.linear_each([ops.expert(w, h) for h in range(x.shape[1])], x[0])[None]
    return np.stack([ops.linear(ops.expert(w, h), x[:, h]) for h in range(x.shape[1])], axis=1)


def mla_mixer(x: np.ndarray, w: MLAWeights, cache: np.ndarray, n_past: int, n_head: int,
              n_rope: int, key_length: int, eps: float, half: bool = False) -> np.ndarray:
    """x: [T, E] normed hidden; cache: [n_ctx, R + r] float16 or float32, rows n_past.. are
    written -> [T, E].

    half: the cache stands for llama.cpp's F16 cache (its default): rows are stored rounded to
    half (a float16 cache, 1152 bytes per token like llama.cpp's; or float32 holding half values)
    and attention rounds q and the probabilities to F16 too. Every decode step, and every query of
    a batch that is not long (ops.attention_is_long), runs on the JIT kernel (jit.mla_attention)
    when selected, which reads either cache in place (its probabilities stay float32: the tiny
    golden models still meet their bounds). The numpy emulation of llama.cpp's order, the path
    without the JIT, cost ~200 ms a step at 512 keys on the full-width slice, and a 360-token
    prompt 24.7 s where the kernel takes well under one."""
    T = x.shape[0]
    H, r = n_head, n_rope
    R = cache.shape[1] - r
    n = key_length - r
    rnd = ops.f16_if(half)
    if T == 1:                                                          # one pool job
        q, ckp = (p[None] for p in ops.linear_parts([w.attn_q, w.attn_kv_a_mqa], x, [0, 0]))
    else:
        q, ckp = ops.linear(w.attn_q, x), ops.linear(w.attn_kv_a_mqa, x)
    q = q.reshape(T, H, n + r)                                          # [T, H, n + r]
    # ckp: [T, R + r]
    c = ops.rms_norm(ckp[:, :R], w.attn_kv_a_norm, eps)                 # [T, R]
    cache[n_past:n_past + T, :R] = rnd(c)
    cache[n_past:n_past + T, R:] = rnd(ckp[:, R:])
    S = n_past + T
    scale = 1.0 / np.sqrt(key_length)
    if ops.attention_is_long(T, H, S) and mla_prefill.pays(T, R, n, r, w.attn_v_b.shape_ggml[1]):
        out = mla_prefill.attention(q, cache, n_past, scale, R, w.attn_k_b, w.attn_v_b)   # [T, H, dv]
        return ops.linear(w.attn_output, out.reshape(T, -1))
    q_abs = per_head(w.attn_k_b, q[:, :, :n])                           # [T, H, R]
    Q = np.concatenate([q_abs, q[:, :, n:]], axis=-1)                   # [T, H, R + r]
    long = ops.attention_is_long(T, H, S)
    dec = _jit_decode(R + r, R, H) if T == 1 or not long else None
    if dec is not None:       # query by query (a short batch too: the same bits however it is split)
        Qh = np.asarray(rnd(Q), np.float32)
        lat = np.stack([dec(Qh[t], cache, n_past + t + 1, scale, R) for t in range(T)])   # [T, H, R]
    elif long:
        lat = latent_attention(Q, cache[:S], n_past, scale, R, half)    # [T, H, R]
    else:                                                               # llama.cpp's order, exact
        K = np.asarray(cache[:S], np.float32)[:, None, :]               # [S, 1, R + r]
        pos = np.arange(S)
        lat = ops.attention(Q, K, K[:, :, :R], pos[n_past:], pos, scale, round_f16=half)
    out = per_head(w.attn_v_b, lat)                                     # [T, H, dv]
    return ops.linear(w.attn_output, out.reshape(T, -1))                # [T, E]


def _jit_decode(d: int, r_lat: int, n_head: int):
    """jit.mla_attention.decode if the JIT kernels are selected and fit these sizes, else None."""
    try:
        from jit import api
    except ImportError:
        return None
    if not api.enabled():
        return None
    from jit import mla_attention as jm
    return jm.decode if jm.usable(d, r_lat, n_head) else None


QUERY_BLOCK = 128        # queries per block (x n_head score rows)
KEY_BLOCK = 2048         # keys per block: [QUERY_BLOCK * n_head, KEY_BLOCK] scores = 32 MB at 32 heads


def latent_attention(Q: np.ndarray, K: np.ndarray, n_past: int, scale: float, R: int,
                     half: bool) -> np.ndarray:
    """Causal attention of Q [T, H, R + r] (query t at position n_past + t) over the cache rows
    K [S, R + r] (values: their first R columns), flash-style in BLAS matmuls: blocks of queries
    (all heads) against blocks of keys with a running max and sum (online softmax), so no
    [T, H, S] score array exists and each key block (widened from float16 once) serves a whole
    block of queries -- a long prefill reads the cache S / QUERY_BLOCK times, not once per 8
    queries. Equal to ops.attention to float32 rounding (BLAS order; with `half` q and the
    running probabilities rounded to F16). -> [T, H, R]"""
    T, H, D = Q.shape
    rnd = ops.f16_if(half)
    out = np.empty((T, H, R), np.float32)
    for t0 in range(0, T, QUERY_BLOCK):
        t1 = min(T, t0 + QUERY_BLOCK)
        q = np.ascontiguousarray(rnd(Q[t0:t1])).reshape(-1, D)            # [t*H, D]
        qp = np.repeat(np.arange(n_past + t0, n_past + t1), H)            # [t*H] query positions
        m = np.full(q.shape[0], -np.inf, np.float32)                      # running max
        l = np.zeros(q.shape[0], np.float32)                              # running sum
        acc = np.zeros((q.shape[0], R), np.float32)                       # running sum of p v
        for k0 in range(0, n_past + t1, KEY_BLOCK):
            k1 = min(n_past + t1, k0 + KEY_BLOCK)
            kb = np.asarray(K[k0:k1], np.float32)                         # [s, D]
            sc = q @ kb.T                                                 # [t*H, s]
            sc *= np.float32(scale)
            if k1 - 1 > n_past + t0:                                      # keys past some query
                sc[np.arange(k0, k1)[None, :] > qp[:, None]] = -np.inf
            m_new = np.maximum(m, sc.max(axis=1))                         # finite: key 0 is in block 0
            alpha = np.exp(m - m_new)
            sc -= m_new[:, None]
            np.exp(sc, out=sc)
            l = l * alpha + sc.sum(axis=1, dtype=np.float32)
            acc *= alpha[:, None]
            acc += rnd(sc) @ kb[:, :R]
            m = m_new
        out[t0:t1] = (acc / l[:, None]).reshape(t1 - t0, H, R)
    return out
