"""`linear(w, x)` on the JIT kernels: what inference.ops.linear delegates to.

y[t] = W x[t] for x [T, in] -> [T, out]. Each token's activation is quantized by the JIT
quantizer (bit for bit ops.round_activations) and multiplied by the matvec kernel; a batch runs
the same per-token sums through a batch kernel (weight blocks reused from cache across the
batch), so a prompt gives identical bits whether it is evaluated at once, in chunks or token by
token -- except where llama.cpp itself sums a batch in another order than one token (Q4_K and
Q6_K, kernels/kquants.py): there the batch follows llama.cpp's batch order, as its logits do.
Prepared ops are cached per weight tensor: a decode step allocates only its outputs. A weight
the engine repacks (jit/repack.py: Q4_0, Q8_0 and Q4_K in 8-row groups) is copied into that layout
when its op is prepared and runs on that layout's matvec and batch kernels, which share one
float sequence.
"""
from __future__ import annotations

import ctypes
import functools
import threading
import weakref

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from . import compile as jc
from . import repack
from .api import MATVEC_PROTO, get_pool, matvec_kernel, quantizers, supports
from .cpu import CpuInfo, detect
from .kernels.batch32 import KINDS, mm_ir, mm_symbol
from .kernels.kbatch import KINDS as K_KINDS
from .kernels.kbatch import activation_format, kmm_ir, kmm_symbol
from .kernels.kquants import batch_modes
from .kernels.quantize import activation_bytes
from .kernels.tiles import LO_FIELDS, P_NTOK, P_XQ, tiles_ir
from .twins import ACTIVATION, RAW_F32

ONE_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
QROWS_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                               ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
STEP_BYTES = 16 << 10     # weight bytes per matmul step: stays in L1 while every token of the tile uses it
TILE_TOKENS = 64          # tokens per matmul call: their activations stay in L2


def _addr(f) -> int:
    return ctypes.cast(f, ctypes.c_void_p).value


def tiles(cpu: CpuInfo | None = None) -> dict:
    cpu = cpu or detect()
    return jc.kernel(("tiles",), lambda: tiles_ir(cpu), {"matmul_tiles": MATVEC_PROTO, "quantize_rows": QROWS_PROTO,
                                                  "linear_one": ONE_PROTO},
                     cpu)


def mm_kernel(name: str, cpu: CpuInfo | None = None, mode: str | None = None):
    """The batch kernel of a 32-block type, or of a K-quant in one of its summation orders
    (kquants.py); tokens share each unpacked weight block."""
    cpu = cpu or detect()
    sym = mm_symbol(name)
    if name in K_KINDS:
        sym = kmm_symbol(name, mode)
        return jc.kernel(("kmm", name, mode), lambda: kmm_ir(name, mode, cpu), {sym: MATVEC_PROTO}, cpu)[sym]
    return jc.kernel(("mm", name), lambda: mm_ir(name, cpu), {sym: MATVEC_PROTO}, cpu)[sym]


class LinearOp:
    """A weight prepared for the JIT: op(x) with x [T, in] (or [in]) -> float32 [T, out] (or [out]).
    One caller at a time per op (it owns its activation buffer)."""

    def __init__(self, w, threads: int | None = None, cpu: CpuInfo | None = None, pool=None):
        self.qtype = T(w.ggml_type)
        if not supports(self.qtype):
            raise jc.JitError(f"no JIT kernel for {self.qtype.name} weights")
        self.n_in = int(w.shape_ggml[0])
        self.n_out = w.n_elements // self.n_in
        bs, bb = GGML_QUANT_SIZES[self.qtype]
        data = np.ascontiguousarray(w.data).view(np.uint8).reshape(-1)
        if self.n_in % bs or data.size != self.n_out * (self.n_in // bs) * bb:
            raise ValueError(f"{w.name}: {data.size} bytes do not hold {self.n_out} x {self.n_in} "
                             f"{self.qtype.name} values")
        self.row_bytes = self.n_in // bs * bb
        packed = repack.prepare(self.qtype, data, self.n_out, self.n_in, cpu) \
            if repack.applies(self.qtype, self.n_out, getattr(w, "name", "")) else None
        self.repacked = packed is not None
        if self.repacked:       # the engine's own layout (jit/repack.py), with its own kernels
            data, self._kern, mm = packed
        else:
            self._kern = matvec_kernel(self.qtype, cpu)
        self._data = data                       # keeps the memory map (or the repacked copy) alive
        self._w = data.ctypes.data
        fmt = ACTIVATION[self.qtype]
        self._quant = None if fmt in RAW_F32 else quantizers(cpu)[fmt]
        self._xbytes = 4 * self.n_in if fmt in RAW_F32 else activation_bytes(fmt, self.n_in)
        self._xq = np.empty(self._xbytes, np.uint8)          # one token (linear_one keeps its address)
        self._xq_batch = np.empty(0, np.uint8)               # a batch's, grown as needed
        self._pool = pool or get_pool(threads)
        t = tiles(cpu)
        self._tiles, self._qrows = t["matmul_tiles"], t["quantize_rows"]
        self._modes = {}            # K-quants: batch kernel per summation order, compiled when first used
        self._cpu = cpu
        self._x8_modes = mm if self.repacked and isinstance(mm, dict) else None    # a repacked K-quant's, per order
        if self.repacked and self._x8_modes is None:
            self._tiles = mm
        elif self.qtype.name in KINDS:  # its own batch kernel: tokens share each unpacked weight block
            self._tiles = mm_kernel(self.qtype.name, cpu)
        step = max(1, STEP_BYTES // (self.n_in // bs * bb))
        self._kern_addr = _addr(self._kern)
        self._p = np.array([self._kern_addr, 0, 0, self._xbytes, 4 * self.n_out, step], np.int64)
        self._quant_addr = _addr(self._quant) if self._quant is not None else 0
        self._fast = None
        if hasattr(self._pool, "raw"):
            # decode: x is copied into _x, one native call quantizes it and runs the matvec on
            # the pool into _y (no array pointers looked up per call)
            run, ctx, self._lock = self._pool.raw()
            self._x = np.empty(self.n_in, np.float32)
            self._y = np.empty(self.n_out, np.float32)
            xq = self._xq.ctypes.data if self._quant is not None else self._x.ctypes.data
            slots = dict(quant=self._quant_addr, x=self._x.ctypes.data, xq=xq, n=self.n_in, run=run, ctx=ctx,
                         kern=self._kern_addr, w=self._w, y=self._y.ctypes.data, rows=self.n_out,
                         chunk=self._pool.chunk_rows(self.n_out, self.row_bytes))
            self._one_p = np.array([slots[k] for k in LO_FIELDS], np.int64)
            self._fast = functools.partial(t["linear_one"], self._one_p.ctypes.data)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[-1] != self.n_in:
            raise ValueError(f"linear: x has {x.shape[-1]} values per row, the weight rows have {self.n_in}")
        if x.ndim == 1:
            return self._one(x)
        x2 = x.reshape(-1, self.n_in)
        y = np.empty((x2.shape[0], self.n_out), np.float32)
        if x2.shape[0] == 1:
            self._one(x2[0], y[0])
        else:
            for a, b, kern, quant in self._segments(x2.shape[0]):
                for t0 in range(a, b, TILE_TOKENS):
                    self._many(x2[t0:min(b, t0 + TILE_TOKENS)], y[t0:min(b, t0 + TILE_TOKENS)], kern, quant)
        return y.reshape(*x.shape[:-1], self.n_out)

    def _segments(self, n_tok: int) -> list:
        """[(t0, t1, batch kernel, its activation quantizer)]: a K-quant's tokens in the orders
        llama.cpp uses for this batch (each order's kernel reads its own activation layout)."""
        if self.qtype.name not in K_KINDS:
            return [(0, n_tok, self._tiles, self._quant_addr)]
        out = []
        for a, b, m in batch_modes(self.qtype.name, self.n_out, n_tok):
            if m not in self._modes:
                fmt = activation_format(self.qtype.name, m)
                kern = self._x8_modes[m] if self._x8_modes else mm_kernel(self.qtype.name, self._cpu, m)
                self._modes[m] = (kern, _addr(quantizers(self._cpu)[fmt]))
            out.append((a, b, *self._modes[m]))
        return out

    def _one(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self._fast is not None:
            with self._lock:
                np.copyto(self._x, x)
                self._fast()
                if out is None:
                    return self._y.copy()
                out[...] = self._y
                return out
        y = np.empty(self.n_out, np.float32) if out is None else out
        if self._quant is None:
            xq = x.ctypes.data
        else:
            self._quant(x.ctypes.data, self._xq.ctypes.data, self.n_in)
            xq = self._xq.ctypes.data
        self._pool.run(self._kern, (self._w, xq, y.ctypes.data), self.n_out, (self.n_in,))
        return y

    def _many(self, x: np.ndarray, y: np.ndarray, kern, quant: int) -> None:
        n_tok = x.shape[0]
        if self._quant is None:
            xq = x.ctypes.data
        else:
            if self._xq_batch.size < n_tok * self._xbytes:
                self._xq_batch = np.empty(n_tok * self._xbytes, np.uint8)
            xq = self._xq_batch.ctypes.data
            self._qrows(quant, x.ctypes.data, xq, self.n_in, n_tok, 4 * self.n_in, self._xbytes)
        p = self._p
        p[P_XQ], p[P_NTOK] = xq, n_tok
        self._pool.run(kern, (self._w, p.ctypes.data, y.ctypes.data), self.n_out, (self.n_in,))


_ops: dict[int, tuple] = {}
_lock = threading.Lock()


def op_for(w) -> LinearOp:
    """The cached LinearOp of tensor w (dropped when the tensor is)."""
    key = id(w)
    hit = _ops.get(key)
    if hit is not None and hit[0]() is w:
        return hit[1]
    op = LinearOp(w)
    with _lock:
        _ops[key] = (weakref.ref(w, lambda _r, k=key: _ops.pop(k, None)), op)
    return op


def linear(w, x: np.ndarray) -> np.ndarray:
    """y = x @ W.T for a GGUF weight w (numpy shape (out, in)): x [T, in] -> [T, out] float32."""
    return op_for(w)(x)
