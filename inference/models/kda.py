"""Kimi Delta Attention (KDA): the linear-attention mixer of kimi-linear, as llama.cpp runs it.

Per token t and head h (d = kda.head_dim, D = H*d, channel c = h*d + j):
    u_q, u_k, u_v = W_q x, W_k x, W_v x                         [D] each
    q, k, v       = silu(causal_conv(u_*))                      4-tap depthwise, last tap = token t
    q, k          = q/sqrt(sum q^2 + eps), k/sqrt(sum k^2 + eps)   per head (eps = rms eps)
    g             = A[h] * softplus(W_fb W_fa x + dt_bias)      [H, d] log-decay per KEY channel
    beta          = sigmoid(W_beta x)                           [H]
    S <- diag(exp g) S;  S <- S + k (beta (v - S^T k))^T;  o = S^T q / sqrt(d)     S: [d_k, d_v]
    o'            = rms_norm(o, ssm_norm) * sigmoid(W_gb W_ga x)    per head
    out           = W_o concat_h o'
State per layer: the last d_conv-1 PRE-conv projections of q, k and v, and S for every head.
`gated_delta_rule` is the exact sequential recurrence (llama.cpp's fused op); `gated_delta_chunked`
is the chunked WY form of the same thing, equal up to rounding; `gated_delta` picks the WY form for
long calls (>= CHUNKED_MIN_TOKENS). A one-token call (decode) runs the fused JIT step
(jit/kda.py) when the JIT kernels are selected.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ops
from ..gguf_file import Tensor


@dataclass
class KDAWeights:
    """One KDA layer, attributes named after the GGUF tensors (blk.N.<name>)."""
    attn_q: Tensor | None          # (D, E)   or None when attn_qkv is fused
    attn_k: Tensor | None          # (D, E)
    attn_v: Tensor | None          # (D, E)
    attn_qkv: Tensor | None        # (3D, E)  rows q | k | v
    ssm_conv1d_q: np.ndarray       # (D, d_conv) taps, last = current token
    ssm_conv1d_k: np.ndarray       # (D, d_conv)
    ssm_conv1d_v: np.ndarray       # (D, d_conv)
    ssm_f_a: Tensor                # (d, E)
    ssm_f_b: Tensor                # (D, d)
    ssm_g_a: Tensor                # (d, E)
    ssm_g_b: Tensor                # (D, d)
    ssm_beta: Tensor               # (H, E)
    ssm_a: np.ndarray              # (H,)  = -exp(A_log), already negative
    ssm_dt: np.ndarray             # (D,)  dt bias (GGUF ssm_dt.bias)
    ssm_norm: np.ndarray           # (d,)
    attn_output: Tensor            # (E, D)


def causal_conv(u: np.ndarray, state: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Depthwise causal conv (cross-correlation, no bias).

    u: [T, D] projections; state: [K-1, D] previous projections (updated in place); w: [D, K].
    z[t, c] = sum_i w[c, i] * x[t + i, c] with x = concat(state, u)  -> [T, D]
    """
    T = u.shape[0]
    K = w.shape[1]
    x = np.concatenate([state, u], axis=0)                     # [K-1+T, D]
    z = np.zeros_like(u)
    for i in range(K):
        z += x[i:i + T] * w[:, i]
    state[...] = x[T:]                                         # last K-1 rows
    return z


def l2_norm(x: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(sum(x^2) + eps) over the last axis (ggml: rms_norm(x, eps/n) * n^-1/2)."""
    n = x.shape[-1]
    return ops.rms_norm(x, None, eps / n) * np.float32(1.0 / np.sqrt(n))


def gated_delta_rule(q: np.ndarray, k: np.ndarray, v: np.ndarray, g: np.ndarray,
                     beta: np.ndarray, S: np.ndarray) -> np.ndarray:
    """The exact per-token recurrence, vectorised over heads; S is updated in place.

    q, k: [T, H, dk] (L2-normed); v: [T, H, dv]; g: [T, H, dk] log decay; beta: [T, H];
    S: [H, dk, dv] float32.  -> o [T, H, dv], o_t = S_t^T q_t / sqrt(dv)
    """
    T, H, dv = v.shape
    scale = np.float32(1.0 / np.sqrt(dv))
    decay = np.exp(g).astype(np.float32)                        # [T, H, dk]
    o = np.empty((T, H, dv), np.float32)
    for t in range(T):
        S *= decay[t][:, :, None]                               # decay on the key axis
        kS = np.matmul(k[t][:, None, :], S)[:, 0]               # [H, dv]  S^T k
        delta = beta[t][:, None] * (v[t] - kS)                  # [H, dv]
        S += k[t][:, :, None] * delta[:, None, :]               # S += k delta^T
        o[t] = np.matmul(q[t][:, None, :], S)[:, 0] * scale     # [H, dv]
    return o


CHUNK = 32              # tokens per WY chunk (llama.cpp's dormant graph uses 16 for KDA; same math; 32 measured fastest)
# Calls of at least this many tokens (long-document prefill chunks) run the WY form; shorter ones
# run the exact recurrence, whose bits do not depend on how a prompt is split into calls (the
# WY form's do, at float rounding: its chunk grid moves with the split)
CHUNKED_MIN_TOKENS = 256
_SAFE_SPAN = 700.0       # a chunk's log-decay spread up to which every e^{G_i - G_j} (upper triangle too) fits float64


def gated_delta_chunked(q: np.ndarray, k: np.ndarray, v: np.ndarray, g: np.ndarray,
                        beta: np.ndarray, S: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """The same recurrence in chunked WY form (llama.cpp delta-net-base.cpp); S updated in place.

    Per head and chunk of C tokens (local i, j), with q pre-scaled by 1/sqrt(d) and
    G_i = cumsum_{s<=i} g_s  [C, dk]:
        A[i,j]  = beta_i sum_c k_i[c] k_j[c] e^{G_i[c]-G_j[c]}   (j < i)
        Kq[i,j] = sum_c q_i[c] k_j[c] e^{G_i[c]-G_j[c]}           (j <= i)
        Tm = (I + A)^-1;  U = Tm (beta V);  W = Tm (beta K e^G)
        V' = U - W S0;  O = (Q e^G) S0 + Kq V';  S1 = e^{G_C} S0 + (K e^{G_C - G})^T V'
    Shapes as gated_delta_rule.  Computed in float64 per chunk, state kept in float32.
    The decay sums factor as (x_i e^{G_i - m}) . (k_j e^{m - G_j}) (m: the chunk's mid log decay),
    two matmuls; a chunk whose decay spreads too far for float64 is split in halves (a single
    token always fits).
    """
    T, H, dv = v.shape
    o = np.empty((T, H, dv), np.float32)
    qs = (q.astype(np.float64) / np.sqrt(dv)).transpose(1, 0, 2)             # [H, T, d]
    k64, v64 = k.astype(np.float64).transpose(1, 0, 2), v.astype(np.float64).transpose(1, 0, 2)
    b64, g64 = beta.T.astype(np.float64)[:, :, None], g.astype(np.float64).transpose(1, 0, 2)
    S64 = S.astype(np.float64)
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        S64 = _wy_chunk(qs, k64, v64, b64, g64, S64, t0, t1, o)
    S[...] = S64
    return o


def _wy_chunk(Q, K, V, B, g, S0, t0: int, t1: int, o: np.ndarray) -> np.ndarray:
    """Tokens t0..t1 of [H, T, .] inputs from state S0 [H, dk, dv] -> S1; writes o[t0:t1]."""
    G = np.cumsum(g[:, t0:t1], axis=1)                                      # [H, C, dk]
    mid = 0.5 * (G[:, :1] + G[:, -1:])
    if np.max(G[:, 0] - G[:, -1]) > _SAFE_SPAN and t1 - t0 > 1:
        h = (t0 + t1) // 2
        return _wy_chunk(Q, K, V, B, g, _wy_chunk(Q, K, V, B, g, S0, t0, h, o), h, t1, o)
    Q, K, V, B = Q[:, t0:t1], K[:, t0:t1], V[:, t0:t1], B[:, t0:t1]
    C, dv = G.shape[1], V.shape[2]
    eG = np.exp(G)
    Kn = (K * np.exp(mid - G)).transpose(0, 2, 1)                           # k_j e^{m - G_j}
    ePos = np.exp(G - mid)
    KK = np.matmul(K * ePos, Kn)                                            # [H, C, C]
    QK = np.tril(np.matmul(Q * ePos, Kn))
    IA = np.eye(C)[None] + np.tril(KK, -1) * B                              # unit lower-triangular
    UW = np.linalg.solve(IA, np.concatenate([B * V, B * K * eG], axis=2))
    U, W = UW[:, :, :dv], UW[:, :, dv:]                                     # Tm (beta V), Tm (beta K e^G)
    Vn = U - np.matmul(W, S0)                                               # [H, C, dv]
    o[t0:t1] = (np.matmul(Q * eG, S0) + np.matmul(QK, Vn)).transpose(1, 0, 2)
    GC = G[:, -1:, :]                                                       # [H, 1, dk]
    return np.exp(GC).transpose(0, 2, 1) * S0 + np.matmul((K * np.exp(GC - G)).transpose(0, 2, 1), Vn)


def gated_delta(q, k, v, g, beta, S) -> np.ndarray:
    """The delta rule for a call of T tokens: chunked WY form for long calls, else the recurrence."""
    if q.shape[0] >= CHUNKED_MIN_TOKENS:
        return gated_delta_chunked(q, k, v, g, beta, S)
    return gated_delta_rule(q, k, v, g, beta, S)


def _jit_step(head_dim: int):
    """jit.kda.step when the JIT kernels are selected and available (and d % 8 == 0), else None."""
    if head_dim % 8:
        return None
    try:
        from jit import api
        if not api.enabled():
            return None
        from jit import kda as jit_kda
        jit_kda.kernel()
    except Exception:  # noqa: BLE001 - no llvmlite / no compile: the numpy path
        return None
    return jit_kda.step


def _decode_projections(w: KDAWeights, x: np.ndarray, D: int) -> tuple:
    """One token's q, k, v, f, beta logits and gate: every projection of x as one pool job, then
    f_b and g_b as another (the same bits as one linear each). x: [1, E] -> 6 x [1, width]."""
    first = [w.attn_qkv] if w.attn_qkv is not None else [w.attn_q, w.attn_k, w.attn_v]
    outs = ops.linear_parts(first + [w.ssm_f_a, w.ssm_beta, w.ssm_g_a], x, [0] * (len(first) + 3))
    if w.attn_qkv is not None:
        outs = [outs[0][:D], outs[0][D:2 * D], outs[0][2 * D:]] + outs[1:]
    u_q, u_k, u_v, fa, beta_logit, ga = outs
    if fa.shape == ga.shape:
        f, gate = ops.linear_parts([w.ssm_f_b, w.ssm_g_b], np.stack([fa, ga]), [0, 1])
    else:
        f, gate = ops.linear(w.ssm_f_b, fa[None])[0], ops.linear(w.ssm_g_b, ga[None])[0]
    return tuple(v[None] for v in (u_q, u_k, u_v, f, beta_logit, gate))


def kda_mixer(x: np.ndarray, w: KDAWeights, conv: tuple[np.ndarray, np.ndarray, np.ndarray],
              S: np.ndarray, n_head: int, head_dim: int, eps: float) -> np.ndarray:
    """x: [T, E] normed hidden; conv: 3 x [K-1, D] and S: [H, d, d] updated in place -> [T, E]."""
    T = x.shape[0]
    H, d = n_head, head_dim
    D = H * d
    if T == 1 and (step := _jit_step(d)) is not None:                       # decode: one fused kernel
        u_q, u_k, u_v, f, beta_logit, gate = _decode_projections(w, x, D)
        o = step((u_q, u_k, u_v), conv, (w.ssm_conv1d_q, w.ssm_conv1d_k, w.ssm_conv1d_v), f, w.ssm_dt,
                 w.ssm_a, beta_logit, gate, w.ssm_norm, S, eps)
        return ops.linear(w.attn_output, o.reshape(1, D))
    if w.attn_qkv is not None:
        qkv = ops.linear(w.attn_qkv, x)                                     # [T, 3D]
        u_q, u_k, u_v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
    else:
        u_q, u_k, u_v = (ops.linear(m, x) for m in (w.attn_q, w.attn_k, w.attn_v))  # [T, D]
    f = ops.linear(w.ssm_f_b, ops.linear(w.ssm_f_a, x))                    # [T, D]
    beta_logit = ops.linear(w.ssm_beta, x)                                  # [T, H]
    gate = ops.linear(w.ssm_g_b, ops.linear(w.ssm_g_a, x))                  # [T, D]
    q = ops.silu(causal_conv(u_q, conv[0], w.ssm_conv1d_q)).reshape(T, H, d)
    k = ops.silu(causal_conv(u_k, conv[1], w.ssm_conv1d_k)).reshape(T, H, d)
    v = ops.silu(causal_conv(u_v, conv[2], w.ssm_conv1d_v)).reshape(T, H, d)
    q, k = l2_norm(q, eps), l2_norm(k, eps)
    g = ops.softplus(f + w.ssm_dt).reshape(T, H, d) * w.ssm_a[None, :, None]   # [T, H, d]  <= 0
    beta = ops.sigmoid(beta_logit)                                          # [T, H]
    o = gated_delta(q, k, v, g, beta, S)                                    # [T, H, d]
    o = ops.rms_norm(o, w.ssm_norm, eps) * ops.sigmoid(gate.reshape(T, H, d))  # [T, H, d]
    return ops.linear(w.attn_output, o.reshape(T, D))                       # [T, E]
