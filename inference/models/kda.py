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

import functools
from dataclasses import dataclass

import numpy as np

from .. import ops
from ..gguf_file import Tensor
from .base import in_row_parts


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
    z[t, c] = sum_i w[c, i] * x[t + i, c] with x = concat(state, u)  -> [T, D], summed from i = 0
    up (the same order, so the same bits, as the one-token decode kernel's twin).
    """
    T, K = u.shape[0], w.shape[1]
    r = K - 1
    wt = np.ascontiguousarray(w.T, u.dtype)                    # [K, D]: tap i contiguous
    head = np.concatenate([state, u[:r]], axis=0)              # x[0 : 2r]: the rows that read state
    z = np.empty_like(u)
    m = min(r, T)
    _taps(head, wt, 0, m, z[:m], np.empty_like(z[:m]))
    tmp = np.empty((min(CONV_ROWS, max(T - r, 0)), u.shape[1]), u.dtype)
    for t0 in range(r, T, CONV_ROWS):                          # rows t >= r read u only: x[t+i] = u[t-r+i]
        t1 = min(T, t0 + CONV_ROWS)
        _taps(u, wt, t0 - r, t1 - t0, z[t0:t1], tmp[:t1 - t0])
    state[...] = np.concatenate([state, u], axis=0)[T:] if T < r else u[T - r:]
    return z


CONV_ROWS = 64          # rows per pass of the conv taps (the partial sums stay in cache)


def _taps(x: np.ndarray, wt: np.ndarray, s: int, n: int, out: np.ndarray, tmp: np.ndarray) -> None:
    """out[t] = sum_i wt[i] * x[s + t + i] for t < n, from i = 0 up."""
    np.multiply(x[s:s + n], wt[0], out=out)
    for i in range(1, wt.shape[0]):
        out += np.multiply(x[s + i:s + i + n], wt[i], out=tmp)


def l2_norm(x: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(sum(x^2) + eps) over the last axis (ggml: rms_norm(x, eps/n) * n^-1/2)."""
    n = x.shape[-1]
    y = ops.rms_norm(x, _ones(n), eps / n)                     # weight 1: the JIT row kernel, same bits
    y *= np.float32(1.0 / np.sqrt(n))
    return y


@functools.cache
def _ones(n: int) -> np.ndarray:
    return np.ones(n, np.float32)


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


# Tokens per WY chunk (llama.cpp's dormant graph uses 16 for KDA too). Also the rows of every
# matmul of the S update: 16 x 128 x 128 = 2^18 multiply-adds per head, up to which OpenBLAS
# stays on the calling thread; larger calls wake its threads, which on a busy 2-core machine
# (the JIT pool's workers spinning between matmuls) made the same call ~20x slower.
CHUNK = 16
HEADS = 4               # heads per pass of the chunked form
SUB = 4                 # tokens per sub-block of a chunk: the decay reference of the factored sums
# Calls of at least this many tokens (long-document prefill chunks) run the WY form; shorter ones
# run the exact recurrence, whose bits do not depend on how a prompt is split into calls (the
# WY form's do, at float rounding: its chunk grid moves with the split)
CHUNKED_MIN_TOKENS = 256
F32 = np.float32
# Tokens per pass of the mixer: a longer prefill chunk (which MLA's decompressed attention and
# the MoE want) runs the mixer in parts of this many tokens, a multiple of CHUNK, so the WY chunk
# grid is the one of separate calls. At 2048 tokens its [T, H*d] temporaries exceed glibc's
# largest mmap threshold (32 MB): each would be fresh pages, faulted in on every call.
MIXER_ROWS = 512


def gated_delta_chunked(q: np.ndarray, k: np.ndarray, v: np.ndarray, g: np.ndarray,
                        beta: np.ndarray, S: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """The same recurrence in chunked WY form (llama.cpp delta-net-base.cpp); S updated in place.

    Per head and chunk of C tokens (local i, j), with q pre-scaled by 1/sqrt(d) and
    G_i = cumsum_{s<=i} g_s  [C, dk]:
        A[i,j]  = beta_i sum_c k_i[c] k_j[c] e^{G_i[c]-G_j[c]}   (j < i)
        Kq[i,j] = sum_c q_i[c] k_j[c] e^{G_i[c]-G_j[c]}           (j <= i)
        Tm = (I + A)^-1;  U = Tm (beta V);  W = Tm (beta K e^G)
        V' = U - W S0;  O = (Q e^G) S0 + Kq V';  S1 = e^{G_C} S0 + (K e^{G_C - G})^T V'
    Shapes as gated_delta_rule. Everything but the chunk-sequential S update is computed for all
    chunks at once, in float32 on the [H, N, C, d] layout (T zero-padded to N*C: a padded token
    has k = 0, beta = 0, g = 0, a no-op). Every decay is a product of step decays e^{g_s} <= 1
    (see _decay_sums), as the recurrence's own, so no decay, however steep, overflows. Heads are
    independent: they go HEADS at a time, so the temporaries stay a few MB (cache, and no fresh
    pages to fault in for every layer).
    """
    T, H, dv = v.shape
    o = np.empty((T, H, dv), F32)
    for h0 in range(0, H, HEADS):
        h = slice(h0, min(H, h0 + HEADS))
        o[:, h] = _chunked(q[:, h], k[:, h], v[:, h], g[:, h], beta[:, h], S[h], chunk).transpose(1, 0, 2)
    return o


def _chunked(q, k, v, g, beta, S: np.ndarray, C: int) -> np.ndarray:
    """gated_delta_chunked for a few heads -> O [H, T, dv]; S updated in place."""
    T, H, dv = v.shape
    dk = k.shape[2]
    N = -(-T // C)
    Q = _heads(q, N, C, F32, np.float32(1.0 / np.sqrt(dv)))                  # [H, N, C, dk]
    K, V = _heads(k, N, C, F32), _heads(v, N, C, F32)
    B = _heads(beta[:, :, None], N, C, F32)                                 # [H, N, C, 1]
    eg = _heads(g, N, C, F32)
    np.exp(eg, out=eg)                                                      # [H, N, C, dk] step decays
    KK, QK, eG, eGCK = _decay_sums(Q, K, eg, SUB if C % SUB == 0 else C)
    KK *= B
    KK += np.eye(C, dtype=F32)
    Tm = np.linalg.inv(KK)                                                  # unit lower-triangular
    R = np.empty((H, N, C, dv + dk), F32)                                   # beta V | beta K e^G
    np.multiply(B, V, out=R[..., :dv])
    np.multiply(K, eG, out=R[..., dv:])
    R[..., dv:] *= B
    UW = np.matmul(Tm, R)                                                   # [H, N, C, dv + dk]
    U = UW[..., :dv]
    WQ = np.empty((H, N, 2 * C, dk), F32)                                   # W | Q e^G
    WQ[:, :, :C] = UW[..., dv:]
    np.multiply(Q, eG, out=WQ[:, :, C:])
    KdT = eGCK.transpose(0, 1, 3, 2).copy()                                 # [H, N, dk, C]
    eGC = eG[:, :, -1:].transpose(0, 1, 3, 2)                               # [H, N, dk, 1] e^{G_C}
    O = np.empty((H, N, C, dv), F32)
    S1 = S.astype(F32)
    for n in range(N):
        P = np.matmul(WQ[:, n].reshape(H, 2, C, dk), S1[:, None])           # [H, 2, C, dv]: W S0 | Q e^G S0
        Vn = U[:, n] - P[:, 0]                                              # V' = U - W S0
        O[:, n] = P[:, 1] + np.matmul(QK[:, n], Vn)
        S1 = eGC[:, n] * S1 + np.matmul(KdT[:, n], Vn)
    S[...] = S1
    return O.reshape(H, N * C, dv)[:, :T]


def _heads(x: np.ndarray, N: int, C: int, dtype, scale=None) -> np.ndarray:
    """[T, H, e] -> [H, N, C, e] in dtype, tokens T.. N*C zero; times scale if given."""
    T, H, e = x.shape
    out = np.empty((H, N * C, e), dtype)
    out[:, T:] = 0
    if scale is None:
        out[:, :T] = x.transpose(1, 0, 2)
    else:
        np.multiply(x.transpose(1, 0, 2), scale, out=out[:, :T])
    return out.reshape(H, N, C, e)


def _decay_sums(Q: np.ndarray, K: np.ndarray, eg: np.ndarray, b: int):
    """The chunk's decay-weighted sums and decays, as products of the step decays e^{g_s} <= 1.

    Q, K, eg = e^g [H, N, C, d] float32. A chunk is cut into nb blocks of b tokens; with E_I = G
    just before block I (E_0 = 0, E_nb = G_C), for i in block I and j in block J:
        X_i = e^{G_i - E_I},  Y_j = e^{E_{J+1} - G_j},  D[I, m] = e^{E_I - E_m} (m <= I)
        e^{G_i - G_j} = X_i D[I, J+1] Y_j  (J < I),  e^{G_i} = X_i D[I, 0],  e^{G_C - G_j} = D[nb, J+1] Y_j
    each a product of step decays (no exponent is ever formed, so none can overflow and none
    loses precision to a large cumulative sum); a product that underflows is a negligible term.
    Pairs inside one block are summed term by term.
    -> KK [H, N, C, C] (sum_c k_i k_j e^{G_i-G_j}, j < i), QK (same with q_i, j <= i), zero above;
       eG = e^G and eGCK = K e^{G_C - G}, [H, N, C, d]; all float32."""
    H, N, C, d = K.shape
    nb = C // b
    egb, Kb, Qb = (x.reshape(H, N, nb, b, d) for x in (eg, K, Q))
    X, Y = egb.copy(), np.ones_like(egb)                                    # [H, N, nb, b, d]
    for j in range(1, b):                                                   # (np.cumprod on this axis
        X[:, :, :, j] *= X[:, :, :, j - 1]                                  #  is 8x slower)
        np.multiply(Y[:, :, :, b - j], egb[:, :, :, b - j], out=Y[:, :, :, b - j - 1])
    step = X[:, :, :, -1]                                                   # e^{E_{I+1} - E_I}
    XKQ = np.empty((H, N, nb, 2 * b, d), F32)                               # K X | Q X per block
    np.multiply(Kb, X, out=XKQ[:, :, :, :b])
    np.multiply(Qb, X, out=XKQ[:, :, :, b:])
    KY = np.multiply(Kb, Y, out=Y)
    KK = np.zeros((H, N, C, C), F32)
    QK = np.zeros((H, N, C, C), F32)
    Dm = np.ones((H, N, 1, 1, d), F32)                                      # D[I, 1..I]: [.., I, 1, d]
    for I in range(1, nb):
        YT = (KY[:, :, :I] * Dm).reshape(H, N, I * b, d).transpose(0, 1, 3, 2)
        P = np.matmul(XKQ[:, :, I], YT)                                     # [H, N, 2b, I b]
        KK[:, :, I * b:I * b + b, :I * b] = P[:, :, :b]
        QK[:, :, I * b:I * b + b, :I * b] = P[:, :, b:]
        Dm = np.concatenate([Dm * step[:, :, I, None, None], np.ones((H, N, 1, 1, d), F32)], axis=2)
    # Dm is now D[nb, 1..nb]
    _block_diagonal(Qb, Kb, egb, KK, QK)
    E0 = np.ones((H, N, nb, 1, d), F32)                                     # D[I, 0] = e^{E_I}
    for I in range(1, nb):
        np.multiply(E0[:, :, I - 1], step[:, :, I - 1, None], out=E0[:, :, I])
    eG = np.multiply(X, E0, out=X).reshape(H, N, C, d)                      # X_i D[I, 0] (step dies)
    return KK, QK, eG, np.multiply(KY, Dm, out=KY).reshape(H, N, C, d)


def _block_diagonal(Qb, Kb, egb, KK: np.ndarray, QK: np.ndarray) -> None:
    """The pairs j <= i inside each block, term by term, into KK and QK [H, N, C, C] (in place).
    Qb, Kb, egb [H, N, nb, b, d]; the pair decay e^{G_i - G_j} = prod_{s=j+1..i} e^{g_s}."""
    H, N, nb, b, d = Kb.shape
    ii, jj = np.tril_indices(b, -1)                                          # the P = b(b-1)/2 pairs
    kk = np.empty((H, N, nb, len(ii)), F32)
    qk = np.empty_like(kk)
    for j in range(b - 1):                                                   # E = k_j e^{G_i - G_j}, i = j+1..
        E = Kb[:, :, :, j].copy()
        for i in range(j + 1, b):
            E *= egb[:, :, :, i]
            p = np.flatnonzero((ii == i) & (jj == j))[0]
            kk[..., p] = np.einsum("hnbd,hnbd->hnb", Kb[:, :, :, i], E)
            qk[..., p] = np.einsum("hnbd,hnbd->hnb", Qb[:, :, :, i], E)
    qq = np.einsum("hnbid,hnbid->hnbi", Qb, Kb)                            # e^0 on the diagonal
    for I in range(nb):
        o = I * b
        KK[:, :, o + ii, o + jj] = kk[:, :, I]
        QK[:, :, o + ii, o + jj] = qk[:, :, I]
        QK[:, :, o + np.arange(b), o + np.arange(b)] = qq[:, :, I]


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
    if T > MIXER_ROWS:                 # a long chunk in parts: the same recurrence, temporaries in cache
        return in_row_parts(lambda part: kda_mixer(part, w, conv, S, n_head, head_dim, eps), x, MIXER_ROWS)
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
    g = ops.softplus(f + w.ssm_dt).reshape(T, H, d)
    g *= w.ssm_a[None, :, None]                                             # [T, H, d]  <= 0
    beta = ops.sigmoid(beta_logit)                                          # [T, H]
    o = gated_delta(q, k, v, g, beta, S)                                    # [T, H, d]
    o = ops.rms_norm(o, w.ssm_norm, eps)
    o *= ops.sigmoid(gate.reshape(T, H, d))                                 # [T, H, d]
    return ops.linear(w.attn_output, o.reshape(T, D))                       # [T, E]
