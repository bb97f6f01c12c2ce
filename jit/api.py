"""What the engine calls: `matvec(w, x)` on GGUF tensors, and whether the JIT can be used.

LECTERN_KERNELS=jit|numpy chooses (default jit when it compiles on this machine); LECTERN_CPU
(jit.cpu) the instruction set; LECTERN_THREADS the thread count. When LLVM cannot compile or
load a kernel, `available()` warns once and says False, and the engine keeps to numpy.
"""
from __future__ import annotations

import ctypes
import functools
import os
import warnings

import threading

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from . import compile as jc
from .cpu import CpuInfo, detect, env_raw
from .kernels.matvec import SUPPORTED, matvec_ir, symbol
from .kernels.quantize import BLOCK, activation_bytes, quantizers_ir
from .pool import Pool, default_threads
from .twins import ACTIVATION, RAW_F32

QUANT_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
MATVEC_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
FORMATS = ("q8_0", "q8_1", "q8_K", "q8_K_il", "f16")


def quantizers(cpu: CpuInfo | None = None) -> dict:
    """name ("q8_0", ...) -> quantize(x_ptr, out_ptr, n)."""
    return _quantizers(cpu or detect())


@functools.cache
def _quantizers(cpu: CpuInfo) -> dict:
    fns = jc.kernel(("quantize",), lambda: quantizers_ir(cpu), {f"quantize_{f}": QUANT_PROTO for f in FORMATS}, cpu)
    return {f: fns[f"quantize_{f}"] for f in FORMATS}


def matvec_kernel(qtype: T, cpu: CpuInfo | None = None):
    """matvec_<type>(w, xq, y, row_begin, row_end, n_cols) for this weight type."""
    return _matvec_kernel(T(qtype), cpu or detect())


@functools.cache
def _matvec_kernel(qtype: T, cpu: CpuInfo):
    if qtype not in SUPPORTED:
        raise jc.JitError(f"no JIT matvec kernel for {qtype.name} yet")
    return jc.kernel(("matvec", qtype.name), lambda: matvec_ir(qtype, cpu), {symbol(qtype): MATVEC_PROTO}, cpu)[
        symbol(qtype)]


_SUPPORTED_VALUES = frozenset(int(t) for t in SUPPORTED)


def supports(qtype) -> bool:
    return int(qtype) in _SUPPORTED_VALUES


@functools.cache
def _available(cpu: CpuInfo) -> bool:
    try:
        quantizers(cpu)
        for qt in SUPPORTED:
            matvec_kernel(qt, cpu)
        from .linear import tiles   # the batch driver ops.linear uses

        tiles(cpu)
    except Exception as e:  # noqa: BLE001 - any failure: use numpy
        warnings.warn(f"JIT kernels unavailable on {cpu.tag}, using numpy: {e}")
        return False
    return True


def available(cpu: CpuInfo | None = None) -> bool:
    """True if the kernels compile and load here (compiles them once; later starts hit the cache)."""
    return _available(cpu or detect())


_enabled: dict = {}   # (LECTERN_KERNELS, LECTERN_CPU) as set -> answer (ops.linear asks per call)


def enabled() -> bool:
    """LECTERN_KERNELS: 'jit' (default, if available) or 'numpy'."""
    key = (env_raw(b"LECTERN_KERNELS"), env_raw(b"LECTERN_CPU"))
    hit = _enabled.get(key)
    if hit is not None:
        return hit
    choice = (key[0] or b"jit").decode().strip().lower() or "jit"
    if choice not in ("jit", "numpy"):
        raise ValueError(f"LECTERN_KERNELS={choice!r}: use 'jit' or 'numpy'")
    _enabled[key] = ok = choice == "jit" and available()
    return ok


_pools: dict = {}
_pools_lock = threading.Lock()


def get_pool(n_threads: int | None = None):
    """The shared pool of that size: native (JIT worker loop, futex sleep) where supported,
    else Python threads; LECTERN_POOL=python|native overrides."""
    n = n_threads or default_threads()
    kind = os.environ.get("LECTERN_POOL", "native").strip().lower() or "native"
    if kind not in ("native", "python"):
        raise ValueError(f"LECTERN_POOL={kind!r}: use 'native' or 'python'")
    key = (kind, n)
    with _pools_lock:
        return _pools.get(key) or _make_pool(key)


def _make_pool(key):
    kind, n = key
    pool = None
    if kind == "native":
        from .native_pool import NativePool, supported

        if supported():
            try:
                pool = NativePool(n)
            except jc.JitError as e:
                warnings.warn(f"native thread pool unavailable ({e}); using Python threads")
    _pools[key] = pool or Pool(n)
    return _pools[key]


def quantize_activation(x: np.ndarray, qtype, cpu: CpuInfo | None = None) -> np.ndarray:
    """x float32 [n] -> the weight type's activation bytes (uint8), computed by the JIT quantizer."""
    fmt = ACTIVATION[T(qtype)]
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if fmt in RAW_F32:
        return x.view(np.uint8)
    bs, bb = BLOCK[fmt]
    if x.size % bs:
        raise ValueError(f"activation of {x.size} values is not a whole number of {bs}-blocks ({fmt})")
    out = np.empty(activation_bytes(fmt, x.size), np.uint8)
    quantizers(cpu)[fmt](x.ctypes.data, out.ctypes.data, x.size)
    return out


def matvec_raw(w: np.ndarray, qtype, rows: int, n_cols: int, x: np.ndarray, out: np.ndarray | None = None,
               threads: int | None = None, cpu: CpuInfo | None = None, pool=None) -> np.ndarray:
    """y[rows] = W x for raw GGUF weight bytes w (row-major blocks)."""
    qtype = T(qtype)
    kern = matvec_kernel(qtype, cpu)
    if x.shape[-1] != n_cols:
        raise ValueError(f"matvec: x has {x.shape[-1]} values, the weight rows have {n_cols}")
    w = np.ascontiguousarray(w).view(np.uint8).reshape(-1)
    bs, bb = GGML_QUANT_SIZES[qtype]
    if n_cols % bs or w.size != rows * n_cols // bs * bb:
        raise ValueError(f"matvec: {w.size} weight bytes do not hold {rows} rows of {n_cols} {qtype.name} values")
    xq = quantize_activation(x, qtype, cpu)
    y = np.empty(rows, np.float32) if out is None else out
    if y.dtype != np.float32 or y.shape != (rows,) or not y.flags.c_contiguous:
        raise ValueError("matvec: out must be a contiguous float32 array of one value per row")
    pool = pool or get_pool(threads)
    pool.run(kern, (w.ctypes.data, xq.ctypes.data, y.ctypes.data), rows, (n_cols,))
    return y


def matvec(w, x: np.ndarray, out: np.ndarray | None = None, threads: int | None = None,
           cpu: CpuInfo | None = None) -> np.ndarray:
    """y = W x for a 2-D GGUF weight (inference.gguf_file.Tensor, numpy shape (rows, n_cols)).

    x float32 [n_cols] -> y float32 [rows]; x [T, n_cols] -> [T, rows] (one matvec per row of x).
    """
    if len(w.shape) != 2:
        raise ValueError(f"matvec: {w.name} has shape {w.shape}, expected a 2-D weight")
    rows, n_cols = w.shape
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        return np.stack([matvec_raw(w.data, w.ggml_type, rows, n_cols, xi, threads=threads, cpu=cpu) for xi in x])
    return matvec_raw(w.data, w.ggml_type, rows, n_cols, x, out=out, threads=threads, cpu=cpu)


class MatvecOp:
    """A weight prepared for repeated matvecs (decode): kernel, pointers and the activation
    buffer are looked up once, so a call is one quantizer call plus one pool run.

        op = MatvecOp(tensor); y = op(x)        # x float32 [n_cols] -> y float32 [rows]

    One caller at a time per op (the activation buffer is the op's own).
    """

    def __init__(self, w, threads: int | None = None, cpu: CpuInfo | None = None, pool=None):
        if len(w.shape) != 2:
            raise ValueError(f"MatvecOp: {w.name} has shape {w.shape}, expected a 2-D weight")
        self.rows, self.n_cols = w.shape
        self.qtype = T(w.ggml_type)
        bs, bb = GGML_QUANT_SIZES[self.qtype]
        data = np.ascontiguousarray(w.data).view(np.uint8).reshape(-1)
        if self.n_cols % bs or data.size != self.rows * self.n_cols // bs * bb:
            raise ValueError(f"MatvecOp: {w.name}: {data.size} bytes do not hold {w.shape} {self.qtype.name} values")
        self._data = data                       # keeps the memory map alive
        self._kern = matvec_kernel(self.qtype, cpu)
        self._fmt = ACTIVATION[self.qtype]
        self._quant = None if self._fmt in RAW_F32 else quantizers(cpu)[self._fmt]
        self._xq = np.empty(activation_bytes(self._fmt, self.n_cols), np.uint8)
        self._pool = pool or get_pool(threads)
        self._w_ptr, self._xq_ptr = data.ctypes.data, self._xq.ctypes.data

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if x.dtype != np.float32 or x.shape != (self.n_cols,) or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.shape != (self.n_cols,):
                raise ValueError(f"matvec: x has shape {x.shape}, expected ({self.n_cols},)")
        y = np.empty(self.rows, np.float32) if out is None else out
        if self._quant is None:
            xq_ptr = x.ctypes.data
        else:
            self._quant(x.ctypes.data, self._xq_ptr, self.n_cols)
            xq_ptr = self._xq_ptr
        self._pool.run(self._kern, (self._w_ptr, xq_ptr, y.ctypes.data), self.rows, (self.n_cols,))
        return y
