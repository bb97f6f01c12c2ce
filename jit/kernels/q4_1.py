"""Q4_1 weights . Q8_1 activations in llama.cpp's own order (ggml_vec_dot_q4_1_q8_1, AVX2/VNNI;
numpy twin inference.ggml_cpu.vec_dot_q4_1_q8_1), for one token (the matvec) or several at once
(`mm_q4_1`, the batch driver): every token's float operations are the same strict sequence, so
batch and decode give identical bits, and both give llama.cpp's.

Per 32-block b:  lanes[8] = int32 sums of 4 consecutive products (vpdpbusd on 32 bytes)
                 acc = fma(f32(d_w * d_a), float(lanes), acc)          <8 x float>
                 summs += m_w * s_a                                     (s_a: Q8_1's F16 sum)
Row result: r = acc[4:8] + acc[0:4]; ((r0 + r2) + (r1 + r3)) + summs   (hsum_float_8)

    void mm_q4_1(const u8 *w, const i64 *p, float *y, i64 row_begin, i64 row_end, i64 n_cols)
        p as matmul_tiles (tiles.py): tokens in groups of GROUP share each unpacked weight block.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .emit import Fn, ModuleText, mask, vec
from .tiles import P_NTOK, P_STEP, P_XQ, P_XSTRIDE, P_YSTRIDE

V8F, V8I, V32B, V16B = vec(8, "float"), vec(8, "i32"), vec(32, "i8"), vec(16, "i8")
WB, XB, XAUX = 20, 36, 8        # weight block, activation block, its f32 (d, s) copy
GROUP = 4


def _fma8(fn: Fn, a: str, b: str, c: str) -> str:
    if fn.cpu.has_fma:
        return fn.fma_v(8, a, b, c)
    return fn.v(f"fadd {V8F} {fn.v(f'fmul {V8F} {a}, {b}')}, {c}")   # no FMA: two roundings


def q4_1_rows(fn: Fn, wrow: str, xqs: list[str], nb: str) -> list[str]:
    """The dot of one weight row with each activation in xqs (Q8_1 rows of nb blocks)."""
    auxs = [fn.gep(x, fn.v(f"mul i64 {nb}, {XB}")) for x in xqs]
    with fn.loop("0", nb, stem="qb") as B:
        accs = [B.carry(V8F, "zeroinitializer") for _ in xqs]
        summs = [B.carry("float", "0.0") for _ in xqs]
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {WB}"))
        qs = fn.load(V16B, fn.gep(wb, "4"))
        q = fn.concat("i8", 16, fn.v(f"and {V16B} {qs}, splat (i8 15)"), fn.v(f"lshr {V16B} {qs}, splat (i8 4)"))
        dw = fn.half_to_float(fn.load("i16", wb, 2))
        mw = fn.half_to_float(fn.load("i16", fn.gep(wb, "2"), 2))
        for k, (xq, aux) in enumerate(zip(xqs, auxs)):
            xb = fn.gep(xq, fn.v(f"mul i64 {B.i}, {XB}"))
            ab = fn.gep(aux, fn.v(f"mul i64 {B.i}, {XAUX}"))
            lanes = fn.dot_u8s8("zeroinitializer", q, fn.load(V32B, fn.gep(xb, "4")), 32)
            lf = fn.v(f"sitofp {V8I} {lanes} to {V8F}")
            d = fn.v(f"fmul float {dw}, {fn.load('float', ab, 4)}")
            B.set(accs[k], _fma8(fn, fn.splat(8, "float", d), lf, accs[k]))
            ms = fn.v(f"fmul float {mw}, {fn.load('float', fn.gep(ab, '4'), 4)}")
            B.set(summs[k], fn.v(f"fadd float {summs[k]}, {ms}"))
    out = []
    for acc, sm in zip(accs, summs):
        hi = fn.v(f"shufflevector {V8F} {acc}, {V8F} poison, {mask(range(4, 8))}")
        lo = fn.v(f"shufflevector {V8F} {acc}, {V8F} poison, {mask(range(4))}")
        r = fn.v(f"fadd {vec(4, 'float')} {hi}, {lo}")
        e = [fn.v(f"extractelement {vec(4, 'float')} {r}, i64 {i}") for i in range(4)]
        s = fn.v(f"fadd float {fn.v(f'fadd float {e[0]}, {e[2]}')}, {fn.v(f'fadd float {e[1]}, {e[3]}')}")
        out.append(fn.v(f"fadd float {s}, {sm}"))
    return out


def q4_1_matvec_row(fn: Fn, wrow: str, nb: str) -> str:
    return q4_1_rows(fn, wrow, ["%xq"], nb)[0]


@functools.cache
def mm_q4_1_ir(cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @mm_q4_1(ptr noalias %w, ptr noalias %p, ptr noalias %y, i64 %r0, i64 %r1, "
                     "i64 %n) nounwind")
    xq = fn.load("ptr", fn.gep("%p", str(8 * P_XQ)), 8)
    ntok, xs, ys, step = (fn.load("i64", fn.gep("%p", str(8 * k)), 8) for k in (P_NTOK, P_XSTRIDE, P_YSTRIDE, P_STEP))
    nb = fn.v("sdiv i64 %n, 32")
    row_bytes = fn.v(f"mul i64 {nb}, {WB}")
    span = fn.v("sub i64 %r1, %r0")
    last = fn.v(f"sub i64 {step}, 1")
    nsteps = fn.v(f"sdiv i64 {fn.v(f'add i64 {span}, {last}')}, {step}")
    groups = fn.v(f"sdiv i64 {ntok}, {GROUP}")
    with fn.loop("0", nsteps, stem="rs") as S:
        rb = fn.v(f"add i64 %r0, {fn.v(f'mul i64 {S.i}, {step}')}")
        re_ = fn.call("i64", "llvm.smin.i64", [f"i64 {fn.v(f'add i64 {rb}, {step}')}", "i64 %r1"], "i64, i64")
        for size, lo, hi in ((GROUP, "0", groups), (1, fn.v(f"mul i64 {groups}, {GROUP}"), ntok)):
            with fn.loop(lo, hi, stem="tg") as G:
                t0 = fn.v(f"mul i64 {G.i}, {size}")
                toks = [fn.v(f"add i64 {t0}, {k}") for k in range(size)]
                xqs = [fn.gep(xq, fn.v(f"mul i64 {t}, {xs}")) for t in toks]
                ysb = [fn.gep("%y", fn.v(f"mul i64 {t}, {ys}")) for t in toks]
                with fn.loop(rb, re_, stem="rw") as R:
                    tot = q4_1_rows(fn, fn.gep("%w", fn.v(f"mul i64 {R.i}, {row_bytes}")), xqs, nb)
                    for yb, v in zip(ysb, tot):
                        fn.store("float", v, fn.gep(yb, fn.v(f"shl i64 {R.i}, 2")), 4)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
