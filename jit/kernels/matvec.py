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
  Q4_K 144: f16 d, f16 dmin, u8 scales[12], u8 qs[128]; 8 sub-blocks of 32 with 6-bit (sc, m):
            w = d*sc_j*q - dmin*m_j; chunk c (32 bytes) holds sub-block 2c (low) and 2c+1 (high nibbles)
  Q6_K 210: u8 ql[128], u8 qh[64], i8 scales[16], f16 d; 16 sub-blocks of 16: w = d*sc_j*(q-32)
"""
from __future__ import annotations

import functools

from gguf import GGMLQuantizationType as T

from ..cpu import CpuInfo
from .emit import Fn, ModuleText, mask, vec

HEADER = "(ptr noalias %w, ptr noalias %xq, ptr noalias %y, i64 %r0, i64 %r1, i64 %n) nounwind"
V8F, V8I, V32B = vec(8, "float"), vec(8, "i32"), vec(32, "i8")


def _rows(fn: Fn, row_bytes: str, body) -> None:
    """for r in [r0, r1): y[r] = body(fn, row pointer)."""
    with fn.loop("%r0", "%r1", stem="row") as R:
        wrow = fn.gep("%w", fn.v(f"mul i64 {R.i}, {row_bytes}"))
        total = body(fn, wrow)
        fn.store("float", total, fn.gep("%y", fn.v(f"shl i64 {R.i}, 2")), 4)
    fn.do("ret void")


def _half(fn: Fn, ptr: str) -> str:
    return fn.half_to_float(fn.load("i16", ptr))


def _blocks32(fn: Fn, wrow: str, wbytes: int, xbytes: int, nb: str, per_block) -> str:
    """Sum over 32-blocks of sitofp(int dot) * scale (+ a scalar term): returns the row total."""
    with fn.loop("0", nb, stem="b") as B:
        acc = B.carry(V8F, "zeroinitializer")
        extra = B.carry("float", "0.0")
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {wbytes}"))
        xb = fn.gep("%xq", fn.v(f"mul i64 {B.i}, {xbytes}"))
        isum, scale, add = per_block(fn, wb, xb)
        pf = fn.v(f"sitofp {V8I} {isum} to {V8F}")
        B.set(acc, fn.fma_v(8, pf, fn.splat(8, "float", scale), acc))
        B.set(extra, fn.v(f"fadd float {extra}, {add}") if add else extra)
    total = fn.hsum_f(8, acc)
    return fn.v(f"fadd float {total}, {extra}")


def _nibbles16(fn: Fn, ptr: str) -> str:
    """16 bytes -> <32 x i8>: low nibbles then high nibbles (Q4_0/Q4_1 element order)."""
    qs = fn.load(vec(16, "i8"), ptr)
    lo = fn.v(f"and <16 x i8> {qs}, splat (i8 15)")
    hi = fn.v(f"lshr <16 x i8> {qs}, splat (i8 4)")
    return fn.v(f"shufflevector <16 x i8> {lo}, <16 x i8> {hi}, {mask(range(32))}")


def _q8_0(fn: Fn):
    def blk(fn, wb, xb):
        xs = fn.load(V32B, fn.gep(xb, "2"))
        ws = fn.load(V32B, fn.gep(wb, "2"))
        p = fn.dot_s8s8("zeroinitializer", ws, xs)
        return p, fn.v(f"fmul float {_half(fn, wb)}, {_half(fn, xb)}"), None
    return 34, lambda fn, wrow, nb: _blocks32(fn, wrow, 34, 34, nb, blk)


def _q4_0(fn: Fn):
    def blk(fn, wb, xb):
        xs = fn.load(V32B, fn.gep(xb, "2"))
        q = _nibbles16(fn, fn.gep(wb, "2"))
        p = fn.dot_u8s8("zeroinitializer", q, xs)
        p8 = fn.dot_u8s8("zeroinitializer", "splat (i8 8)", xs)   # sum (q - 8) x = sum q x - 8 sum x
        p = fn.v(f"sub {V8I} {p}, {p8}")
        return p, fn.v(f"fmul float {_half(fn, wb)}, {_half(fn, xb)}"), None
    return 18, lambda fn, wrow, nb: _blocks32(fn, wrow, 18, 34, nb, blk)


def _q4_1(fn: Fn):
    def blk(fn, wb, xb):
        xs = fn.load(V32B, fn.gep(xb, "4"))
        q = _nibbles16(fn, fn.gep(wb, "4"))
        p = fn.dot_u8s8("zeroinitializer", q, xs)
        scale = fn.v(f"fmul float {_half(fn, wb)}, {_half(fn, xb)}")
        mins = fn.v(f"fmul float {_half(fn, fn.gep(wb, '2'))}, {_half(fn, fn.gep(xb, '2'))}")
        return p, scale, mins
    return 20, lambda fn, wrow, nb: _blocks32(fn, wrow, 20, 36, nb, blk)


def _superblocks(fn: Fn, wrow: str, wbytes: int, nb: str, per_block) -> str:
    """Sum over 256-blocks (Q8_K activations): per_block -> (<8 x i32> isum, scale, float subtract)."""
    with fn.loop("0", nb, stem="sb") as B:
        acc = B.carry(V8F, "zeroinitializer")
        corr = B.carry("float", "0.0")
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {wbytes}"))
        xb = fn.gep("%xq", fn.v(f"mul i64 {B.i}, 292"))
        isum, scale, sub = per_block(fn, wb, xb)
        pf = fn.v(f"sitofp {V8I} {isum} to {V8F}")
        B.set(acc, fn.fma_v(8, pf, fn.splat(8, "float", scale), acc))
        B.set(corr, fn.v(f"fadd float {corr}, {sub}"))
    total = fn.hsum_f(8, acc)
    return fn.v(f"fsub float {total}, {corr}")


def _q4_K(fn: Fn):
    def blk(fn, wb, xb):
        dx = fn.load("float", xb)
        # 12 bytes of packed 6-bit scales/mins -> sc[0..7] in bytes of u0,u1; m[0..7] in u2,u3
        u = [fn.load("i32", fn.gep(wb, str(4 + 4 * k))) for k in range(3)]
        t = fn.v(f"lshr i32 {u[2]}, 4")
        t = fn.v(f"and i32 {t}, {0x0F0F0F0F}")
        t2 = fn.v(f"lshr i32 {u[1]}, 6")
        t2 = fn.v(f"and i32 {t2}, {0x03030303}")
        t2 = fn.v(f"shl i32 {t2}, 4")
        u3 = fn.v(f"or i32 {t}, {t2}")
        u2 = fn.v(f"and i32 {u[1]}, {0x3F3F3F3F}")
        t = fn.v(f"and i32 {u[2]}, {0x0F0F0F0F}")
        t2 = fn.v(f"lshr i32 {u[0]}, 6")
        t2 = fn.v(f"and i32 {t2}, {0x03030303}")
        t2 = fn.v(f"shl i32 {t2}, 4")
        u1 = fn.v(f"or i32 {t}, {t2}")
        u0 = fn.v(f"and i32 {u[0]}, {0x3F3F3F3F}")
        scv = fn.v(f"insertelement <2 x i32> poison, i32 {u0}, i64 0")
        scv = fn.v(f"insertelement <2 x i32> {scv}, i32 {u1}, i64 1")
        scv = fn.v(f"bitcast <2 x i32> {scv} to <8 x i8>")
        sc = fn.v(f"zext <8 x i8> {scv} to {V8I}")
        mv = fn.v(f"insertelement <2 x i32> poison, i32 {u2}, i64 0")
        mv = fn.v(f"insertelement <2 x i32> {mv}, i32 {u3}, i64 1")
        mv = fn.v(f"bitcast <2 x i32> {mv} to <8 x i8>")
        m = fn.v(f"zext <8 x i8> {mv} to {V8I}")
        # mins: sum_j m_j * (bsums[2j] + bsums[2j+1])
        bs = fn.load("<16 x i16>", fn.gep(xb, "260"))
        bs = fn.v(f"sext <16 x i16> {bs} to <16 x i32>")
        be = fn.v(f"shufflevector <16 x i32> {bs}, <16 x i32> poison, {mask(range(0, 16, 2))}")
        bo = fn.v(f"shufflevector <16 x i32> {bs}, <16 x i32> poison, {mask(range(1, 16, 2))}")
        bp = fn.v(f"add {V8I} {be}, {bo}")
        mp = fn.v(f"mul {V8I} {m}, {bp}")
        msum = fn.call("i32", "llvm.vector.reduce.add.v8i32", [f"{V8I} {mp}"], V8I)
        isum = "zeroinitializer"
        for c in range(4):
            q = fn.load(V32B, fn.gep(wb, str(16 + 32 * c)))
            lo = fn.v(f"and {V32B} {q}, splat (i8 15)")
            hi = fn.v(f"lshr {V32B} {q}, splat (i8 4)")
            for j, part in ((2 * c, lo), (2 * c + 1, hi)):
                xs = fn.load(V32B, fn.gep(xb, str(4 + 32 * j)))
                p = fn.dot_u8s8("zeroinitializer", part, xs)
                s = fn.v(f"shufflevector {V8I} {sc}, {V8I} poison, <8 x i32> splat (i32 {j})")
                p = fn.v(f"mul {V8I} {p}, {s}")
                isum = fn.v(f"add {V8I} {isum}, {p}")
        d = fn.v(f"fmul float {_half(fn, wb)}, {dx}")
        dmin = fn.v(f"fmul float {_half(fn, fn.gep(wb, '2'))}, {dx}")
        mf = fn.v(f"sitofp i32 {msum} to float")
        return isum, d, fn.v(f"fmul float {dmin}, {mf}")
    return 144, lambda fn, wrow, nb: _superblocks(fn, wrow, 144, nb, blk)


def _q6_K(fn: Fn):
    def blk(fn, wb, xb):
        dx = fn.load("float", xb)
        sc = fn.load("<16 x i8>", fn.gep(wb, "192"))
        sc = fn.v(f"sext <16 x i8> {sc} to <16 x i32>")
        # the -32 offset: 32 * sum_j sc_j * bsums_j
        bs = fn.load("<16 x i16>", fn.gep(xb, "260"))
        bs = fn.v(f"sext <16 x i16> {bs} to <16 x i32>")
        off = fn.v(f"mul <16 x i32> {sc}, {bs}")
        off = fn.call("i32", "llvm.vector.reduce.add.v16i32", [f"<16 x i32> {off}"], "<16 x i32>")
        off = fn.v(f"shl i32 {off}, 5")
        isum = "zeroinitializer"
        for h in range(2):
            L0 = fn.load(V32B, fn.gep(wb, str(64 * h)))
            L1 = fn.load(V32B, fn.gep(wb, str(64 * h + 32)))
            H = fn.load(V32B, fn.gep(wb, str(128 + 32 * h)))
            for k in range(4):
                low = fn.v(f"and {V32B} {L0 if k in (0, 2) else L1}, splat (i8 15)") if k < 2 else \
                    fn.v(f"lshr {V32B} {L0 if k == 2 else L1}, splat (i8 4)")
                hb = fn.v(f"lshr {V32B} {H}, splat (i8 {2 * k})") if k else H
                hb = fn.v(f"and {V32B} {hb}, splat (i8 3)")
                hb = fn.v(f"shl {V32B} {hb}, splat (i8 4)")
                q = fn.v(f"or {V32B} {low}, {hb}")
                xs = fn.load(V32B, fn.gep(xb, str(4 + 128 * h + 32 * k)))
                p = fn.dot_u8s8("zeroinitializer", q, xs)
                j = 8 * h + 2 * k   # lanes 0-3: sub-block j, lanes 4-7: j+1
                s = fn.v(f"shufflevector <16 x i32> {sc}, <16 x i32> poison, {mask([j] * 4 + [j + 1] * 4)}")
                p = fn.v(f"mul {V8I} {p}, {s}")
                isum = fn.v(f"add {V8I} {isum}, {p}")
        d = fn.v(f"fmul float {_half(fn, fn.gep(wb, '208'))}, {dx}")
        of = fn.v(f"sitofp i32 {off} to float")
        return isum, d, fn.v(f"fmul float {d}, {of}")
    return 210, lambda fn, wrow, nb: _superblocks(fn, wrow, 210, nb, blk)


def _float_row(fn: Fn, wrow: str, elem: int) -> str:
    """F32 / F16 weights against an F32 / F16 activation: a reassociable scalar loop that the
    loop vectoriser turns into wide FMAs (and an exact tail for any n)."""
    ty = "float" if elem == 4 else "i16"
    with fn.loop("0", "%n", stem="e") as E:
        acc = E.carry("float", "0.0")
        off = fn.v(f"mul i64 {E.i}, {elem}")
        a = fn.load(ty, fn.gep(wrow, off), elem)
        b = fn.load(ty, fn.gep("%xq", off), elem)
        if elem == 2:
            a, b = fn.half_to_float(a), fn.half_to_float(b)
        p = fn.v(f"fmul reassoc contract float {a}, {b}")
        E.set(acc, fn.v(f"fadd reassoc contract float {acc}, {p}"))
    return acc


BUILDERS = {T.Q8_0: (_q8_0, 32), T.Q4_0: (_q4_0, 32), T.Q4_1: (_q4_1, 32), T.Q4_K: (_q4_K, 256),
            T.Q6_K: (_q6_K, 256)}
SUPPORTED = (T.F32, T.F16, *BUILDERS)


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
    else:
        build, qk = BUILDERS[qtype]
        bytes_per_block, row_fn = build(fn)
        nb = fn.v(f"sdiv i64 %n, {qk}")
        row_bytes = fn.v(f"mul i64 {nb}, {bytes_per_block}")
        _rows(fn, row_bytes, lambda fn, wrow: row_fn(fn, wrow, nb))
    mt.add(fn)
    return mt.text()
