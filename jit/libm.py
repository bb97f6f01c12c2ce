"""The C library's cosf/sinf over a float32 array in one native call (RoPE angles for a batch of
new positions: one ctypes call per value from Python cost ~0.7 s of a 512-token Gemma prefill).

    void cosf_sinf(const float *t, float *cos, float *sin, i64 n)     cos[i] = cosf(t[i]), ...

The kernel calls the very cosf/sinf that ctypes finds (their addresses are given to LLVM's
linker), so the values are the same bits as inference.ggml_cpu's per-value calls.
"""
from __future__ import annotations

import ctypes
import functools

import llvmlite.binding as llvm
import numpy as np

from . import compile as jc
from .cpu import CpuInfo, detect
from .kernels.emit import ModuleText

PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
NAMES = ("cosf", "sinf")


@functools.cache
def cosf_sinf_ir(cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @cosf_sinf(ptr noalias %t, ptr noalias %c, ptr noalias %s, i64 %n) nounwind")
    for name in NAMES:
        fn.declare(f"declare float @{name}(float) nounwind")
    with fn.loop("0", "%n", stem="cs") as L:
        off = fn.v(f"shl i64 {L.i}, 2")
        t = fn.load("float", fn.gep("%t", off), 4)
        for name, out in zip(NAMES, ("%c", "%s")):
            # a plain call (no intrinsic): LLVM may not fold or vectorize it into other code
            fn.store("float", fn.v(f"call float @{name}(float {t}) nobuiltin"), fn.gep(out, off), 4)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()


@functools.cache
def _bind(lib_path: str) -> bool:
    lib = ctypes.CDLL(lib_path)
    for name in NAMES:
        llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
    return True


def kernel(libm: ctypes.CDLL, cpu: CpuInfo | None = None):
    """cosf_sinf bound to the cosf/sinf of the library `libm` (a loaded ctypes.CDLL)."""
    cpu = cpu or detect()
    _bind(libm._name)
    return jc.kernel(("cosf_sinf",), lambda: cosf_sinf_ir(cpu), {"cosf_sinf": PROTO}, cpu)["cosf_sinf"]


def cosf_sinf(libm: ctypes.CDLL, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.ascontiguousarray(t, np.float32)
    c, s = np.empty_like(t), np.empty_like(t)
    kernel(libm)(t.ctypes.data, c.ctypes.data, s.ctypes.data, t.size)
    return c, s
