"""Elementwise kernels (jit/kernels/elementwise.py) called from numpy arrays."""
from __future__ import annotations

import ctypes

import numpy as np

from . import compile as jc
from .cpu import CpuInfo, detect
from .kernels.attention import supported as _has_vector_f16
from .kernels.elementwise import elementwise_ir

SWIGLU_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
GELU_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                              ctypes.c_void_p)


def kernels(cpu: CpuInfo | None = None) -> dict:
    cpu = cpu or detect()
    return jc.kernel(("elementwise",), lambda: elementwise_ir(cpu), {"swiglu": SWIGLU_PROTO, "gelu_mul": GELU_PROTO}, cpu)


def usable(n: int, cpu: CpuInfo | None = None) -> bool:
    return n % 16 == 0 and _has_vector_f16(cpu or detect(), 16, 16)


def swiglu(g: np.ndarray, u: np.ndarray, cpu: CpuInfo | None = None) -> np.ndarray:
    """silu(g) * u as llama.cpp's ggml_vec_swiglu_f32 computes it; g, u float32 [..., n], n % 16 == 0."""
    g = np.ascontiguousarray(g, np.float32)
    u = np.ascontiguousarray(u, np.float32)
    if g.shape != u.shape or g.shape[-1] % 16:
        raise ValueError(f"swiglu: shapes {g.shape} and {u.shape} (last axis a multiple of 16)")
    out = np.empty_like(g)
    kernels(cpu)["swiglu"](g.ctypes.data, u.ctypes.data, out.ctypes.data, g.size)
    return out


def gelu_mul(g: np.ndarray, u: np.ndarray, cpu: CpuInfo | None = None) -> np.ndarray:
    """ggml_cpu.geglu(g, u) through llama.cpp's F16 GELU table; g, u float32 [..., n], n % 16 == 0."""
    from .plan_gemma import gelu_table

    g = np.ascontiguousarray(g, np.float32)
    u = np.ascontiguousarray(u, np.float32)
    if g.shape != u.shape or g.shape[-1] % 16:
        raise ValueError(f"gelu_mul: shapes {g.shape} and {u.shape} (last axis a multiple of 16)")
    out = np.empty_like(g)
    kernels(cpu)["gelu_mul"](g.ctypes.data, u.ctypes.data, out.ctypes.data, g.size, gelu_table().ctypes.data)
    return out


NORM_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
ROPE_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                              ctypes.c_int64)


def _norm_rope(n: int, eps: float, head_dim: int, rope_dim: int, neox: bool, cpu: CpuInfo | None = None) -> dict:
    from .kernels.elementwise import norm_rope_ir

    cpu = cpu or detect()
    syms = {"rms_norm_rows": NORM_PROTO}
    if rope_dim:
        syms["rope_rows"] = ROPE_PROTO
    key = ("norm_rope", n, eps, head_dim, rope_dim, neox)
    return jc.kernel(key, lambda: norm_rope_ir(n, eps, head_dim, rope_dim, neox, cpu), syms, cpu)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """ops.rms_norm (weight given, last axis a multiple of 16) on the JIT: the same roundings."""
    x = np.ascontiguousarray(x, np.float32)
    n = x.shape[-1]
    w = np.ascontiguousarray(w, np.float32)
    if n % 16 or w.shape != (n,):
        raise ValueError(f"rms_norm: rows of {n} values with a weight of shape {w.shape}")
    out = np.empty_like(x)
    fn = _norm_rope(n, float(np.float32(eps)), 0, 0, False)["rms_norm_rows"]
    fn(x.ctypes.data, w.ctypes.data, out.ctypes.data, x.size // n)
    return out


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, rope_dim: int, neox: bool) -> np.ndarray:
    """ops.rope_norm / rope_neox on the JIT: x [T, H, D], cos/sin [T, rope_dim/2] -> rotated copy."""
    out = np.array(x, np.float32, order="C", copy=True)
    T, H, D = out.shape
    cos = np.ascontiguousarray(cos, np.float32)
    sin = np.ascontiguousarray(sin, np.float32)
    if rope_dim % 2 or rope_dim > D or cos.shape != (T, rope_dim // 2) or sin.shape != cos.shape:
        raise ValueError(f"rope: x {out.shape}, cos {cos.shape}, rope_dim {rope_dim}")
    fn = _norm_rope(16, 1e-6, D, rope_dim, neox)["rope_rows"]
    fn(out.ctypes.data, cos.ctypes.data, sin.ctypes.data, T, H)
    return out
