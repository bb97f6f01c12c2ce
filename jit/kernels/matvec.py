"""Matrix-vector kernels: y[r] = W[r, :] . x for r in [row_begin, row_end), x pre-quantized.

    void matvec_<type>(const u8 *w, const void *xq, float *y, i64 row_begin, i64 row_end, i64 n_cols)

Weight rows are whole blocks (GGUF layout, row r at r * n_cols/QK * block_bytes); xq is the
activation in the weight type's vec_dot format (quantize.py). Per block the integer dot product
runs on bytes (dot_u8s8: vpdpbusd / vpmaddubsw / portable), the scales are applied once per block
in float (fma into a <8 x float> accumulator), and the row ends with one horizontal sum. Every
row runs the same code, so any split of rows over threads gives bit-identical results.

Weight blocks (bytes):
  Q8_0  34: f16 d, i8 q[32]                          w = d*q
  Q4_0  18: f16 d, u8 qs[16]                         w_j = d*((qs[j]&15)-8), w_{16+j} = d*((qs[j]>>4)-8)
  Q4_1  20: f16 d, f16 m, u8 qs[16]                  w = d*q + m
  Q5_0  22: f16 d, u32 qh, u8 qs[16]                like Q4_0 plus bit j of qh as 16s; w = d*(q-16)
  Q5_1  24: f16 d, f16 m, u32 qh, u8 qs[16]         w = d*q + m, q 5-bit as in Q5_0
  Q4_K, Q5_K, Q6_K: kquants.py (superblocks of 256, in llama.cpp's decode order)
"""
from __future__ import annotations

import functools
import os

from gguf import GGMLQuantizationType as T

from ..cpu import CpuInfo
from .blocks32 import KINDS, matvec_body, matvec_builder
from .emit import Fn, ModuleText, mask, vec
from .kquants import DECODE, UNPACK, superblock_dots
from .matvec_more import MORE, more_body

HEADER = "(ptr noalias %w, ptr noalias %xq, ptr noalias %y, i64 %r0, i64 %r1, i64 %n) nounwind"


def _rows(fn: Fn, row_bytes: str, body) -> None:
    """for r in [r0, r1): y[r] = body(fn, row pointer)."""
    stream_bounds(fn, fn.gep("%w", fn.v(f"mul i64 %r0, {row_bytes}")), fn.gep("%w", fn.v(f"mul i64 %r1, {row_bytes}")))
    with fn.loop("%r0", "%r1", stem="row") as R:
        wrow = fn.gep("%w", fn.v(f"mul i64 {R.i}, {row_bytes}"))
        total = body(fn, wrow)
        fn.store("float", total, fn.gep("%y", fn.v(f"shl i64 {R.i}, 2")), 4)
    fn.do("ret void")


def _half(fn: Fn, ptr: str) -> str:
    return fn.half_to_float(fn.load("i16", ptr))


# Software prefetch of the weights, PREFETCH bytes ahead in a thread's stream (it runs on into
# the next rows), into L2 (locality 2: prefetcht1; lines that far ahead would crowd L1 out).
# Zen 3, 2 threads, Q4_K x8 matvec over 151 MB, interleaved runs while the streaming read
# reached 38 GB/s: 2048 ahead into L1 32.4 GB/s, 8192 into L2 36.2, 16384 38.4, 32768 39.5;
# when the machine's memory was slower (read 25-28 GB/s) every distance ran alike.
PREFETCH = int(os.environ.get("LECTERN_PREFETCH", "16384"))
LOCALITY = 2


V16F, V16I = vec(16, "float"), vec(16, "i32")


def _prefetch_line(fn: Fn, ptr: str) -> None:
    fn.declare("declare void @llvm.prefetch.p0(ptr, i32, i32, i32)")
    fn.do(f"call void @llvm.prefetch.p0(ptr {ptr}, i32 0, i32 {LOCALITY}, i32 1)")


def prefetch(fn: Fn, ptr: str, nbytes: int, ahead: int | None = None) -> None:
    """Ask for the bytes `ahead` (default PREFETCH) past [ptr, ptr + nbytes): one prefetch per
    cache line the step consumes; inside a stream_bounds call, never past its end (the last
    nbytes before it instead)."""
    ahead = PREFETCH if ahead is None else ahead
    if not ahead:
        return
    base = _past(fn, ptr, ahead)
    if fn.prefetch_end is not None:
        last = _past(fn, fn.prefetch_end, -nbytes)
        base = fn.v(f"select i1 {fn.v(f'icmp ult ptr {base}, {last}')}, ptr {base}, ptr {last}")
    for k in range(0, nbytes, 64):
        _prefetch_line(fn, _past(fn, base, k))


def _past(fn: Fn, ptr: str, offset) -> str:
    """ptr + offset bytes, which may lie outside the weights' object (no `inbounds`: a prefetch
    address, never loaded from)."""
    return fn.v(f"getelementptr i8, ptr {ptr}, i64 {offset}")


def stream_bounds(fn: Fn, start: str, end: str) -> None:
    """This call reads its weights as one stream [start, end): its prefetches stay inside it
    (past it lie other threads' rows or another matrix), and the first PREFETCH bytes, which
    no step asks for, are asked for now."""
    if not PREFETCH:
        return
    fn.prefetch_end = end
    span = fn.v(f"sub i64 {fn.v(f'ptrtoint ptr {end} to i64')}, {fn.v(f'ptrtoint ptr {start} to i64')}")
    with fn.loop("0", fn.call("i64", "llvm.smin.i64", [f"i64 {span}", f"i64 {PREFETCH}"], "i64, i64"),
                 step=64, stem="pf") as P:
        _prefetch_line(fn, _past(fn, start, P.i))


def _superblocks(fn: Fn, wrow: str, wbytes: int, nb: str, per_block) -> str:
    """Sum over 256-blocks (Q8_K activations): per_block -> (<16 x i32> isum, scale, float subtract)."""
    with fn.loop("0", nb, stem="sb") as B:
        acc = B.carry(V16F, "zeroinitializer")
        corr = B.carry("float", "0.0")
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {wbytes}"))
        prefetch(fn, wb, wbytes)
        xb = fn.gep("%xq", fn.v(f"mul i64 {B.i}, 292"))
        isum, scale, sub = per_block(fn, wb, xb, acc)
        if scale is None:    # per_block accumulated in float itself
            B.set(acc, isum)
        else:
            pf = fn.v(f"sitofp {V16I} {isum} to {V16F}")
            B.set(acc, fn.fmadd_v(16, pf, fn.splat(16, "float", scale), acc))
        B.set(corr, fn.v(f"fadd float {corr}, {sub}"))
    total = fn.hsum_f(16, acc)
    return fn.v(f"fsub float {total}, {corr}")


def _k_quant(name: str):
    """Q4_K / Q5_K / Q6_K rows, one token, in llama.cpp's decode order (kquants.py)."""
    def build(fn: Fn):
        return UNPACK[name][0], lambda fn, wrow, nb: superblock_dots(fn, wrow, nb, name, DECODE[name], ["%xq"], prefetch)[0]
    return build


def _float_row(fn: Fn, wrow: str, elem: int) -> str:
    """F32 / F16 weights against an F32 / F16 activation: 32 values per step into two
    <16 x float> FMA chains (prefetching the weights), then a scalar tail for any n."""
    ty = "float" if elem == 4 else "i16"
    v32 = vec(32, ty)

    def as_float(v, n):
        return fn.half_to_float(v, n) if elem == 2 else v

    nvec = fn.v("lshr i64 %n, 5")
    with fn.loop("0", nvec, stem="ev") as E:
        accs = [E.carry(V16F, "zeroinitializer") for _ in range(2)]
        off = fn.v(f"mul i64 {E.i}, {32 * elem}")
        wp = fn.gep(wrow, off)
        prefetch(fn, wp, 32 * elem)
        a = as_float(fn.load(v32, wp, elem), 32)
        b = as_float(fn.load(v32, fn.gep("%xq", off), elem), 32)
        for h in range(2):
            idx = mask(range(16 * h, 16 * h + 16))
            ah = fn.v(f"shufflevector <32 x float> {a}, <32 x float> poison, {idx}")
            bh = fn.v(f"shufflevector <32 x float> {b}, <32 x float> poison, {idx}")
            E.set(accs[h], fn.fmadd_v(16, ah, bh, accs[h]))
    total = fn.hsum_f(16, fn.v(f"fadd reassoc {V16F} {accs[0]}, {accs[1]}"))
    with fn.loop(fn.v(f"shl i64 {nvec}, 5"), "%n", stem="et") as E:
        acc = E.carry("float", total)
        off = fn.v(f"mul i64 {E.i}, {elem}")
        a = as_float(fn.load(ty, fn.gep(wrow, off), elem), 0)
        b = as_float(fn.load(ty, fn.gep("%xq", off), elem), 0)
        E.set(acc, fn.v(f"fadd float {acc}, {fn.v(f'fmul float {a}, {b}')}"))
    return acc


# 32-block types (blocks32.py) and K-quants (kquants.py): llama.cpp's decode order, shared with the batch kernels
BUILDERS = {T.Q8_0: (matvec_builder("Q8_0"), 32), T.Q4_0: (matvec_builder("Q4_0"), 32),
            T.Q4_1: (matvec_builder("Q4_1"), 32), T.Q5_0: (matvec_builder("Q5_0"), 32),
            T.Q5_1: (matvec_builder("Q5_1"), 32), T.Q4_K: (_k_quant("Q4_K"), 256), T.Q5_K: (_k_quant("Q5_K"), 256),
            T.Q6_K: (_k_quant("Q6_K"), 256)}
SUPPORTED = (T.F32, T.F16, *BUILDERS, *MORE)   # MORE: matvec_more.py (BF16, IQ4_*)


def symbol(qtype: T) -> str:
    return f"matvec_{T(qtype).name.lower()}"


@functools.cache
def matvec_ir(qtype: T, cpu: CpuInfo) -> str:
    qtype = T(qtype)
    mt = ModuleText(cpu)
    fn = mt.function(f"define void @{symbol(qtype)}{HEADER}")
    if qtype in (T.F32, T.F16):
        elem = 4 if qtype == T.F32 else 2
        row_bytes = fn.v(f"mul i64 %n, {elem}")
        _rows(fn, row_bytes, lambda fn, wrow: _float_row(fn, wrow, elem))
    elif qtype.name in KINDS:
        matvec_body(fn, qtype.name)
    elif qtype in MORE:
        more_body(fn, qtype)
    else:
        build, qk = BUILDERS[qtype]
        bytes_per_block, row_fn = build(fn)
        nb = fn.v(f"sdiv i64 %n, {qk}")
        row_bytes = fn.v(f"mul i64 {nb}, {bytes_per_block}")
        _rows(fn, row_bytes, lambda fn, wrow: row_fn(fn, wrow, nb))
    mt.add(fn)
    return mt.text()
