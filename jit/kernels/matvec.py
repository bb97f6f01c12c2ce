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
  Q4_K 144: f16 d, f16 dmin, u8 scales[12], u8 qs[128]; 8 sub-blocks of 32 with 6-bit (sc, m):
            w = d*sc_j*q - dmin*m_j; chunk c (32 bytes) holds sub-block 2c (low) and 2c+1 (high nibbles)
  Q5_K 176: as Q4_K with u8 qh[32] before qs: bit j of qh[l] is the 5th bit of element l of sub-block j
  Q6_K 210: u8 ql[128], u8 qh[64], i8 scales[16], f16 d; 16 sub-blocks of 16: w = d*sc_j*(q-32)
"""
from __future__ import annotations

import functools
import os

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


V16F, V16I, V64B = vec(16, "float"), vec(16, "i32"), vec(64, "i8")


def _pair_scale(fn: Fn, s0: str, s1: str, lanes: list[int]) -> str:
    """<16 x float> of s0/s1 by lane: the scales of two 32-blocks sharing one 512-bit dot."""
    v = fn.v(f"insertelement <2 x float> poison, float {s0}, i64 0")
    v = fn.v(f"insertelement <2 x float> {v}, float {s1}, i64 1")
    return fn.v(f"shufflevector <2 x float> {v}, <2 x float> poison, {mask(lanes)}")


PREFETCH = int(os.environ.get("LECTERN_PREFETCH", "2048"))


def _prefetch(fn: Fn, ptr: str, nbytes: int) -> None:
    """Ask for the weights PREFETCH bytes ahead (the stream runs on into the next rows): one
    prefetch per cache line the step consumes."""
    if PREFETCH:
        fn.declare("declare void @llvm.prefetch.p0(ptr, i32, i32, i32)")
        for k in range(0, nbytes, 64):
            ahead = fn.v(f"getelementptr i8, ptr {ptr}, i64 {PREFETCH + k}")
            fn.do(f"call void @llvm.prefetch.p0(ptr {ahead}, i32 0, i32 3, i32 1)")


def _aux(fn: Fn, xaux: tuple, b: str) -> str:
    """Pointer to block b's f32 scale copies after the activation blocks."""
    base, size = xaux
    return fn.gep(base, fn.v(f"mul i64 {b}, {size}"))


def _pair(fn: Fn, wrow: str, wbytes: int, xbytes: int, b0: str, load, dot, acc: str, extra: str, nib: int | None,
          xaux: tuple):
    """Blocks b0, b0+1 in one 64-byte dot: returns the updated (<16 x float> acc, float extra).
    nib: offset of 16 bytes of packed nibbles (Q4_0/Q4_1) in each block; they are unpacked for
    both blocks at once as [lo0 lo1 hi0 hi1] and the activations permuted to match."""
    parts, wbs = [], []
    for k in range(2):
        bk = fn.v(f"add i64 {b0}, {k}")
        wbs.append(fn.gep(wrow, fn.v(f"mul i64 {bk}, {wbytes}")))
        parts.append(load(fn, wbs[-1], fn.gep("%xq", fn.v(f"mul i64 {bk}, {xbytes}")), _aux(fn, xaux, bk)))
    x = fn.concat("i8", 32, parts[0][1], parts[1][1])
    if nib is None:
        q = fn.concat("i8", 32, parts[0][0], parts[1][0])
        lanes = [0] * 8 + [1] * 8
    else:
        qs_off, qh_off = nib if isinstance(nib, tuple) else (nib, None)
        qs = fn.concat("i8", 16, *(fn.load(vec(16, "i8"), fn.gep(wb, str(qs_off))) for wb in wbs))
        q = fn.concat("i8", 32, fn.v(f"and {V32B} {qs}, splat (i8 15)"), fn.v(f"lshr {V32B} {qs}, splat (i8 4)"))
        # [lo0 lo1 hi0 hi1]: block elements 0-15 of both blocks, then 16-31 of both
        order = mask([*range(0, 16), *range(32, 48), *range(16, 32), *range(48, 64)])
        x = fn.v(f"shufflevector {V64B} {x}, {V64B} poison, {order}")
        if qh_off is not None:
            hb = fn.concat("i8", 32, *(_fifth_bits(fn, fn.gep(wb, str(qh_off))) for wb in wbs))
            q = fn.v(f"or {V64B} {q}, {fn.v(f'shufflevector {V64B} {hb}, {V64B} poison, {order}')}")
        lanes = [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4
    pf = fn.v(f"sitofp {V16I} {dot(fn, q, x, 64)} to {V16F}")
    acc = fn.fmadd_v(16, pf, _pair_scale(fn, parts[0][2], parts[1][2], lanes), acc)
    for part in parts:
        if part[3] is not None:
            extra = fn.v(f"fadd float {extra}, {part[3]}")
    return acc, extra


def _blocks32(fn: Fn, wrow: str, wbytes: int, xbytes: int, nb: str, load, dot, nib: int | None = None) -> str:
    """Sum over 32-blocks of float(int dot) * scale (+ a scalar term per block): four blocks per
    step as two 64-byte dots into two <16 x float> accumulators, then a leftover pair, then an
    odd last block on its own.
    load(fn, wb, xb, xa) -> (q <32 x i8>, x <32 x i8>, scale, extra or None), xa pointing at the
    block's f32 activation scales; dot(fn, q, x, nbytes)."""
    xaux = (fn.gep("%xq", fn.v(f"mul i64 {nb}, {xbytes}")), 4 if xbytes == 34 else 8)
    nquads = fn.v(f"lshr i64 {nb}, 2")
    with fn.loop("0", nquads, stem="bq") as B:
        accs = [B.carry(V16F, "zeroinitializer") for _ in range(2)]
        extra = B.carry("float", "0.0")
        b0 = fn.v(f"shl i64 {B.i}, 2")
        _prefetch(fn, fn.gep(wrow, fn.v(f"mul i64 {b0}, {wbytes}")), 4 * wbytes)
        a0, e = _pair(fn, wrow, wbytes, xbytes, b0, load, dot, accs[0], extra, nib, xaux)
        a1, e = _pair(fn, wrow, wbytes, xbytes, fn.v(f"add i64 {b0}, 2"), load, dot, accs[1], e, nib, xaux)
        B.set(accs[0], a0)
        B.set(accs[1], a1)
        B.set(extra, e)
    acc = fn.v(f"fadd reassoc {V16F} {accs[0]}, {accs[1]}")
    # a leftover pair (nb % 4 >= 2)
    pair_at = fn.v(f"shl i64 {nquads}, 2")
    pair_end = fn.v(f"add i64 {pair_at}, {fn.v(f'and i64 {nb}, 2')}")
    with fn.loop(pair_at, pair_end, step=2, stem="bp") as B:
        acc2 = B.carry(V16F, acc)
        extra2 = B.carry("float", extra)
        a, e = _pair(fn, wrow, wbytes, xbytes, B.i, load, dot, acc2, extra2, nib, xaux)
        B.set(acc2, a)
        B.set(extra2, e)
    total = fn.v(f"fadd float {fn.hsum_f(16, acc2)}, {extra2}")
    # odd block count: the last block alone
    odd = fn.v(f"and i64 {nb}, 1")
    with fn.loop(fn.v(f"sub i64 {nb}, {odd}"), nb, stem="bt") as B:
        tot = B.carry("float", total)
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {wbytes}"))
        q, x, scale, add = load(fn, wb, fn.gep("%xq", fn.v(f"mul i64 {B.i}, {xbytes}")), _aux(fn, xaux, B.i))
        if nib is not None:
            qs_off, qh_off = nib if isinstance(nib, tuple) else (nib, None)
            q = _nibbles16(fn, fn.gep(wb, str(qs_off)))
            if qh_off is not None:
                q = fn.v(f"or {V32B} {q}, {_fifth_bits(fn, fn.gep(wb, str(qh_off)))}")
        pf = fn.v(f"sitofp {V8I} {dot(fn, q, x, 32)} to {V8F}")
        t = fn.v(f"fmul {V8F} {pf}, {fn.splat(8, 'float', scale)}")
        t = fn.v(f"fadd float {tot}, {fn.hsum_f(8, t)}")
        B.set(tot, fn.v(f"fadd float {t}, {add}") if add else t)
    return tot


def _nibbles16(fn: Fn, ptr: str) -> str:
    """16 bytes -> <32 x i8>: low nibbles then high nibbles (Q4_0/Q4_1 element order)."""
    qs = fn.load(vec(16, "i8"), ptr)
    lo = fn.v(f"and <16 x i8> {qs}, splat (i8 15)")
    hi = fn.v(f"lshr <16 x i8> {qs}, splat (i8 4)")
    return fn.concat("i8", 16, lo, hi)


def _dot_u(fn, q, x, n):
    return fn.dot_u8s8("zeroinitializer", q, x, n)


def _fifth_bits(fn: Fn, ptr: str) -> str:
    """Q5_0/Q5_1 qh (u32, bit j for element j) -> <32 x i8> of 16 where the bit is set."""
    m = fn.v(f"bitcast i32 {fn.load('i32', ptr)} to <32 x i1>")
    return fn.v(f"select <32 x i1> {m}, {V32B} splat (i8 16), {V32B} zeroinitializer")


def _dot_u_minus(offset: int):
    def dot(fn, q, x, n):
        """sum (q - offset) x = sum q x - offset sum x"""
        p = fn.dot_u8s8("zeroinitializer", q, x, n)
        po = fn.dot_u8s8("zeroinitializer", f"splat (i8 {offset})", x, n)
        return fn.v(f"sub {vec(n // 4, 'i32')} {p}, {po}")
    return dot


_dot_u_minus8 = _dot_u_minus(8)


def _dot_s(fn, q, x, n):
    return fn.dot_s8s8("zeroinitializer", q, x, n)


def _q8_0(fn: Fn):
    def load(fn, wb, xb, xa):
        return (fn.load(V32B, fn.gep(wb, "2")), fn.load(V32B, fn.gep(xb, "2")),
                fn.v(f"fmul float {_half(fn, wb)}, {fn.load('float', xa)}"), None)
    return 34, lambda fn, wrow, nb: _blocks32(fn, wrow, 34, 34, nb, load, _dot_s)


def _q4_0(fn: Fn):
    def load(fn, wb, xb, xa):
        return (None, fn.load(V32B, fn.gep(xb, "2")), fn.v(f"fmul float {_half(fn, wb)}, {fn.load('float', xa)}"),
                None)
    return 18, lambda fn, wrow, nb: _blocks32(fn, wrow, 18, 34, nb, load, _dot_u_minus8, nib=2)


def _q5_0(fn: Fn):
    def load(fn, wb, xb, xa):
        return (None, fn.load(V32B, fn.gep(xb, "2")), fn.v(f"fmul float {_half(fn, wb)}, {fn.load('float', xa)}"),
                None)
    return 22, lambda fn, wrow, nb: _blocks32(fn, wrow, 22, 34, nb, load, _dot_u_minus(16), nib=(6, 2))


def _q5_1(fn: Fn):
    def load(fn, wb, xb, xa):
        scale = fn.v(f"fmul float {_half(fn, wb)}, {fn.load('float', xa)}")
        mins = fn.v(f"fmul float {_half(fn, fn.gep(wb, '2'))}, {fn.load('float', fn.gep(xa, '4'))}")
        return None, fn.load(V32B, fn.gep(xb, "4")), scale, mins
    return 24, lambda fn, wrow, nb: _blocks32(fn, wrow, 24, 36, nb, load, _dot_u, nib=(8, 4))


def _superblocks(fn: Fn, wrow: str, wbytes: int, nb: str, per_block) -> str:
    """Sum over 256-blocks (Q8_K activations): per_block -> (<16 x i32> isum, scale, float subtract)."""
    with fn.loop("0", nb, stem="sb") as B:
        acc = B.carry(V16F, "zeroinitializer")
        corr = B.carry("float", "0.0")
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {wbytes}"))
        _prefetch(fn, wb, wbytes)
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


def _u32x2_to_i32x8(fn: Fn, lo: str, hi: str) -> str:
    """two i32 holding 8 bytes -> <8 x i32> of the bytes (zero-extended)"""
    v = fn.v(f"insertelement <2 x i32> poison, i32 {lo}, i64 0")
    v = fn.v(f"insertelement <2 x i32> {v}, i32 {hi}, i64 1")
    v = fn.v(f"bitcast <2 x i32> {v} to <8 x i8>")
    return fn.v(f"zext <8 x i8> {v} to {V8I}")


def _q4_K(fn: Fn, five: bool = False):
    """Q4_K (144 B) and Q5_K (176 B: qh[32] at 16 adds bit j of qh[l] to element l of sub-block j)."""
    qs_at = 48 if five else 16

    def blk(fn, wb, xb, acc):
        dx = fn.load("float", xb)
        # 12 bytes of packed 6-bit scales/mins -> sc[0..7] in the bytes of u0,u1; m[0..7] in u2,u3
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
        sc = _u32x2_to_i32x8(fn, u0, u1)
        m = _u32x2_to_i32x8(fn, u2, u3)
        # mins: sum_j m_j * (bsums[2j] + bsums[2j+1])
        bs = fn.load("<16 x i16>", fn.gep(xb, "260"))
        bs = fn.v(f"sext <16 x i16> {bs} to <16 x i32>")
        be = fn.v(f"shufflevector <16 x i32> {bs}, <16 x i32> poison, {mask(range(0, 16, 2))}")
        bo = fn.v(f"shufflevector <16 x i32> {bs}, <16 x i32> poison, {mask(range(1, 16, 2))}")
        mp = fn.v(f"mul {V8I} {m}, {fn.v(f'add {V8I} {be}, {bo}')}")
        msum = fn.call("i32", "llvm.vector.reduce.add.v8i32", [f"{V8I} {mp}"], V8I)
        d = fn.v(f"fmul float {_half(fn, wb)}, {dx}")
        dmin = fn.v(f"fmul float {_half(fn, fn.gep(wb, '2'))}, {dx}")
        # float scale of each sub-block: d * dx * sc_j (exact integer dot, one rounding per scale)
        dsc = fn.v(f"uitofp {V8I} {sc} to {V8F}")
        dsc = fn.v(f"fmul {V8F} {dsc}, {fn.splat(8, 'float', d)}")
        # chunk c: 32 bytes of qs = sub-blocks 2c (low nibbles) and 2c+1 (high), 64 activations
        qh = fn.load(V32B, fn.gep(wb, "16")) if five else None
        for c in range(4):
            qb = fn.load(V32B, fn.gep(wb, str(qs_at + 32 * c)))
            lo = fn.v(f"and {V32B} {qb}, splat (i8 15)")
            hi = fn.v(f"lshr {V32B} {qb}, splat (i8 4)")
            if five:
                lo, hi = (fn.v(f"or {V32B} {part}, {_bit_to_16(fn, qh, 2 * c + k)}") for k, part in enumerate((lo, hi)))
            q = fn.concat("i8", 32, lo, hi)
            x = fn.load(V64B, fn.gep(xb, str(4 + 64 * c)))
            pf = fn.v(f"sitofp {V16I} {fn.dot_u8s8('zeroinitializer', q, x, 64)} to {V16F}")
            s = fn.v(f"shufflevector {V8F} {dsc}, {V8F} poison, {mask([2 * c] * 8 + [2 * c + 1] * 8)}")
            acc = fn.fmadd_v(16, pf, s, acc)
        return acc, None, fn.v(f"fmul float {dmin}, {fn.v(f'sitofp i32 {msum} to float')}")
    size = 176 if five else 144
    return size, lambda fn, wrow, nb: _superblocks(fn, wrow, size, nb, blk)


def _bit_to_16(fn: Fn, qh: str, bit: int) -> str:
    """<32 x i8> ((qh >> bit) & 1) << 4"""
    t = fn.v(f"lshr {V32B} {qh}, splat (i8 {bit})") if bit else qh
    t = fn.v(f"and {V32B} {t}, splat (i8 1)")
    return fn.v(f"shl {V32B} {t}, splat (i8 4)")


def _q5_K(fn: Fn):
    return _q4_K(fn, five=True)


def _q6_K(fn: Fn):
    def blk(fn, wb, xb, acc):
        dx = fn.load("float", xb)
        sc = fn.load("<16 x i8>", fn.gep(wb, "192"))
        sc = fn.v(f"sext <16 x i8> {sc} to <16 x i32>")
        # the -32 offset: 32 * sum_j sc_j * bsums_j
        bs = fn.load("<16 x i16>", fn.gep(xb, "260"))
        bs = fn.v(f"sext <16 x i16> {bs} to <16 x i32>")
        off = fn.call("i32", "llvm.vector.reduce.add.v16i32", [f"<16 x i32> {fn.v(f'mul <16 x i32> {sc}, {bs}')}"],
                      "<16 x i32>")
        off = fn.v(f"shl i32 {off}, 5")
        d = fn.v(f"fmul float {_half(fn, fn.gep(wb, '208'))}, {dx}")
        dsc = fn.v(f"sitofp <16 x i32> {sc} to {V16F}")
        dsc = fn.v(f"fmul {V16F} {dsc}, {fn.splat(16, 'float', d)}")
        for h in range(2):
            L = fn.load(V64B, fn.gep(wb, str(64 * h)))            # ql[64h .. 64h+63]
            H = fn.load(V32B, fn.gep(wb, str(128 + 32 * h)))      # qh[32h .. 32h+31]
            for pair in range(2):   # elements 0-63 of the half: low nibbles; 64-127: high nibbles
                low = fn.v(f"and {V64B} {L}, splat (i8 15)") if pair == 0 else fn.v(f"lshr {V64B} {L}, splat (i8 4)")
                h0 = fn.v(f"lshr {V32B} {H}, splat (i8 {4 * pair})") if pair else H
                h1 = fn.v(f"lshr {V32B} {H}, splat (i8 {4 * pair + 2})")
                hb = fn.concat("i8", 32, h0, h1)
                hb = fn.v(f"and {V64B} {hb}, splat (i8 3)")
                hb = fn.v(f"shl {V64B} {hb}, splat (i8 4)")
                q = fn.v(f"or {V64B} {low}, {hb}")
                x = fn.load(V64B, fn.gep(xb, str(4 + 128 * h + 64 * pair)))
                pf = fn.v(f"sitofp {V16I} {fn.dot_u8s8('zeroinitializer', q, x, 64)} to {V16F}")
                j = 8 * h + 4 * pair   # lanes 4k..4k+3 hold sub-block j + k
                s = fn.v(f"shufflevector {V16F} {dsc}, {V16F} poison, "
                         f"{mask([j + k for k in range(4) for _ in range(4)])}")
                acc = fn.fmadd_v(16, pf, s, acc)
        return acc, None, fn.v(f"fmul float {d}, {fn.v(f'sitofp i32 {off} to float')}")
    return 210, lambda fn, wrow, nb: _superblocks(fn, wrow, 210, nb, blk)


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
        _prefetch(fn, wp, 32 * elem)
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


def _q4_1_ggml(fn: Fn):
    """llama.cpp's own order (jit/kernels/q4_1.py), shared with the batch kernel mm_q4_1."""
    from .q4_1 import q4_1_matvec_row
    return 20, q4_1_matvec_row


BUILDERS = {T.Q8_0: (_q8_0, 32), T.Q4_0: (_q4_0, 32), T.Q4_1: (_q4_1_ggml, 32), T.Q5_0: (_q5_0, 32), T.Q5_1: (_q5_1, 32),
            T.Q4_K: (_q4_K, 256), T.Q5_K: (_q5_K, 256),
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
