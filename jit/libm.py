"""The C library's cosf/sinf and tanhf over a float32 array in one native call (RoPE angles for a
batch of new positions: one ctypes call per value from Python cost ~0.7 s of a 512-token Gemma
prefill; the 65536 tanhf of the F16 GELU table ~50 ms of every start).

    void cosf_sinf(const float *t, float *cos, float *sin, i64 n)     cos[i] = cosf(t[i]), ...
    void tanhf_array(const float *t, float *out, void *unused, i64 n)  out[i] = tanhf(t[i])

The kernels call the very functions that ctypes finds (their addresses are given to LLVM's
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
BOUND = (*NAMES, "tanhf")


def _map_ir(cpu: CpuInfo, symbol: str, names: tuple[str, ...]) -> str:
    """symbol(t, out_0, out_1, n): out_k[i] = names[k](t[i]) for one or two functions."""
    mt = ModuleText(cpu)
    outs = [f"%o{k}" for k in range(len(names))]
    params = ", ".join(f"ptr noalias {o}" for o in outs) + (", ptr %unused" if len(names) == 1 else "")
    fn = mt.function(f"define void @{symbol}(ptr noalias %t, {params}, i64 %n) nounwind")
    for name in names:
        fn.declare(f"declare float @{name}(float) nounwind")
    with fn.loop("0", "%n", stem="cs") as L:
        off = fn.v(f"shl i64 {L.i}, 2")
        t = fn.load("float", fn.gep("%t", off), 4)
        for name, out in zip(names, outs):
            # a plain call (no intrinsic): LLVM may not fold or vectorize it into other code
            fn.store("float", fn.v(f"call float @{name}(float {t}) nobuiltin"), fn.gep(out, off), 4)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()


@functools.cache
def cosf_sinf_ir(cpu: CpuInfo) -> str:
    return _map_ir(cpu, "cosf_sinf", NAMES)


@functools.cache
def tanhf_ir(cpu: CpuInfo) -> str:
    return _map_ir(cpu, "tanhf_array", ("tanhf",))


@functools.cache
def _bind(lib_path: str) -> bool:
    lib = ctypes.CDLL(lib_path)
    for name in BOUND:
        llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
    return True


def kernel(libm: ctypes.CDLL, symbol: str = "cosf_sinf", cpu: CpuInfo | None = None):
    """The loop `symbol` (cosf_sinf or tanhf_array) bound to the functions of the library `libm`
    (a loaded ctypes.CDLL)."""
    cpu = cpu or detect()
    _bind(libm._name)
    build = {"cosf_sinf": cosf_sinf_ir, "tanhf_array": tanhf_ir}[symbol]
    return jc.kernel((symbol,), lambda: build(cpu), {symbol: PROTO}, cpu)[symbol]


def cosf_sinf(libm: ctypes.CDLL, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.ascontiguousarray(t, np.float32)
    c, s = np.empty_like(t), np.empty_like(t)
    kernel(libm)(t.ctypes.data, c.ctypes.data, s.ctypes.data, t.size)
    return c, s


def tanhf(libm: ctypes.CDLL, t: np.ndarray) -> np.ndarray:
    """tanhf of each value, by the C library `libm` (a loaded ctypes.CDLL), in one native call."""
    t = np.ascontiguousarray(t, np.float32)
    out = np.empty_like(t)
    kernel(libm, "tanhf_array")(t.ctypes.data, out.ctypes.data, 0, t.size)
    return out
