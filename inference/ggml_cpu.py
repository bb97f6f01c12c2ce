"""What llama.cpp's x86 CPU backend (AVX512 build, llamafile sgemm on) computes, bit for bit.

Why bit for bit: llama.cpp rounds activations to 8 bits before every quantized matmul and keeps
attention in F16, so a difference of one float32 ulp anywhere flips a few of those roundings and,
over 30 layers, grows to the size of the rounding noise itself (SmolLM2-135M: 0.3-0.5 logits; the
same as llama.cpp with flash attention on against itself with it off). Agreement on near ties
therefore needs the same float32 operations in the same order. Each function names the llama.cpp
source it follows (vendor/llama.cpp of llama_cpp_python 0.3.36) and was checked against tensors
dumped from that build (eval callback): identical bits.

float32 fused multiply-adds are emulated in float64: the product of two float32 is exact there,
so only the sum rounds twice (float64 then float32), which differs from one rounding only when
the float64 sum lands exactly on a float32 halfway point (never seen in practice).
"""
from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

F32, F64 = np.float32, np.float64


def f16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, F32).astype(np.float16).astype(F32)


def fma(a, b, c) -> np.ndarray:
    """float32 fma(a, b, c) (a, b, c float32)."""
    return (np.asarray(a, F64) * b + c).astype(F32)


def reduce_add16(a: np.ndarray) -> np.ndarray:
    """_mm512_reduce_add_ps over the last axis (16 lanes), in GCC's order (avx512fintrin.h)."""
    h8 = a[..., 8:16] + a[..., 0:8]
    h4 = h8[..., 4:8] + h8[..., 0:4]
    return (h4[..., 0] + h4[..., 2]) + (h4[..., 1] + h4[..., 3])


# --- Q4_1 weights . Q8_1 activations ------------------------------------------------------------
def vec_dot_q4_1_q8_1(blocks: np.ndarray, q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """ggml_vec_dot_q4_1_q8_1, AVX2 + AVX512-VNNI (ggml-cpu/arch/x86/quants.c:ggml_vec_dot_q4_1_q8_1,
    mul_sum_us8_pairs_float, hsum_float_8). Per 32-block, 8 int32 lanes of 4 products each;
    acc[l] = fma(f32(d_w * d_a), lane[l], acc[l]); summs += m_w * s_a; hsum_float_8(acc) + summs.

    blocks: Q4_1 rows [out, nb, 20] uint8 (d f16, m f16, 16 bytes: element j low nibble of byte j,
    element j+16 high nibble); q, d: the Q8_1 rounding of x (ops._q8_blocks) as [T, nb, 32], [T, nb]
    with d before its F16 storage. -> [T, out] float32."""
    T, nb, _ = q.shape
    d_a = f16(d)                                                    # stored F16
    s_a = f16(d * q.sum(axis=2))                                    # s = F16(d * sum(q))
    q_a = q.reshape(T, nb, 8, 4).astype(F32)
    d_w = blocks[..., 0:2].copy().view(np.float16).astype(F32)[..., 0]     # [out, nb]
    m_w = blocks[..., 2:4].copy().view(np.float16).astype(F32)[..., 0]
    nib = blocks[..., 4:]
    q_w = np.concatenate([nib & 15, nib >> 4], axis=-1).astype(F32).reshape(-1, nb, 8, 4)
    acc = np.zeros((T, q_w.shape[0], 8), F32)
    summs = np.zeros((T, q_w.shape[0]), F32)
    for b in range(nb):
        lanes = np.einsum("tlk,olk->tol", q_a[:, b], q_w[:, b])    # small integers: exact
        acc = fma((d_a[:, b, None] * d_w[None, :, b])[..., None], lanes, acc)
        summs = summs + m_w[None, :, b] * s_a[:, b, None]           # product of two F16: exact
    r = acc[..., 4:] + acc[..., :4]                                 # hsum_float_8
    return ((r[..., 0] + r[..., 2]) + (r[..., 1] + r[..., 3])) + summs


# --- RoPE ------------------------------------------------------------------------------------
def _libm():
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        for name in ("cosf", "sinf"):
            getattr(lib, name).restype = ctypes.c_float
            getattr(lib, name).argtypes = [ctypes.c_float]
        lib.powf.restype = ctypes.c_float
        lib.powf.argtypes = [ctypes.c_float, ctypes.c_float]
        lib.tanhf.restype = ctypes.c_float
        lib.tanhf.argtypes = [ctypes.c_float]
        return lib
    except (OSError, AttributeError):
        return None


_LIBM = _libm()
_ROPE_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}   # key -> cos, sin, filled
ROPE_BLOCK = 256             # positions computed together when one of them is asked for


def _cosf_sinf(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cosf/sinf of float32 angles as the C library computes them (glibc's sinf is not correctly
    rounded: ~1.5 % of these angles differ from the rounded float64 value)."""
    if _LIBM is None:
        return np.cos(t.astype(F64)).astype(F32), np.sin(t.astype(F64)).astype(F32)
    if t.size > 16 and (native := _native_libm()) is not None:
        try:
            return native.cosf_sinf(_LIBM, t)      # the same cosf/sinf, called from one native loop
        except Exception:  # noqa: BLE001 - no JIT for it: the per-value calls below give the same bits
            pass
    return (np.array([_LIBM.cosf(float(v)) for v in t], F32),
            np.array([_LIBM.sinf(float(v)) for v in t], F32))


def _native_libm():
    """jit.libm (the C library's functions over arrays in one native loop) if the JIT kernels are
    selected (LECTERN_KERNELS), else None."""
    try:
        from jit import api, libm
    except ImportError:
        return None
    return libm if api.enabled() else None


def rope_angles(pos: np.ndarray, n_dims: int, base: float, freq_scale: float,
                freq_factors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [T, n_dims/2] as ggml_rope_cache_init (ggml-cpu/ops.cpp:6204, rope_yarn without
    YaRN): theta_scale = powf(base, -2/n_dims); theta starts at float(p) and is multiplied by
    theta_scale in float32 pair after pair; angle = freq_scale * (theta / ff[i]); cosf, sinf.
    Rows are cached per position in dense tables (the C library calls are slow from Python, and
    a prefill asks for the same positions once per layer: one gather then), filled ROPE_BLOCK
    positions at a time (a decode step's new position is then almost always there already)."""
    key = (n_dims, float(base), float(freq_scale),
           None if freq_factors is None else np.asarray(freq_factors, F32).tobytes())
    pos = np.asarray(pos, np.int64).reshape(-1)
    if pos.size and pos.min() < 0:
        raise ValueError("rope_angles: negative position")
    top = (int(pos.max()) // ROPE_BLOCK + 1) * ROPE_BLOCK if pos.size else 0
    cos_t, sin_t, have = _rope_table(key, n_dims // 2, top)
    blocks = np.zeros(top // ROPE_BLOCK, bool)              # (np.unique would import numpy.ma: 30 ms)
    blocks[pos[~have[pos]] // ROPE_BLOCK] = True
    blocks = np.flatnonzero(blocks)
    missing = (blocks[:, None] * ROPE_BLOCK + np.arange(ROPE_BLOCK)).reshape(-1)
    missing = missing[~have[missing]]                      # whole blocks, each position once
    if missing.size:
        ts = F32(_LIBM.powf(base, -2.0 / n_dims)) if _LIBM is not None else \
            F32(F64(base) ** (F64(F32(-2.0) / F32(n_dims))))
        theta = missing.astype(F32)
        for i in range(n_dims // 2):
            t = theta / F32(freq_factors[i]) if freq_factors is not None else theta
            cos_t[missing, i], sin_t[missing, i] = _cosf_sinf((F32(freq_scale) * t).astype(F32))
            theta = (theta * ts).astype(F32)
        have[missing] = True
    return cos_t[pos], sin_t[pos]


def _rope_table(key: tuple, half: int, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cache's (cos [N, half], sin [N, half], filled [N]) of key, grown to N >= top."""
    tab = _ROPE_CACHE.get(key)
    if tab is None or len(tab[2]) < top:
        n = max(top, 64, 2 * len(tab[2]) if tab is not None else 0)
        new = (np.zeros((n, half), F32), np.zeros((n, half), F32), np.zeros(n, bool))
        if tab is not None:
            for old, grown in zip(tab, new):
                grown[:len(old)] = old
        tab = _ROPE_CACHE[key] = new
    return tab


def rotate(x0: np.ndarray, x1: np.ndarray, cos: np.ndarray, sin: np.ndarray):
    """rotate_pairs (ggml-cpu/ops.cpp:6292) as GCC contracts it with FMA (-ffp-contract=fast):
    x0*cos - x1*sin -> fma(x0, cos, -(x1*sin)); x0*sin + x1*cos -> fma(x0, sin, x1*cos)."""
    return fma(x0, cos, -(x1 * sin)), fma(x0, sin, x1 * cos)


# --- exp, silu, softmax ----------------------------------------------------------------------
_EXP_C = [F32(float.fromhex(h)) for h in
          ("0x1.ffffecp-1", "0x1.fffdb6p-2", "0x1.555e66p-3", "0x1.573e2ep-5", "0x1.0e4020p-7")]


def v_expf(x: np.ndarray) -> np.ndarray:
    """ggml_v_expf, AVX512 (ggml-cpu/vec.h:1191): exp with a degree-5 polynomial and scalef."""
    c1, c2, c3, c4, c5 = _EXP_C
    x = np.asarray(x, F32)
    r = F32(12582912.0)                                             # 0x1.8p23
    with np.errstate(invalid="ignore", over="ignore"):
        n = fma(x, F32(float.fromhex("0x1.715476p+0")), r) - r
        b = fma(-n, F32(float.fromhex("0x1.7f7d1cp-20")), fma(-n, F32(float.fromhex("0x1.62e4p-1")), x))
        u = b * b
        j = fma(fma(fma(c5, b, c4), u, fma(c3, b, c2)), u, fma(c1, b, F32(1.0)))
        big = ~(np.abs(n) <= 192)                                   # also NaN (x = -inf)
        res = np.ldexp(j, np.where(big, 0, n).astype(np.int32)).astype(F32)
        return np.where(big, np.where(n <= 0, F32(0.0), F32(np.inf)), res).astype(F32)


def silu(x: np.ndarray) -> np.ndarray:
    """ggml_vec_silu_f32 / ggml_vec_swiglu_f32 (ggml-cpu/vec.cpp): along the last axis, groups of
    16 as ggml_v_silu = x / (1 + ggml_v_expf(-x)); the remainder x / (1 + expf(-x))."""
    x = np.asarray(x, F32)
    n16 = x.shape[-1] // 16 * 16
    y = np.empty_like(x)
    with np.errstate(over="ignore"):
        y[..., :n16] = x[..., :n16] / (F32(1.0) + v_expf(-x[..., :n16]))
        y[..., n16:] = x[..., n16:] / (F32(1.0) + np.exp(-x[..., n16:].astype(F64)).astype(F32))
    return y


def softmax_rows(s: np.ndarray) -> np.ndarray:
    """ggml_compute_forward_soft_max_f32 + ggml_vec_soft_max_f32, AVX512 (ggml-cpu/ops.cpp, vec.cpp):
    e = ggml_v_expf(x - max) per 16 columns, each group summed by _mm512_reduce_add_ps and the groups
    summed in double; p = e * float(1.0 / sum). Masked entries are -inf. Rows along the last axis;
    columns are padded with -inf to a multiple of 16 (llama.cpp's rows are 256-padded)."""
    n = s.shape[-1]
    pad = (-n) % 16
    if pad:
        s = np.concatenate([s, np.full(s.shape[:-1] + (pad,), -np.inf, F32)], axis=-1)
    e = v_expf(s - s.max(axis=-1, keepdims=True))
    parts = reduce_add16(e.reshape(e.shape[:-1] + (-1, 16))).astype(F64)
    total = np.zeros(parts.shape[:-1], F64)
    for i in range(parts.shape[-1]):                                # sequential double sum
        total = total + parts[..., i]
    return (e * (1.0 / total).astype(F32)[..., None])[..., :n]


# --- F16 dot products (attention) --------------------------------------------------------------
def dot_f16(a: np.ndarray, b: np.ndarray, decode: bool) -> np.ndarray:
    """sum(a * b) over the last axis of F16 values (held as float32), broadcasting the others.
    decode=False: llamafile tinyBLAS<16, __m512> (llamafile/sgemm.cpp gemm_bloc): one 16-lane fma
    accumulator over steps of 16, then _mm512_reduce_add_ps; llama.cpp takes it for batches of >= 2
    rows. decode=True: ggml_vec_dot_f16 (vec.cpp, GGML_F16_STEP 64): 4 accumulators of 16 lanes over
    steps of 64, reduced (0+2), (1+3), then together, then across lanes; taken for a single row."""
    step = 64 if decode else 16
    pad = (-a.shape[-1]) % step
    if pad:
        a = np.concatenate([a, np.zeros(a.shape[:-1] + (pad,), F32)], axis=-1)
        b = np.concatenate([b, np.zeros(b.shape[:-1] + (pad,), F32)], axis=-1)
    acc = np.zeros(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]) + (step,), F32)
    for c in range(0, a.shape[-1], step):
        acc = fma(a[..., c:c + step], b[..., c:c + step], acc)     # F16 products are exact
    if decode:
        acc = (acc[..., 0:16] + acc[..., 32:48]) + (acc[..., 16:32] + acc[..., 48:64])
    return reduce_add16(acc)


# --- GELU (tanh form) through ggml's F16 table ------------------------------------------------------
_GELU_TABLE: list[np.ndarray] = []


def gelu_table() -> np.ndarray:
    """ggml_table_gelu_f16 (ggml-cpu.c, GGML_GELU_FP16) as float32 [65536], indexed by F16 bits:
    F16(ggml_gelu_f32(f)), 0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*(1.0f + GELU_COEF_A*x*x))) with GCC's
    contraction of 1.0f + (A*x)*x into an fma and the C library's tanhf."""
    if not _GELU_TABLE:
        x = np.arange(65536, dtype=np.uint16).view(np.float16).astype(F32)
        with np.errstate(invalid="ignore", over="ignore"):
            inner = fma(F32(0.044715) * x, x, F32(1.0))
            arg = (F32(0.79788456080286535587989211986876) * x) * inner
            if _LIBM is not None:
                th = _tanhf(arg)
            else:
                th = np.tanh(arg.astype(F64)).astype(F32)
            _GELU_TABLE.append(f16((F32(0.5) * x) * (F32(1.0) + th)))
    return _GELU_TABLE[0]


def _tanhf(t: np.ndarray) -> np.ndarray:
    """The C library's tanhf of each value: one native loop when the JIT is selected, else one
    ctypes call per value (the same bits)."""
    if (native := _native_libm()) is not None:
        try:
            return native.tanhf(_LIBM, t)
        except Exception:  # noqa: BLE001 - no JIT for it: the per-value calls below give the same bits
            pass
    return np.array([_LIBM.tanhf(float(v)) for v in t], F32)


def geglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """ggml_vec_geglu_f32 (vec.h, GGML_GELU_FP16): gelu(gate) * up with gelu looked up at F16(gate);
    gate <= -10 gives 0, gate >= 10 gives gate * up."""
    gate = np.asarray(gate, F32)
    g = gelu_table()[gate.astype(np.float16).view(np.uint16)] * up
    return np.where(gate <= -10, F32(0.0), np.where(gate >= 10, gate * up, g)).astype(F32)
