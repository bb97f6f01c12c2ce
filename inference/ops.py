"""Numpy reference operations shared by the architectures.

These are the oracles for the JIT kernels: every fast kernel replaces one of these functions
(`linear`, `rms_norm`, `rope_*`, `attention`, ...) and is tested against it.
Weights are used as stored: `linear` dequantizes a bounded slab of rows at a time, never the
whole matrix, so resident memory stays near the file size.
"""
from __future__ import annotations

import numpy as np

from . import ggml_cpu, ggml_matmul, interrupt
from .gguf_file import Tensor
from .quants import dequantize

_SLAB_ELEMENTS = 1 << 18  # floats dequantized at once by `linear` (1 MB: stays in cache)


def row_bytes(w: Tensor) -> int:
    bs, bb = w.block
    return w.shape_ggml[0] // bs * bb


def dequant_rows(w: Tensor, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a 2-D view of w (rows = all but ne[0]) as float32 [n, ne0]."""
    rb = row_bytes(w)
    n0 = w.shape_ggml[0]
    raw = w.data[start * rb: stop * rb]
    return dequantize(raw, w.ggml_type, (stop - start) * n0).reshape(stop - start, n0)


# llama.cpp's CPU matmul first converts the activations to the weight type's `vec_dot_type`
# (ggml-cpu.c type_traits_cpu) and multiplies those: 8-bit blocks for quantized weights, F16/BF16
# for half weights. `linear` does the same rounding (ROUND_ACTIVATIONS) so that results, near
# ties included, follow llama.cpp's; the integer JIT kernels compute exactly this.
ROUND_ACTIVATIONS = True
_Q8_1_TYPES = ("Q4_1", "Q5_1", "Q8_1")
_Q8_0_TYPES = ("Q1_0", "Q2_0", "Q4_0", "Q5_0", "Q8_0", "IQ4_NL", "MXFP4", "NVFP4")


_f16 = ggml_cpu.f16   # round to float16 precision, kept as float32


def f16_if(half: bool):
    """What an F16 cache does to the values attention reads (_f16), or with an F32 cache: nothing
    (the values as float32)."""
    return _f16 if half else _as_f32


def _as_f32(a) -> np.ndarray:
    return np.asarray(a, np.float32)


def _q8_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's quantize_row_q8_0/q8_1 (x86): per 32-block d = amax/127 (float32), q = rint(x*127/amax).
    -> q [n_blocks, 32] (integers as float32), d [n_blocks, 1] float32 (before F16 storage)."""
    b = np.asarray(x, np.float32).reshape(-1, 32)
    amax = np.max(np.abs(b), axis=1, keepdims=True)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        inv = np.where(amax > 0, np.float32(127.0) / amax, np.float32(0.0)).astype(np.float32)
        q = np.clip(np.nan_to_num(np.rint(b * inv)), -127, 127)   # subnormal amax: d is 0 anyway
    return q, amax / np.float32(127.0)


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """x [..., n] (n % 32 == 0) rounded as ggml's quantize_row_q8_0: returns F16(d) * q as float32."""
    q, d = _q8_blocks(x)
    return (q * _f16(d)).reshape(np.shape(x))


quantize_q8_1 = quantize_q8_0   # same d and q; Q8_1 also stores s = F16(d * sum(q)), see _q8_1_min_term


def _q8_1_min_term(w: Tensor, x: np.ndarray) -> np.ndarray:
    """Q4_1/Q5_1 . Q8_1: llama.cpp adds min_w * s_a per block with s_a = F16(d_a * sum(q_a)), not the
    sum of the rounded activations; this is the difference. x: [T, in] -> [T, out]."""
    n_in = w.shape_ggml[0]
    nb = n_in // 32
    q, d = _q8_blocks(x)                                   # [T*nb, 32], [T*nb, 1]
    sq = q.sum(axis=1, keepdims=True)
    corr = (_f16(d * sq) - _f16(d) * sq).reshape(-1, nb)  # [T, nb]
    bb = w.block[1]                                        # block: d f16, m f16, ...
    mins = w.data.reshape(-1, bb)[:, 2:4].copy().view(np.float16).astype(np.float32).reshape(-1, nb)
    return corr @ mins.T                                   # [T, out]


def quantize_q8_K(x: np.ndarray) -> np.ndarray:
    """x [..., n] (n % 256 == 0) rounded as ggml's quantize_row_q8_K_ref: per 256-block,
    iscale = -127/max (max = the element of largest magnitude, signed), q = min(127, rint(iscale*x)),
    d = 1/iscale kept in float32 -> returns d * q."""
    b = np.asarray(x, np.float32).reshape(-1, 256)
    idx = np.argmax(np.abs(b), axis=1)
    mx = b[np.arange(b.shape[0]), idx][:, None]             # signed value of largest magnitude
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        iscale = np.where(mx != 0, np.float32(-127.0) / mx, np.float32(0.0)).astype(np.float32)
        d = np.where(mx != 0, np.float32(1.0) / iscale, np.float32(0.0)).astype(np.float32)
        q = np.clip(np.nan_to_num(np.rint(iscale * b)), -128, 127)
    return (q * d).reshape(np.shape(x))


def round_activations(x: np.ndarray, w: Tensor) -> np.ndarray:
    """x as llama.cpp's CPU backend hands it to a dot product with weights of w's type."""
    name, n_in = w.ggml_type.name, w.shape_ggml[0]
    if name == "F32":
        return x
    if name == "F16":
        return _f16(x)
    if name == "BF16":                                      # round to nearest even, keep the top 16 bits
        u = np.ascontiguousarray(x, np.float32).view(np.uint32)
        u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
        return u.view(np.float32)
    if (name in _Q8_0_TYPES or name in _Q8_1_TYPES) and n_in % 32 == 0:
        return quantize_q8_0(x)
    if n_in % 256 == 0:                                     # K-quants, IQ*, TQ*: Q8_K
        return quantize_q8_K(x)
    return x


_jit_mods: list = []          # [jit.api, jit.linear] once imported (asked per operation)


def _jit_linear(w: Tensor):
    """jit.linear.linear if the JIT kernels are selected (LECTERN_KERNELS=jit, the default, and
    they compile here; else jit.api warns once) and cover w's type; otherwise None."""
    if not _jit_mods:
        try:
            from jit import api
            from jit import linear as jit_linear_module
        except ImportError:                                 # no llvmlite: numpy only
            return None
        _jit_mods[:] = [api, jit_linear_module]
    api, module = _jit_mods
    if not (api.supports(w.ggml_type) and api.enabled()):
        return None
    return module.linear


def _jit_covers(ws: list[Tensor]) -> bool:
    """Whether a group of weights runs on the JIT (rounded activations, kernels selected, each type covered)."""
    by_type = {w.ggml_type: w for w in ws}.values()
    return bool(ROUND_ACTIVATIONS and ws and all(_jit_linear(w) is not None for w in by_type))


def linear_each(ws: list[Tensor], xs: np.ndarray, rows=None) -> np.ndarray:
    """y[k] = W_k . xs[rows[k]] (rows default 0..K-1) for K weights of one shape -> [K, out]: a
    decode step's experts or heads. On the JIT one pool job for all K (jit.multi; the same bits
    as K linear calls), else one linear each."""
    xs = np.asarray(xs, np.float32).reshape(-1, np.shape(xs)[-1])
    rows = list(range(len(ws))) if rows is None else list(rows)
    if _jit_covers(ws):
        from jit.multi import linear_each as jit_each
        return jit_each(ws, xs, rows)
    return np.stack([linear(w, xs[r:r + 1])[0] for w, r in zip(ws, rows)])


def linear_parts(ws: list[Tensor], xs: np.ndarray, rows=None) -> list[np.ndarray]:
    """[W_k . xs[rows[k]]] for weights of one input width and any output widths -> [out_k] each:
    a decode step's projections of one hidden state, as one pool job on the JIT (the same bits as
    separate linear calls), else one linear each."""
    xs = np.asarray(xs, np.float32).reshape(-1, np.shape(xs)[-1])
    rows = list(range(len(ws))) if rows is None else list(rows)
    if _jit_covers(ws):
        from jit.multi import linear_parts as jit_parts
        return jit_parts(ws, xs, rows)
    return [linear(w, xs[r:r + 1])[0] for w, r in zip(ws, rows)]


def linear(w: Tensor, x: np.ndarray) -> np.ndarray:
    """y = x @ W.T.  w: numpy shape (out, in); x: [T, in] -> [T, out] float32.
    With rounded activations the JIT kernels compute it when selected (same rounding, integer
    dots summed in float32 per token: batch, split and decode give identical bits)."""
    if ROUND_ACTIVATIONS and (jit_linear := _jit_linear(w)) is not None:
        return jit_linear(w, x)
    n_in = w.shape_ggml[0]
    n_out = w.n_elements // n_in
    x = np.asarray(x, dtype=np.float32)
    x_in = x
    if ROUND_ACTIVATIONS:
        x = round_activations(x, w)
    if w.ggml_type.name == "F32" and not ROUND_ACTIVATIONS:
        return x @ w.data.view(np.float32).reshape(n_out, n_in).T
    y = np.empty((x.shape[0], n_out), dtype=np.float32)
    step = max(1, _SLAB_ELEMENTS // n_in)
    if ROUND_ACTIVATIONS and ggml_matmul.EXACT and w.ggml_type.name in ggml_matmul.KINDS:
        # llama.cpp's own kernel for this type and batch size, same float32 order: bit-identical
        # (so, as in llama.cpp, Q4_K and Q6_K rows depend on the batch size they come in)
        bs, bb = w.block
        exact = ggml_matmul.mul_mat(w.ggml_type.name, w.data.reshape(n_out, n_in // bs, bb), x_in)
        if exact is not None:
            return exact
    if ROUND_ACTIVATIONS and w.ggml_type.name == "Q4_1" and n_in % 32 == 0:
        # llama.cpp's own kernel, same float32 order (ggml_cpu.vec_dot_q4_1_q8_1): bit-identical
        q, d = _q8_blocks(x_in)
        nb = n_in // 32
        q, d = q.reshape(-1, nb, 32), d.reshape(-1, nb)
        blocks = w.data.reshape(n_out, nb, w.block[1])
        step = max(1, _SLAB_ELEMENTS // (8 * max(1, x.shape[0])))
        for r0 in range(0, n_out, step):
            y[:, r0:r0 + step] = ggml_cpu.vec_dot_q4_1_q8_1(blocks[r0:r0 + step], q, d)
        return y
    if ROUND_ACTIVATIONS:
        # float64 sums of the (exact) products: each row's result is then independent of BLAS
        # blocking and of the number of rows, so a prompt gives the same logits however it is
        # split into batches (in float32, rounding-level differences are amplified by the
        # 8-bit activation rounding of the next layers)
        x64 = x.astype(np.float64)
        for r0 in range(0, n_out, step):
            r1 = min(n_out, r0 + step)
            y[:, r0:r1] = x64 @ dequant_rows(w, r0, r1).T.astype(np.float64)
    else:
        for r0 in range(0, n_out, step):
            r1 = min(n_out, r0 + step)
            y[:, r0:r1] = x @ dequant_rows(w, r0, r1).T
    if ROUND_ACTIVATIONS and w.ggml_type.name == "Q5_1" and n_in % 32 == 0:
        y += _q8_1_min_term(w, x_in)
    return y


def expert(w: Tensor, e: int) -> Tensor:
    """The e-th matrix of a stacked 3-D weight (ffn_*_exps: ne [in, out, n_expert]). The same
    Tensor object every time (kept on w), so what is prepared per weight -- the JIT's LinearOp,
    keyed by the tensor -- is prepared once per expert, not once per token."""
    views = w.__dict__.setdefault("_experts", {})      # frozen dataclass: a cache beside the fields
    view = views.get(e)
    if view is None:
        n_exp = w.shape_ggml[-1]
        per = w.nbytes // n_exp
        view = views[e] = Tensor(f"{w.name}[{e}]", w.ggml_type, w.shape_ggml[:-1], w.data[e * per:(e + 1) * per])
    return view


def embed(w: Tensor, ids: np.ndarray) -> np.ndarray:
    """Rows `ids` of token_embd: [T] -> [T, n_embd] float32, dequantizing only those rows (their
    blocks gathered first, then decoded in one call: blocks decode independently)."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    n0, rb = w.shape_ggml[0], row_bytes(w)
    if not len(ids):
        return np.zeros((0, n0), np.float32)
    raw = np.asarray(w.data).reshape(-1).view(np.uint8)
    rows = raw[:raw.size // rb * rb].reshape(-1, rb)[ids]
    return dequantize(rows.reshape(-1), w.ggml_type, len(ids) * n0).reshape(len(ids), n0)


def vector(w: Tensor) -> np.ndarray:
    """A small tensor (norm weight, bias) as float32 in numpy shape."""
    return w.numpy()


BIG = 1       # elements from which rms_norm / rope go to the JIT (always: one kernel, one set of bits)


def _jit_elementwise():
    """jit.elementwise if the JIT kernels are selected and have what these kernels need, else None."""
    try:
        from jit import api
        from jit import elementwise as je
    except ImportError:
        return None
    return je if je.usable(16) and api.enabled() else None


def rms_norm(x: np.ndarray, w: np.ndarray | None, eps: float) -> np.ndarray:
    """x * (1 / sqrt(mean(x^2) + eps)) * w over the last axis, rounded as ggml does it: squares in
    float32 summed in float64, mean and scale in float32."""
    if w is not None and x.shape[-1] % 16 == 0 and x.size >= BIG and (je := _jit_elementwise()) is not None:
        return je.rms_norm(x, w, eps)
    x = np.asarray(x, np.float32)
    ms = (np.sum((x * x).astype(np.float64), axis=-1, keepdims=True) / x.shape[-1]).astype(np.float32)
    y = x * (np.float32(1.0) / np.sqrt(ms + np.float32(eps)))
    return y * w if w is not None else y


def _float_array(x) -> bool:
    """An ndarray of floats with at least one axis: the unary ops below can work in one buffer."""
    return isinstance(x, np.ndarray) and x.ndim > 0 and x.dtype.kind == "f"


def silu(x: np.ndarray) -> np.ndarray:
    """x / (1 + e^-x); for float arrays in one temporary buffer (the same operations, same bits)."""
    if not _float_array(x):
        return x / (1.0 + np.exp(-x))
    return np.divide(x, t := _one_plus_exp_neg(x), out=t)


def silu_ggml(x: np.ndarray) -> np.ndarray:
    """silu over float32 rows with llama.cpp's own exp (ggml_cpu.silu): bit-identical to its CPU
    backend. Used by the llama forward, which matches llama.cpp bit for bit (Q4_1 files)."""
    return ggml_cpu.silu(x)


def swiglu_ggml(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    """silu_ggml(g) * u (llama.cpp's ggml_vec_swiglu_f32); on the JIT kernel when selected (same bits)."""
    try:
        from jit import api
        from jit import elementwise as je
    except ImportError:
        je = None
    if je is not None and je.usable(g.shape[-1]) and api.enabled():
        return je.swiglu(g, u)
    return silu_ggml(g) * u


def gelu_f16_mul(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    """ggml_cpu.geglu(g, u) (llama.cpp's F16 GELU table); on the JIT kernel when selected (same bits)."""
    try:
        from jit import api
        from jit import elementwise as je
    except ImportError:
        je = None
    if je is not None and je.usable(g.shape[-1]) and api.enabled():
        return je.gelu_mul(g, u)
    return ggml_cpu.geglu(g, u)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x); for float arrays in one temporary buffer (same bits)."""
    if not _float_array(x):
        return 1.0 / (1.0 + np.exp(-x))
    return np.divide(1.0, t := _one_plus_exp_neg(x), out=t)


def sigmoid_ggml(x: np.ndarray) -> np.ndarray:
    """1 / (1 + ggml_v_expf(-x)) in float32: a sigmoid whose exp the JIT's decode plans compute
    with the same bits (jit/kernels/moe_block.py; llama.cpp's own sigmoid uses libm's expf, within
    an ulp of this). Used by Step-3.5's head gate and the MoE routers."""
    x = np.asarray(x, np.float32)
    with np.errstate(over="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + ggml_cpu.v_expf(-x))


def _one_plus_exp_neg(x: np.ndarray) -> np.ndarray:
    """1 + e^-x in a new buffer (silu's and sigmoid's denominator, computed in place)."""
    t = np.negative(x)
    np.exp(t, out=t)
    t += 1.0
    return t


def softplus(x: np.ndarray) -> np.ndarray:
    """x if x > 20 else log(1 + e^x) (ggml); for float arrays in one temporary buffer (same bits)."""
    if not _float_array(x):
        return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))
    t = np.minimum(x, 20.0)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    np.copyto(t, x, where=x > 20.0)
    return t


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    c = np.float32(np.sqrt(2.0 / np.pi))
    return 0.5 * x * (1.0 + np.tanh(c * (x + np.float32(0.044715) * x * x * x)))


def gelu_tanh_f16(x: np.ndarray) -> np.ndarray:
    """GELU-tanh as llama.cpp's CPU backend computes it (GGML_GELU_FP16): x rounded to F16, looked
    up in a table of F16-rounded gelu values; x <= -10 -> 0, x >= 10 -> x."""
    x = np.asarray(x, np.float32)
    y = _f16(gelu_tanh(_f16(x)))
    return np.where(x <= -10.0, np.float32(0.0), np.where(x >= 10.0, x, y)).astype(np.float32)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def _rope_angles(pos: np.ndarray, n_dims: int, base: float, freq_scale: float,
                 freq_factors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    # theta_i = p * freq_scale * base^(-2i/n_dims) / ff[i]   -> cos, sin: [T, n_dims/2]
    # computed as ggml does (float32 powers built pair by pair, the C library's cosf/sinf)
    return ggml_cpu.rope_angles(pos, n_dims, base, freq_scale, freq_factors)


def rope_neox(x: np.ndarray, pos: np.ndarray, n_dims: int, base: float, freq_scale: float = 1.0,
              freq_factors: np.ndarray | None = None) -> np.ndarray:
    """NEOX rotation: x: [T, H, D]; pairs (i, i + n_dims/2) for i < n_dims/2; dims >= n_dims pass."""
    cos, sin = _rope_angles(pos, n_dims, base, freq_scale, freq_factors)
    if np.ndim(x) == 3 and np.size(x) >= BIG and (je := _jit_elementwise()) is not None:
        return je.rope(x, cos, sin, n_dims, True)
    cos, sin = cos[:, None, :], sin[:, None, :]
    half = n_dims // 2
    x = np.asarray(x, np.float32)
    out = x.copy()
    out[..., :half], out[..., half:n_dims] = ggml_cpu.rotate(x[..., :half], x[..., half:n_dims], cos, sin)
    return out


def rope_norm(x: np.ndarray, pos: np.ndarray, n_dims: int, base: float, freq_scale: float = 1.0,
              freq_factors: np.ndarray | None = None) -> np.ndarray:
    """Llama ("normal") rotation: adjacent pairs (2i, 2i+1); x: [T, H, D]."""
    cos, sin = _rope_angles(pos, n_dims, base, freq_scale, freq_factors)
    if np.ndim(x) == 3 and np.size(x) >= BIG and (je := _jit_elementwise()) is not None:
        return je.rope(x, cos, sin, n_dims, False)
    cos, sin = cos[:, None, :], sin[:, None, :]
    x = np.asarray(x, np.float32)
    out = x.copy()
    out[..., 0:n_dims:2], out[..., 1:n_dims:2] = ggml_cpu.rotate(x[..., 0:n_dims:2], x[..., 1:n_dims:2], cos, sin)
    return out


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, q_pos: np.ndarray, k_pos: np.ndarray,
              scale: float, window: int | None = None, round_f16: bool = False,
              decode_order: bool = False) -> np.ndarray:
    """Causal (optionally sliding-window) attention with grouped KV heads.

    q: [T, Hq, Dk]; k: [S, Hkv, Dk]; v: [S, Hkv, Dv]; positions q_pos [T], k_pos [S].
    A key is visible iff k_pos <= q_pos and (no window or q_pos - k_pos < window).
    Query head h reads KV head h // (Hq / Hkv).  -> [T, Hq, Dv]
    round_f16: round q, k, v and the softmax probabilities to F16 first, as llama.cpp's CPU
    attention does with its F16 KV cache (kq = k·f16(q); out = v·f16(softmax(kq*scale + mask))).
    decode_order: with round_f16, a single query sums in llama.cpp's decode order (_attention_f16).
    """
    if attention_is_long(q.shape[0], q.shape[1], k.shape[0]):
        return attention_blocked(q, k, v, q_pos, k_pos, scale, window, round_f16)
    if round_f16:
        return _attention_f16(q, k, v, q_pos, k_pos, scale, window,
                              decode_order and SINGLE_QUERY_DECODE_ORDER)
    T, Hq, _ = q.shape
    Hkv = k.shape[1]
    g = Hq // Hkv
    diff = q_pos[:, None].astype(np.int64) - k_pos[None, :].astype(np.int64)  # [T, S]
    visible = diff >= 0
    if window is not None:
        visible &= diff < window
    mask = np.where(visible, 0.0, -np.inf).astype(np.float32)
    kh = np.repeat(k, g, axis=1).transpose(1, 2, 0)   # [Hq, Dk, S]
    vh = np.repeat(v, g, axis=1).transpose(1, 0, 2)   # [Hq, S, Dv]
    scores = np.matmul(q.transpose(1, 0, 2), kh) * np.float32(scale) + mask[None]  # [Hq, T, S]
    p = softmax(scores, axis=-1)
    return np.matmul(p, vh).transpose(1, 0, 2)        # [T, Hq, Dv]


def _jit_attention(dk: int, dv: int, ring: int, half: bool = True):
    """jit.attention.attend if the JIT kernels are selected and cover these head sizes and this
    cache type (half: float16), else None."""
    try:
        from jit import api
    except ImportError:
        return None
    if not api.enabled():
        return None
    from jit import attention as ja
    return ja.attend if ja.usable(dk, dv, ring, half=half) else None


def cached_attention(q: np.ndarray, kc: np.ndarray, vc: np.ndarray, pos: np.ndarray, scale: float,
                     window: int | None = None, single: bool | None = None) -> np.ndarray:
    """Attention of q [T, Hq, Dk] at positions pos (consecutive) against a cache kc [R, Hkv, Dk],
    vc [R, Hkv, Dv] that already holds every key the queries see, position p in slot p % R (R = the
    context for a plain cache, a ring for a sliding window), as llama.cpp's CPU path computes it
    over a cache of that type: a float16 cache (F16, llama.cpp's default) as
    `attention(..., round_f16=True, decode_order=True)`, a float32 cache the same sums with
    nothing rounded to half. single: sum in llama.cpp's single-query order (default: T == 1; a
    caller that splits a batch passes the batch's answer). On the JIT kernel when selected (same
    bits), else numpy."""
    T = q.shape[0]
    pos = np.asarray(pos, np.int64)
    R = kc.shape[0]
    half = kc.dtype == np.float16
    k_begin = np.zeros(T, np.int64) if window is None else np.maximum(0, pos - window + 1)
    single = T == 1 if single is None else single
    decode = single and SINGLE_QUERY_DECODE_ORDER
    attend = _jit_attention(q.shape[2], vc.shape[2], R, half)
    if attend is not None:
        return _attend_in_blocks(attend, q, kc, vc, pos, k_begin, scale, decode)
    k_pos = np.arange(int(k_begin[0]), int(pos[-1]) + 1)
    if k_pos[-1] < R:
        keys, vals = kc[k_pos[0]:k_pos[-1] + 1], vc[k_pos[0]:k_pos[-1] + 1]
    else:
        keys, vals = kc[k_pos % R], vc[k_pos % R]
    if half:
        return attention(q, keys, vals, pos, k_pos, scale, window, round_f16=True, decode_order=single)
    if attention_is_long(T, q.shape[1], len(k_pos)):
        return attention_blocked(q, keys, vals, pos, k_pos, scale, window)
    return _attention_f16(q, keys, vals, pos, k_pos, scale, window, single and SINGLE_QUERY_DECODE_ORDER,
                          half=False)


# A long chunk's attention runs in query blocks of about this many scores (queries x heads x keys:
# ~0.3 s of a step35 full-attention layer), a Stop (inference.interrupt.poll) seen between them
POLL_SCORES = 1 << 26


def _attend_in_blocks(attend, q, kc, vc, pos, k_begin, scale, decode) -> np.ndarray:
    """attend(...) over query blocks: the same bits (every query's sums are its own)."""
    T, Hq = q.shape[:2]
    keys = int(pos[-1]) + 1 - int(k_begin.min())
    step = max(1, POLL_SCORES // max(1, Hq * keys))
    if step >= T:
        return attend(q, kc, vc, pos, k_begin, scale, decode)
    out = np.empty((T, Hq, vc.shape[2]), np.float32)
    for t0 in range(0, T, step):
        interrupt.poll(t0 / T)
        t1 = min(T, t0 + step)
        out[t0:t1] = attend(q[t0:t1], kc, vc, pos[t0:t1], k_begin[t0:t1], scale, decode)
    return out


# Long contexts: above this many scores (queries x heads x keys; 4M = a 512-token chunk of 32
# heads over 256 keys) `attention` runs attention_blocked (BLAS matmuls over query blocks)
# instead of the llama.cpp-order emulation
EXACT_ATTENTION_MAX = 1 << 22
EXACT_ATTENTION_KEYS = 1024  # ... or over more keys than this (a decode step over a long cache)


def attention_is_long(T: int, Hq: int, S: int) -> bool:
    return T * Hq * S > EXACT_ATTENTION_MAX or S > EXACT_ATTENTION_KEYS
_BLOCK_SCORES = 1 << 23      # floats of scores per block (32 MB)


def attention_blocked(q, k, v, q_pos, k_pos, scale, window=None, round_f16=False) -> np.ndarray:
    """`attention` in float32 BLAS matmuls, one KV head group and one block of queries at a time
    (never a full [Hq, T, S] score array). With round_f16, q, k, v and the probabilities are
    rounded to F16 like llama.cpp's, but sums run in BLAS order: equal to `attention` to float32
    rounding, not bit for bit. Shapes as `attention`."""
    T, Hq, Dk = q.shape
    S, Hkv, Dv = v.shape
    g = Hq // Hkv
    rnd = _f16 if round_f16 else (lambda a: np.asarray(a, np.float32))
    kf, vf = (a.astype(np.float32) if a.dtype == np.float16 else rnd(a) for a in (k, v))   # an F16 cache: exact
    q_pos, k_pos = np.asarray(q_pos, np.int64), np.asarray(k_pos, np.int64)
    out = np.empty((T, Hq, Dv), np.float32)
    tb = max(1, _BLOCK_SCORES // max(1, g * S))
    for t0 in range(0, T, tb):
        t1 = min(T, t0 + tb)
        diff = q_pos[t0:t1, None] - k_pos[None, :]                                # [t, S]
        visible = diff >= 0
        if window is not None:
            visible &= diff < window
        cols = np.flatnonzero(visible.any(axis=0))                                 # keys any query sees
        if cols.size == 0:
            out[t0:t1] = np.nan
            continue
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        mask = np.where(visible[:, lo:hi], np.float32(0), np.float32(-np.inf))[:, None, :]   # [t, 1, s]
        t = t1 - t0
        for h in range(Hkv):                                                       # one 2-D GEMM each way
            qh = np.ascontiguousarray(rnd(q[t0:t1, h * g:(h + 1) * g])).reshape(t * g, Dk)
            kh, vh = np.ascontiguousarray(kf[lo:hi, h]), np.ascontiguousarray(vf[lo:hi, h])
            sc = (qh @ kh.T).reshape(t, g, hi - lo) * np.float32(scale) + mask     # [t, g, s]
            sc -= sc.max(axis=-1, keepdims=True)
            np.exp(sc, out=sc)
            sc /= sc.sum(axis=-1, keepdims=True, dtype=np.float32)
            out[t0:t1, h * g:(h + 1) * g] = (rnd(sc).reshape(t * g, hi - lo) @ vh).reshape(t, g, Dv)
    return out


# llama.cpp sums a single query's attention dot products in another order than a batch's (see
# _attention_f16); attention(decode_order=True) follows it. False here uses the batch order for
# every query, so that any split of a prompt computes the batch's bits (tests of the row-by-row
# math set it)
SINGLE_QUERY_DECODE_ORDER = True


def _attention_f16(q, k, v, q_pos, k_pos, scale, window, decode_order=False, half=True):
    """`attention` as llama.cpp's CPU backend computes it without flash attention, bit for bit
    (llama-graph.cpp build_attn_mha: kq = mul_mat(k, q), soft_max_ext(kq, mask, scale),
    kqv = mul_mat(v, kq)): q and the probabilities rounded to F16, F16 dot products in tinyBLAS's
    order, ggml's softmax (ggml_cpu.dot_f16, softmax_rows). With decode_order, like llama.cpp, a
    single query (T == 1, decoding) sums its dot products in ggml_vec_dot_f16's order instead (llamafile_sgemm declines
    n < 2, llamafile/sgemm.cpp:3820), so decoding a token differs from the same row of a batch in
    the last float32 bits, exactly as llama.cpp's own decoding does.
    half=False: the same sums over an F32 cache, nothing rounded to half (the JIT kernel's twin
    for a float32 cache)."""
    rnd = f16_if(half)
    T, Hq, Dk = q.shape
    g = Hq // k.shape[1]
    decode = T == 1 and decode_order
    # llama.cpp's cache holds the key of position p in cell p (one sequence, no wrap-around), and the
    # summation order follows the cell: lay the keys out by position (from a multiple of 64, which
    # keeps every lane and 16-group of the sums; missing cells are zeros and masked)
    k_pos = np.asarray(k_pos, np.int64)
    base = int(k_pos.min()) // 64 * 64 if len(k_pos) else 0
    if len(k_pos) and not np.array_equal(k_pos, np.arange(base, base + len(k_pos))):
        span = int(k_pos.max()) - base + 1
        kf, vf = np.zeros((span,) + k.shape[1:], np.float32), np.zeros((span,) + v.shape[1:], np.float32)
        kf[k_pos - base], vf[k_pos - base] = k, v
        present = np.zeros(span, bool)
        present[k_pos - base] = True
        k, v, k_pos = kf, vf, np.where(present, np.arange(base, base + span), np.iinfo(np.int64).max)
    diff = q_pos[:, None].astype(np.int64) - k_pos[None, :]                     # [T, S]
    visible = diff >= 0
    if window is not None:
        visible &= diff < window
    S = k.shape[0]
    kh = np.repeat(rnd(k), g, axis=1).transpose(1, 0, 2)[:, None]             # [Hq, 1, S, Dk]
    vh = np.repeat(rnd(v), g, axis=1).transpose(1, 2, 0)[:, None]             # [Hq, 1, Dv, S]
    out = np.empty((T, Hq, v.shape[2]), np.float32)
    tb = max(1, (1 << 22) // (Hq * max(S, v.shape[2]) * 16))                  # bounded lane arrays
    for t0 in range(0, T, tb):
        t1 = min(T, t0 + tb)
        qh = rnd(q[t0:t1]).transpose(1, 0, 2)[:, :, None, :]                 # [Hq, t, 1, Dk]
        kq = ggml_cpu.dot_f16(qh, kh, decode=decode) * np.float32(scale)      # [Hq, t, S]
        kq = np.where(visible[None, t0:t1], kq, -np.inf).astype(np.float32)
        p = rnd(ggml_cpu.softmax_rows(kq))[:, :, None, :]                    # [Hq, t, 1, S]
        out[t0:t1] = ggml_cpu.dot_f16(p, vh, decode=decode).transpose(1, 0, 2)
    return out
