"""Batch (prefill) kernels of the 32-block types: `mm_<type>` runs tokens in groups of GROUP
over each weight row, so a weight block is unpacked once for the whole group, and each token's
share of a block costs one sign flip, one integer dot, one int->float and one FMA.

Integer trick (llama.cpp's mul_sum_i8_pairs on AVX2, and exact): the signed weights w (Q8_0: q;
Q4_0 / Q5_0: q - 8 / q - 16) go into the unsigned operand as |w| (once per block) and each
token's bytes as x * sign(w) (vpsignb), so lanes[l] = sum_{k<4} w[4l+k] x[4l+k] exactly as the
matvec's dot_s8s8 / dot_u8s8 - offset computes them (exact int32, any method gives the same
integers). Q4_1 / Q5_1 weights are unsigned already and need no flip.

Float operations per (row, token) are the matvec's strict sequence (blocks32.block_rows):
    acc = fma(splat(f32(d_w) * d_a), f32(lanes), acc)  per block b,  summs += m_w * s_a
    total = hsum_float_8(acc) (+ summs)
so the batch, any row split and decode give identical bits.

Activation rows (quantize.py, per token): nb blocks of kind.xb bytes (f16 d, [f16 s,] i8 q[32]),
then nb f32 copies of d (and s) of kind.xaux bytes each.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .blocks32 import KINDS, Kind, _fma8, _weights, row_totals
from .emit import Fn, vec
from .tiles import grouped_batch_ir

V8F, V32B = vec(8, "float"), vec(32, "i8")
GROUP = 8


def mm_symbol(name: str) -> str:
    return f"mm_{name.lower()}"


def _sign_bytes(fn: Fn, x: str, s: str) -> str:
    """x * sign(s) per byte (0 where s is 0): vpsignb on AVX2; x holds no -128."""
    if fn.cpu.has_avx2:
        return fn.call(V32B, "llvm.x86.avx2.psign.b", [f"{V32B} {x}", f"{V32B} {s}"], f"{V32B}, {V32B}")
    neg = fn.v(f"icmp slt {V32B} {s}, zeroinitializer")
    return fn.v(f"select <32 x i1> {neg}, {V32B} {fn.v(f'sub {V32B} zeroinitializer, {x}')}, {V32B} {x}")


def _unpacked(fn: Fn, kind: Kind, wb: str) -> tuple[str, str | None]:
    """A weight block as (unsigned dot operand, sign source or None): (|w|, w) for signed
    weights, (q, None) for Q4_1 / Q5_1."""
    q = _weights(fn, kind, wb)
    if kind.has_min:
        return q, None
    if kind.offset:
        q = fn.v(f"sub {V32B} {q}, splat (i8 {kind.offset})")
    return fn.call(V32B, "llvm.abs.v32i8", [f"{V32B} {q}", "i1 false"], f"{V32B}, i1"), q


def batch_rows(fn: Fn, kind: Kind, wrow: str, xqs: list[str], nb: str) -> list[str]:
    """Weight row wrow . each 8-bit activation row in xqs (nb blocks) -> one total per token,
    each its own strict chain (the tokens only interleave for the CPU)."""
    auxs = [fn.gep(x, fn.v(f"mul i64 {nb}, {kind.xb}")) for x in xqs]
    with fn.loop("0", nb, stem="qb") as B:
        accs = [B.carry(V8F, "zeroinitializer") for _ in xqs]
        summs = [B.carry("float", "0.0") for _ in xqs] if kind.has_min else []
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {kind.wb}"))
        a, s = _unpacked(fn, kind, wb)
        dw = fn.half_to_float_at(wb)
        mw = fn.half_to_float_at(fn.gep(wb, "2")) if kind.has_min else None
        xoff = fn.v(f"mul i64 {B.i}, {kind.xb}")
        aoff = fn.v(f"mul i64 {B.i}, {kind.xaux}")
        for k, (xq, aux) in enumerate(zip(xqs, auxs)):
            x = fn.load(V32B, fn.gep(fn.gep(xq, xoff), str(kind.xqs)))
            ab = fn.gep(aux, aoff)
            lanes = fn.dot_u8s8("zeroinitializer", a, x if s is None else _sign_bytes(fn, x, s), 32)
            lf = fn.v(f"sitofp <8 x i32> {lanes} to {V8F}")
            d = fn.v(f"fmul float {dw}, {fn.load('float', ab, 4)}")
            B.set(accs[k], _fma8(fn, fn.splat(8, "float", d), lf, accs[k]))
            if kind.has_min:
                sa = fn.load("float", fn.gep(ab, "4"), 4)
                B.set(summs[k], fn.v(f"fadd float {summs[k]}, {fn.v(f'fmul float {mw}, {sa}')}"))
    return row_totals(fn, accs, summs, kind.has_min)


@functools.cache
def mm_ir(name: str, cpu: CpuInfo, group: int = GROUP) -> str:
    kind = KINDS[name]
    return grouped_batch_ir(cpu, mm_symbol(name), 32, kind.wb, group,
                            lambda fn, wrow, nb, xqs: batch_rows(fn, kind, wrow, xqs, nb))
