"""Weights the engine stores in another layout than the file's, and the kernels that read it.

Q4_0 matrices whose row count is a multiple of 8 are repacked 8 rows at a time
(kernels/x8.py): the matvec then costs ~4 vector µops per row-block instead of ~9, which keeps
it bound by memory on a fast one (measured on Zen 5, one thread, matrix in cache: 31.9 GB/s in
the file's layout, 66.8 repacked). Q8_0 ones too, in their file order's float sequence (the
same bits), for one stream of bytes per thread however short the rows. Q4_K and Q5_K ones too
(kernels/x8k.py: a superblock's scales, mins and sums handled once for 8 rows; the file layout's
float orders, the same bits; Zen 3, one thread, matrix in cache: Q4_K 17.6 -> 30.1 GB/s, Q5_K
16.0 -> 25.6). llama.cpp's CPU backend repacks at load too (block_q4_0x8, block_q8_0x4,
block_q4_Kx8). The copy replaces the weight in memory: the file's pages it was made from are
given back (madvise DONTNEED; a later read of the tensor, e.g. a tied embedding's rows, maps
them again from the file).

Repacked copies live in ordinary memory, not in the file's pages, so they are limited to
BUDGET (half the machine's memory): past it, weights stay mapped from the file as they are, and
a model larger than memory still pages from disk. LECTERN_REPACK=0 keeps every weight in the
file's layout; LECTERN_REPACK=1 repacks every type that has a layout here (DEFAULT leaves Q5_K
out); LECTERN_REPACK=Q4_0,Q8_0 (say) only those types. The token embedding (KEPT) stays as it is.
"""
from __future__ import annotations

import functools
import mmap
import os
import threading
import weakref

import numpy as np
from gguf import GGMLQuantizationType as T

from . import compile as jc
from .api import MATVEC_PROTO, get_pool
from .cpu import CpuInfo, detect, env_raw
from .kernels import x8, x8k

# type -> (values per block, bytes of one row's block in the file)
BLOCKS = {"Q4_0": (32, 18), "Q8_0": (32, 34), "Q4_K": (256, 144), "Q5_K": (256, 176)}


@functools.cache
def kernels(name: str, cpu: CpuInfo) -> tuple:
    """(matvec, batch kernel, repack kernel) of a repacked type; a K-quant's batch kernel is a dict
    {summation order: kernel} (kernels/kquants.py's modes)."""
    if name in x8k.MODES:
        syms = x8k.symbols(name)
        k = jc.kernel(("x8k", name), lambda: x8k.module_ir(name, cpu), {s: MATVEC_PROTO for s in syms}, cpu)
        return k[syms[0]], dict(zip(x8k.MODES[name], (k[s] for s in syms[1:-1]))), k[syms[-1]]
    syms = x8.symbols(name)
    k = jc.kernel(("x8", name), lambda: x8.module_ir(name, cpu), {s: MATVEC_PROTO for s in syms}, cpu)
    return tuple(k[s] for s in syms)


SLICE_BYTES = 16 << 20      # repacked (and the file's pages given back) this much at a time


def repacked(qtype, data: np.ndarray, n_out: int, n_in: int, cpu: CpuInfo | None = None, pool=None,
             give_back: bool = False) -> np.ndarray:
    """The file's bytes of a weight in the repacked layout, by the JIT kernel on the pool's
    threads (x8.repack is its numpy twin). A group of 8 rows takes the same bytes in both
    layouts, so the work goes in slices of whole groups; give_back: each slice's source pages
    are released (`release`) once copied, so the copy never doubles the weight's memory."""
    name = T(qtype).name
    src = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    block, block_bytes = BLOCKS[name]
    if n_out % 8 or n_in % block or src.size != n_out * n_in // block * block_bytes:
        raise ValueError(f"{name}x8: {src.size} bytes are not {n_out} x {n_in} values in groups of 8 rows")
    dst = np.empty(src.size, np.uint8)
    fn = kernels(name, cpu or detect())[2]
    pool = pool or get_pool()
    group = src.size // (n_out // 8)                            # bytes of one group of 8 rows
    step = max(1, SLICE_BYTES // group)
    for g0 in range(0, n_out // 8, step):
        g1 = min(n_out // 8, g0 + step)
        pool.run(fn, (src.ctypes.data + g0 * group, dst.ctypes.data + g0 * group, 0), g1 - g0, (n_in // block,))
        if give_back:
            release(src[g0 * group:g1 * group])
    return dst


# Repacked unless LECTERN_REPACK says otherwise. Q5_K's layout is there (LECTERN_REPACK=1) but not
# the default: on Zen 3 its matvec from DRAM ran at 21-22 GB/s against the file layout's 24-27
# (2 threads, interleaved runs), its batch kernel at 74 against 77-85 GMAC/s, though in cache it
# is 1.6x faster (a machine bound by arithmetic would want it).
DEFAULT = frozenset({"Q4_0", "Q8_0", "Q4_K"})

# Weights kept in the file's layout whatever their type: the token embedding, whose rows the
# model also reads one by one, and which a tied output head multiplies too. It is the largest
# matrix of a small model (Gemma 3 270M: 178 MB of Q8_0 for 262k x 640), so copying it cost the
# first token 0.1-0.15 s, and on Zen 3 its decode did not gain (81 repacked, 83 not, t/s, three
# interleaved rounds), where step35's short-row Q8_0 projections did (26.3 against 25.5).
KEPT = frozenset({"token_embd.weight"})


def repacked_types() -> frozenset:
    """The types the engine repacks: LECTERN_REPACK unset: DEFAULT; 1: all of BLOCKS; 0: none;
    a list such as Q4_0,Q8_0: those of BLOCKS (to compare layouts type by type)."""
    raw = env_raw(b"LECTERN_REPACK")
    if raw in (None, b""):
        return DEFAULT
    if raw == b"1":
        return frozenset(BLOCKS)
    if raw == b"0":
        return frozenset()
    return frozenset(t.strip().upper() for t in raw.decode(errors="replace").split(",")) & frozenset(BLOCKS)


def applies(qtype, n_out: int, name: str = "") -> bool:
    """Whether a weight of this type, row count and GGUF name is repacked."""
    return n_out % 8 == 0 and n_out > 0 and name not in KEPT and T(qtype).name in repacked_types()


def _physical_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


BUDGET = _physical_bytes() // 2
_held = [0]                         # bytes of live repacked copies
_lock = threading.Lock()


def prepare(qtype, data: np.ndarray, n_out: int, n_in: int, cpu: CpuInfo | None = None):
    """-> (repacked bytes, matvec kernel, batch kernel) for a weight that `applies`, or None when
    the copy would pass BUDGET. Both kernels have the signatures of the file layout's
    (kernels/matvec.py, kernels/tiles.py's parameters)."""
    name = T(qtype).name
    with _lock:
        if _held[0] + data.nbytes > BUDGET:
            return None
        _held[0] += data.nbytes
    mv, mm, _ = kernels(name, cpu or detect())
    try:
        packed = repacked(qtype, data, n_out, n_in, cpu, give_back=True)
    except BaseException:
        _free(data.nbytes)
        raise
    weakref.finalize(packed, _free, packed.nbytes)
    return packed, mv, mm


def _free(nbytes: int) -> None:
    with _lock:
        _held[0] -= nbytes


def release(data: np.ndarray) -> None:
    """Give back the whole pages of a read-only memory-mapped array (a no-op for anything else:
    in ordinary or copy-on-write memory DONTNEED would lose the contents)."""
    if data.flags.writeable:
        return
    base = data
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):                  # np.frombuffer(an mmap) keeps a memoryview of it
        base = base.obj
    if not isinstance(base, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    page = mmap.PAGESIZE
    at = data.ctypes.data - np.frombuffer(base, np.uint8).ctypes.data   # offset in the map (page aligned)
    start, end = -(-at // page) * page, (at + data.nbytes) // page * page
    if end > start:
        base.madvise(mmap.MADV_DONTNEED, start, end - start)
