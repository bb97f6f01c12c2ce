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
    """ops.gelu_tanh_f16(g) * u through llama.cpp's F16 GELU table; g, u float32 [..., n], n % 16 == 0."""
    from .plan_gemma import gelu_table

    g = np.ascontiguousarray(g, np.float32)
    u = np.ascontiguousarray(u, np.float32)
    if g.shape != u.shape or g.shape[-1] % 16:
        raise ValueError(f"gelu_mul: shapes {g.shape} and {u.shape} (last axis a multiple of 16)")
    out = np.empty_like(g)
    kernels(cpu)["gelu_mul"](g.ctypes.data, u.ctypes.data, out.ctypes.data, g.size, gelu_table().ctypes.data)
    return out
