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
from .blocks32 import KINDS, matvec_body, matvec_builder
from .emit import Fn, ModuleText, const_vec, mask, vec
from .matvec_more import MORE, more_body

HEADER = "(ptr noalias %w, ptr noalias %xq, ptr noalias %y, i64 %r0, i64 %r1, i64 %n) nounwind"
V8I, V32B = vec(8, "i32"), vec(32, "i8")


def _rows(fn: Fn, row_bytes: str, body) -> None:
    """for r in [r0, r1): y[r] = body(fn, row pointer)."""
    with fn.loop("%r0", "%r1", stem="row") as R:
        wrow = fn.gep("%w", fn.v(f"mul i64 {R.i}, {row_bytes}"))
        total = body(fn, wrow)
        fn.store("float", total, fn.gep("%y", fn.v(f"shl i64 {R.i}, 2")), 4)
    fn.do("ret void")


def _half(fn: Fn, ptr: str) -> str:
    return fn.half_to_float(fn.load("i16", ptr))


PREFETCH = int(os.environ.get("LECTERN_PREFETCH", "2048"))


V16F, V16I, V64B = vec(16, "float"), vec(16, "i32"), vec(64, "i8")


def _prefetch(fn: Fn, ptr: str, nbytes: int) -> None:
    """Ask for the weights PREFETCH bytes ahead (the stream runs on into the next rows): one
    prefetch per cache line the step consumes."""
    if PREFETCH:
        fn.declare("declare void @llvm.prefetch.p0(ptr, i32, i32, i32)")
        for k in range(0, nbytes, 64):
            ahead = fn.v(f"getelementptr i8, ptr {ptr}, i64 {PREFETCH + k}")
            fn.do(f"call void @llvm.prefetch.p0(ptr {ahead}, i32 0, i32 3, i32 1)")


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


def _q4_K_unpack(fn: Fn, wb: str, five: bool) -> dict:
    """A Q4_K/Q5_K superblock's weights, token-independent: 6-bit sc/m as <8 x i32>, d and dmin
    as floats, float(sc), and the 4 chunks of 64 weight integers."""
    qs_at = 48 if five else 16
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
    sc = _u32x2_to_i16x8(fn, u0, u1)
    m = _u32x2_to_i16x8(fn, u2, u3)
    # sc_j splat over the 16 words of sub-block j's vpmaddubsw pairs; m_j on words 2j, 2j+1 (bsums)
    W = dict(sc=_splat_words(fn, sc),
             m=fn.v(f"shufflevector <8 x i16> {m}, <8 x i16> poison, {mask(j // 2 for j in range(16))}"),
             d=_half(fn, wb), dmin=_half(fn, fn.gep(wb, "2")), q=[])
    # chunk c: 32 bytes of qs = sub-blocks 2c (low nibbles) and 2c+1 (high): W["q"][j] = sub-block j
    qh = fn.load(V32B, fn.gep(wb, "16")) if five else None
    for c in range(4):
        qb = fn.load(V32B, fn.gep(wb, str(qs_at + 32 * c)))
        lo = fn.v(f"and {V32B} {qb}, splat (i8 15)")
        hi = fn.v(f"lshr {V32B} {qb}, splat (i8 4)")
        if five:
            lo, hi = (fn.v(f"or {V32B} {part}, {_bit_to_16(fn, qh, 2 * c + k)}") for k, part in enumerate((lo, hi)))
        W["q"] += [lo, hi]
    return W


def _q4_K_token(fn: Fn, W: dict, xb: str, acc: str) -> tuple[str, str]:
    """One token's share of a Q4_K/Q5_K superblock -> (acc, <8 x float> to subtract). As llama.cpp's
    AVX2 vec_dot: the 6-bit scales multiply the integer pair sums (vpmaddwd), so the superblock
    is one exact integer dot, scaled once in float: acc += float(isum) * (d * dx)."""
    dx = fn.load("float", xb)
    # mins: lane j of m_j * (bsums[2j] + bsums[2j+1]), exact in i32
    bs = fn.load("<16 x i16>", fn.gep(xb, "260"))
    mprod = fn.v(f"sitofp {V8I} {_madd_i16(fn, bs, W['m'])} to {vec(8, 'float')}")
    # sub-block j: 32 weights (0..31) x 32 activations -> 16 pair sums (|.| <= 2*31*127) -> * sc_j
    parts = [_scaled_dot(fn, q, fn.load(V32B, fn.gep(xb, str(4 + 32 * j))), W["sc"][j]) for j, q in enumerate(W["q"])]
    lo, hi = parts[0], parts[1]
    for j in range(2, 8, 2):
        lo = fn.v(f"add {V8I} {lo}, {parts[j]}")
        hi = fn.v(f"add {V8I} {hi}, {parts[j + 1]}")
    isum = fn.v(f"sitofp {V16I} {fn.concat('i32', 8, lo, hi)} to {V16F}")
    d = fn.v(f"fmul float {W['d']}, {dx}")
    dmin = fn.v(f"fmul float {W['dmin']}, {dx}")
    ds = fn.splat(16, "float", d)
    if fn.cpu.has_fma:
        acc = fn.fma_v(16, isum, ds, acc)
    else:                                     # no FMA: two roundings, the same in batch and matvec
        acc = fn.v(f"fadd {V16F} {fn.v(f'fmul {V16F} {isum}, {ds}')}, {acc}")
    return acc, fn.v(f"fmul {vec(8, 'float')} {mprod}, {fn.splat(8, 'float', dmin)}")


_q4_K_token.sub_lanes = 8    # the mins' term stays in 8 lanes (pairs of sub-blocks) until the row ends


def _u32x2_to_i16x8(fn: Fn, lo: str, hi: str) -> str:
    """two i32 holding 8 bytes -> <8 x i16> of the bytes (zero-extended)"""
    v = fn.v(f"insertelement <2 x i32> poison, i32 {lo}, i64 0")
    v = fn.v(f"insertelement <2 x i32> {v}, i32 {hi}, i64 1")
    v = fn.v(f"bitcast <2 x i32> {v} to <8 x i8>")
    return fn.v(f"zext <8 x i8> {v} to <8 x i16>")


def _splat_words(fn: Fn, v: str) -> list[str]:
    """<8 x i16> v -> [<16 x i16> splat(v[j]) for j < 8]: on AVX2 one vpshufb each from v in both
    128-bit lanes (a broadcast shuffle per word otherwise costs two shuffles)."""
    if not fn.cpu.has_avx2:
        return [fn.v(f"shufflevector <8 x i16> {v}, <8 x i16> poison, {mask([j] * 16)}") for j in range(8)]
    both = fn.v(f"shufflevector <8 x i16> {v}, <8 x i16> poison, {mask(list(range(8)) * 2)}")
    both = fn.v(f"bitcast <16 x i16> {both} to <32 x i8>")
    out = []
    for j in range(8):
        idx = const_vec("i8", [2 * j, 2 * j + 1] * 16)
        b = fn.call("<32 x i8>", "llvm.x86.avx2.pshuf.b", [f"<32 x i8> {both}", f"<32 x i8> {idx}"],
                    "<32 x i8>, <32 x i8>")
        out.append(fn.v(f"bitcast <32 x i8> {b} to <16 x i16>"))
    return out


def _madd_i16(fn: Fn, a: str, b: str) -> str:
    """<16 x i16> a, b -> <8 x i32> a[2i]*b[2i] + a[2i+1]*b[2i+1] (vpmaddwd; exact)"""
    if fn.cpu.has_avx2:
        return fn.call(V8I, "llvm.x86.avx2.pmadd.wd", [f"<16 x i16> {a}", f"<16 x i16> {b}"],
                       "<16 x i16>, <16 x i16>")
    p = fn.v(f"mul <16 x i32> {fn.v(f'sext <16 x i16> {a} to <16 x i32>')}, {fn.v(f'sext <16 x i16> {b} to <16 x i32>')}")
    ev = fn.v(f"shufflevector <16 x i32> {p}, <16 x i32> poison, {mask(range(0, 16, 2))}")
    od = fn.v(f"shufflevector <16 x i32> {p}, <16 x i32> poison, {mask(range(1, 16, 2))}")
    return fn.v(f"add {V8I} {ev}, {od}")


def _scaled_dot(fn: Fn, q: str, x: str, sc: str) -> str:
    """<32 x i8> q (unsigned, < 128), x (signed), <16 x i16> sc -> <8 x i32>: lane i =
    sc[2i] * (q.x over bytes 4i, 4i+1) + sc[2i+1] * (bytes 4i+2, 4i+3) (vpmaddubsw, vpmaddwd)."""
    if fn.cpu.has_avx2:
        m = fn.call(vec(16, "i16"), "llvm.x86.avx2.pmadd.ub.sw", [f"<32 x i8> {q}", f"<32 x i8> {x}"],
                    "<32 x i8>, <32 x i8>")
        return _madd_i16(fn, m, sc)
    p = fn.v(f"mul <32 x i16> {fn.v(f'zext <32 x i8> {q} to <32 x i16>')}, {fn.v(f'sext <32 x i8> {x} to <32 x i16>')}")
    ev = fn.v(f"shufflevector <32 x i16> {p}, <32 x i16> poison, {mask(range(0, 32, 2))}")
    od = fn.v(f"shufflevector <32 x i16> {p}, <32 x i16> poison, {mask(range(1, 32, 2))}")
    return _madd_i16(fn, fn.v(f"add <16 x i16> {ev}, {od}"), sc)


def _superblocks_many(fn: Fn, wrow: str, wbytes: int, nb: str, unpack, token, xqs) -> list[str]:
    """Sum over 256-blocks (Q8_K activations) for several tokens at once: each superblock is
    unpacked once (unpack(fn, wb) -> W) and then used by every token (token(fn, W, xb, acc) ->
    (acc, subtrahend): a float, or token.sub_lanes floats summed only at the row's end). Every token's float operations are the one-token sequence, so the
    batch gives the matvec's bits."""
    lanes = getattr(token, "sub_lanes", 0)          # the subtrahend: a float, or <lanes x float> lanes
    sub_ty = vec(lanes, "float") if lanes else "float"
    with fn.loop("0", nb, stem="sb") as B:
        accs = [B.carry(V16F, "zeroinitializer") for _ in xqs]
        corrs = [B.carry(sub_ty, "zeroinitializer" if lanes else "0.0") for _ in xqs]
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {wbytes}"))
        _prefetch(fn, wb, wbytes)
        W = unpack(fn, wb)
        off = fn.v(f"mul i64 {B.i}, 292")
        for xq, acc, corr in zip(xqs, accs, corrs):
            a, sub = token(fn, W, fn.gep(xq, off), acc)
            B.set(acc, a)
            B.set(corr, fn.v(f"fadd {sub_ty} {corr}, {sub}"))
    return [fn.v(f"fsub float {fn.hsum_f(16, acc)}, {fn.hsum_f(lanes, corr) if lanes else corr}")
            for acc, corr in zip(accs, corrs)]


def _q4_K(fn: Fn, five: bool = False):
    """Q4_K (144 B) and Q5_K (176 B: qh[32] at 16 adds bit j of qh[l] to element l of sub-block j)."""
    size = 176 if five else 144
    return size, lambda fn, wrow, nb: _superblocks_many(fn, wrow, size, nb, lambda fn, wb: _q4_K_unpack(fn, wb, five),
                                                        _q4_K_token, ["%xq"])[0]


def _bit_to_16(fn: Fn, qh: str, bit: int) -> str:
    """<32 x i8> ((qh >> bit) & 1) << 4"""
    t = fn.v(f"lshr {V32B} {qh}, splat (i8 {bit})") if bit else qh
    t = fn.v(f"and {V32B} {t}, splat (i8 1)")
    return fn.v(f"shl {V32B} {t}, splat (i8 4)")


def _q5_K(fn: Fn):
    return _q4_K(fn, five=True)


def _q6_K_unpack(fn: Fn, wb: str) -> dict:
    """A Q6_K superblock's weights, token-independent: sc as <16 x i32>, d, float(sc) and the
    4 groups of 64 weight integers (0..63, the -32 offset is applied through the bsums)."""
    sc = fn.load("<16 x i8>", fn.gep(wb, "192"))
    sc = fn.v(f"sext <16 x i8> {sc} to <16 x i32>")
    W = dict(sc=sc, d=_half(fn, fn.gep(wb, "208")), scf=fn.v(f"sitofp <16 x i32> {sc} to {V16F}"), q=[])
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
            W["q"].append(fn.v(f"or {V64B} {low}, {hb}"))
    return W


def _q6_K_token(fn: Fn, W: dict, xb: str, acc: str) -> tuple[str, str]:
    """One token's share of a Q6_K superblock -> (acc, float to subtract)."""
    dx = fn.load("float", xb)
    # the -32 offset: 32 * sum_j sc_j * bsums_j
    bs = fn.load("<16 x i16>", fn.gep(xb, "260"))
    bs = fn.v(f"sext <16 x i16> {bs} to <16 x i32>")
    prod = fn.v(f"mul <16 x i32> {W['sc']}, {bs}")
    off = fn.call("i32", "llvm.vector.reduce.add.v16i32", [f"<16 x i32> {prod}"], "<16 x i32>")
    off = fn.v(f"shl i32 {off}, 5")
    d = fn.v(f"fmul float {W['d']}, {dx}")
    dsc = fn.v(f"fmul {V16F} {W['scf']}, {fn.splat(16, 'float', d)}")
    for g, q in enumerate(W["q"]):
        h, pair = divmod(g, 2)
        x = fn.load(V64B, fn.gep(xb, str(4 + 128 * h + 64 * pair)))
        pf = fn.v(f"sitofp {V16I} {fn.dot_u8s8('zeroinitializer', q, x, 64)} to {V16F}")
        j = 8 * h + 4 * pair   # lanes 4k..4k+3 hold sub-block j + k
        s = fn.v(f"shufflevector {V16F} {dsc}, {V16F} poison, {mask([j + k for k in range(4) for _ in range(4)])}")
        acc = fn.fmadd_v(16, pf, s, acc)
    return acc, fn.v(f"fmul float {d}, {fn.v(f'sitofp i32 {off} to float')}")


def _q6_K(fn: Fn):
    return 210, lambda fn, wrow, nb: _superblocks_many(fn, wrow, 210, nb, _q6_K_unpack, _q6_K_token, ["%xq"])[0]


# K-quant batch kernels (kbatch.py): (superblock bytes, unpack, per-token step)
K_PARTS = {"Q4_K": (144, lambda fn, wb: _q4_K_unpack(fn, wb, False), _q4_K_token),
           "Q5_K": (176, lambda fn, wb: _q4_K_unpack(fn, wb, True), _q4_K_token),
           "Q6_K": (210, _q6_K_unpack, _q6_K_token)}


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


# 32-block types: llama.cpp's own order, shared with the batch kernels (blocks32.py)
BUILDERS = {T.Q8_0: (matvec_builder("Q8_0"), 32), T.Q4_0: (matvec_builder("Q4_0"), 32),
            T.Q4_1: (matvec_builder("Q4_1"), 32), T.Q5_0: (matvec_builder("Q5_0"), 32),
            T.Q5_1: (matvec_builder("Q5_1"), 32), T.Q4_K: (_q4_K, 256), T.Q5_K: (_q5_K, 256),
            T.Q6_K: (_q6_K, 256)}
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
