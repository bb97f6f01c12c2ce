"""K-quant superblocks (Q4_K, Q5_K, Q6_K . Q8_K activations) in llama.cpp's float order.

llama.cpp's x86 CPU backend sums a K-quant row differently for decode and for a batch
(inference/ggml_matmul.py emulates each in numpy, checked bit for bit against its libggml), and
near ties in the logits follow those bits, so each order is a "mode" here:
  Q4_K (rows % 8 == 0: repacked to q4_K_8x8)
    gemv   decode, and the last T % 4 tokens of a batch: per superblock the exact integers
           isum = sum_j sc_j dot_j, imin = sum_j m_j bsum_j; acc = fma(isum, d dx, acc),
           accm = fma(imin, dmin dx, accm); y = acc - accm
    gemm   the first T - T % 4 tokens: the same per pair of sub-blocks (4 fmas per superblock)
  Q6_K
    vec_dot  T < 8: 8 int32 lanes per superblock (lane l: bytes 4l..4l+3 of every 32-chunk c
             times sc[2c + (l >= 4)], minus 32 (bs[2l] sc[2l] + bs[2l+1] sc[2l+1])),
             acc[l] = fma(dx dw, lane, acc[l]); hsum_float_8
    tiled    T >= 8: s1 = the superblock's exact integer; buf = fma(f32(s1) * dw, dx, buf)
  Q5_K
    gemv     Q4_K's gemv order, ours (llama.cpp's own Q5_K vec_dot sums 8 float lanes; no golden
             model has Q5_K weights): one order for decode and batches

STEPS here run on plain Q8_K activations (the matvec, and Q6_K's vec_dot batches); batches in
Q4_K gemm / gemv, Q5_K gemv and Q6_K tiled read interleaved activations (kquants_il.py).

Weight superblocks (bytes):
  Q4_K 144: f16 d, f16 dmin, u8 scales[12], u8 qs[128]; 8 sub-blocks of 32 with 6-bit (sc, m):
            w = d*sc_j*q - dmin*m_j; chunk c (32 bytes) holds sub-block 2c (low) and 2c+1 (high nibbles)
  Q5_K 176: as Q4_K with u8 qh[32] before qs: bit j of qh[l] is the 5th bit of element l of sub-block j
  Q6_K 210: u8 ql[128], u8 qh[64], i8 scales[16], f16 d; 16 sub-blocks of 16: w = d*sc_j*(q-32)
Activation superblock Q8_K 292: f32 d, i8 qs[256], i16 bsums[16] (sums of 16 consecutive qs).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from .. import tables
from .blocks32 import row_totals
from .emit import Fn, const_vec, mask, vec

V8I, V32B, V64B = vec(8, "i32"), vec(32, "i8"), vec(64, "i8")
V8F, V4I, V2F = vec(8, "float"), vec(4, "i32"), vec(2, "float")
X_BYTES = 292


class KStep(NamedTuple):
    """One token's share of a superblock in one mode: values carried across superblocks
    ((LLVM type, initial value) each), step(fn, W, xb, values) -> values, total(fn, values) -> float."""
    carries: tuple
    step: Callable
    total: Callable


def _half(fn: Fn, ptr: str) -> str:
    return fn.half_to_float(fn.load("i16", ptr))


def _fma(fn: Fn, a: str, b: str, c: str, n: int = 0) -> str:
    """a*b + c rounded once (llama.cpp's fmadd); without FMA two roundings, the same in every mode."""
    t = vec(n, "float") if n else "float"
    if fn.cpu.has_fma:
        return fn.fma_v(n, a, b, c) if n else fn.call("float", "llvm.fma.f32", [f"float {a}", f"float {b}", f"float {c}"],
                                                       "float, float, float")
    return fn.v(f"fadd {t} {fn.v(f'fmul {t} {a}, {b}')}, {c}")


def _isum(fn: Fn, v: str, n: int = 8) -> str:
    """Exact integer sum of the lanes of <n x i32> v."""
    return fn.call("i32", f"llvm.vector.reduce.add.v{n}i32", [f"{vec(n, 'i32')} {v}"], vec(n, "i32"))


def _isum_pair(fn: Fn, a: str, b: str) -> str:
    """Exact integer sums of <8 x i32> a and b -> <2 x i32> [sum a, sum b], reduced together
    (unpack both, then halve twice: 7 vector ops for the two instead of 5 each)."""
    lo = fn.v(f"shufflevector {V8I} {a}, {V8I} {b}, {mask([0, 8, 1, 9, 4, 12, 5, 13])}")
    hi = fn.v(f"shufflevector {V8I} {a}, {V8I} {b}, {mask([2, 10, 3, 11, 6, 14, 7, 15])}")
    s = fn.v(f"add {V8I} {lo}, {hi}")
    t = fn.v(f"add {V4I} {fn.v(f'shufflevector {V8I} {s}, {V8I} poison, {mask(range(4))}')}, "
             f"{fn.v(f'shufflevector {V8I} {s}, {V8I} poison, {mask(range(4, 8))}')}")
    return fn.v(f"add <2 x i32> {fn.v(f'shufflevector {V4I} {t}, {V4I} poison, {mask([0, 1])}')}, "
                f"{fn.v(f'shufflevector {V4I} {t}, {V4I} poison, {mask([2, 3])}')}")


def _to_f(fn: Fn, i: str) -> str:
    return fn.v(f"sitofp i32 {i} to float")


def _q4_K_unpack(fn: Fn, wb: str, five: bool) -> dict:
    """A Q4_K/Q5_K superblock's weights, token-independent: sc, each 6-bit scale splat over 16
    words; sc8, the 8 scales as words; m, the mins as words [m0, m0, m1, m1, ..]; d and dmin as
    floats; q, the 8 sub-blocks' weight integers (<32 x i8> each)."""
    qs_at = 48 if five else 16
    U = _scales_mins(fn, wb)                  # <16 x i8>: sc[0..7], m[0..7]
    # sc_j splat over the 16 words of sub-block j's vpmaddubsw pairs; m_j on words 2j, 2j+1 (bsums)
    W = dict(sc=_splat_scales(fn, U),
             sc8=_bytes_to_words(fn, U, range(8)), m=_bytes_to_words(fn, U, [8 + j // 2 for j in range(16)]),
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


def _scales_mins(fn: Fn, wb: str) -> str:
    """The 12 bytes of packed 6-bit scales/mins at wb+4 -> <16 x i8> [sc0..sc7, m0..m7], in one
    vector (the four dwords u0..u3 of llama.cpp's utmp at once):
      u0 = w0 & 0x3F..   u1 = (w2 & 0x0F..) | ((w0 >> 6) & 0x03..) << 4
      u2 = w1 & 0x3F..   u3 = ((w2 >> 4) & 0x0F..) | ((w1 >> 6) & 0x03..) << 4"""
    w = fn.load(V4I, fn.gep(wb, "4"))              # w0 w1 w2 and 4 bytes of qs (unused)
    a = fn.v(f"shufflevector {V4I} {w}, {V4I} poison, {mask([0, 2, 1, 2])}")
    a = fn.v(f"lshr {V4I} {a}, <i32 0, i32 0, i32 0, i32 4>")
    a = fn.v(f"and {V4I} {a}, {const_vec('i32', [0x3F3F3F3F, 0x0F0F0F0F] * 2)}")
    b = fn.v(f"shufflevector {V4I} {w}, {V4I} poison, {mask([0, 0, 1, 1])}")
    b = fn.v(f"lshr {V4I} {b}, splat (i32 2)")              # bits 6-7 of each byte to bits 4-5
    b = fn.v(f"and {V4I} {b}, {const_vec('i32', [0, 0x30303030] * 2)}")
    return fn.v(f"bitcast {V4I} {fn.v(f'or {V4I} {a}, {b}')} to <16 x i8>")


def _splat_scales(fn: Fn, u: str) -> list[str]:
    """<16 x i8> u -> [<16 x i16> splat(u[j]) for j < 8]: on AVX2 one vpshufb each, its mask
    read from jit/tables.py (a constant mask is rewritten into two shuffles)."""
    if not fn.cpu.has_avx2:
        return [_bytes_to_words(fn, u, [j] * 16) for j in range(8)]
    fn.declare(f"@{tables.WORD_SPLATS} = external global [256 x i8]")
    both = fn.v(f"shufflevector <16 x i8> {u}, <16 x i8> poison, {mask(list(range(16)) * 2)}")
    out = []
    for j in range(8):
        idx = fn.load(V32B, fn.v(f"getelementptr i8, ptr @{tables.WORD_SPLATS}, i64 {32 * j}"))
        b = fn.call(V32B, "llvm.x86.avx2.pshuf.b", [f"{V32B} {both}", f"{V32B} {idx}"], f"{V32B}, {V32B}")
        out.append(fn.v(f"bitcast {V32B} {b} to <16 x i16>"))
    return out


def _bytes_to_words(fn: Fn, u: str, picks) -> str:
    """<16 x i8> u -> <len(picks) x i16> [u[p] zero-extended for p in picks] (one vpshufb with
    zeroing on AVX2)."""
    picks = list(picks)
    idx = [i for p in picks for i in (p, 16)]               # 16: a byte of the zero vector
    b = fn.v(f"shufflevector <16 x i8> {u}, <16 x i8> zeroinitializer, {mask(idx)}")
    return fn.v(f"bitcast <{2 * len(picks)} x i8> {b} to <{len(picks)} x i16>")


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
    return _madd_i16(fn, maddubs(fn, q, x), sc)


def maddubs(fn: Fn, q: str, x: str) -> str:
    """<32 x i8> q (unsigned, < 128), x (signed) -> <16 x i16> q[2i] x[2i] + q[2i+1] x[2i+1] (vpmaddubsw;
    exact while |sum| < 2^15)."""
    if fn.cpu.has_avx2:
        return fn.call(vec(16, "i16"), "llvm.x86.avx2.pmadd.ub.sw", [f"<32 x i8> {q}", f"<32 x i8> {x}"],
                       "<32 x i8>, <32 x i8>")
    p = fn.v(f"mul <32 x i16> {fn.v(f'zext <32 x i8> {q} to <32 x i16>')}, {fn.v(f'sext <32 x i8> {x} to <32 x i16>')}")
    ev = fn.v(f"shufflevector <32 x i16> {p}, <32 x i16> poison, {mask(range(0, 32, 2))}")
    od = fn.v(f"shufflevector <32 x i16> {p}, <32 x i16> poison, {mask(range(1, 32, 2))}")
    return fn.v(f"add <16 x i16> {ev}, {od}")


def _bit_to_16(fn: Fn, qh: str, bit: int) -> str:
    """<32 x i8> ((qh >> bit) & 1) << 4"""
    t = fn.v(f"lshr {V32B} {qh}, splat (i8 {bit})") if bit else qh
    t = fn.v(f"and {V32B} {t}, splat (i8 1)")
    return fn.v(f"shl {V32B} {t}, splat (i8 4)")


def _q6_K_unpack(fn: Fn, wb: str) -> dict:
    """A Q6_K superblock's weights, token-independent: sc16 <16 x i16>, per 32-chunk c the scale
    words (sc[2c] x 8, sc[2c+1] x 8), d, and the 8 chunks of 32 weight integers (0..63; the -32
    offset is applied through the bsums)."""
    sc16 = fn.v(f"sext <16 x i8> {fn.load('<16 x i8>', fn.gep(wb, '192'))} to <16 x i16>")
    W = dict(sc16=sc16, d=_half(fn, fn.gep(wb, "208")), q=[],
             scw=[fn.v(f"shufflevector <16 x i16> {sc16}, <16 x i16> poison, {mask([2 * c] * 8 + [2 * c + 1] * 8)}")
                  for c in range(8)])
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
            q64 = fn.v(f"or {V64B} {low}, {hb}")
            W["q"] += [fn.v(f"shufflevector {V64B} {q64}, {V64B} poison, {mask(range(32 * k, 32 * k + 32))}")
                       for k in range(2)]
    return W


# --- integer parts (exact) ------------------------------------------------------------------------
def _q4_K_ints(fn: Fn, W: dict, xb: str) -> tuple[list[str], str]:
    """-> 8 <8 x i32> (sub-block j: sc_j times the pair sums of its 32 products), and <8 x i32>
    lane j = m_j * (bsums[2j] + bsums[2j+1])."""
    bs = fn.load("<16 x i16>", fn.gep(xb, "260"))
    mins = _madd_i16(fn, bs, W["m"])
    parts = [_scaled_dot(fn, q, fn.load(V32B, fn.gep(xb, str(4 + 32 * j))), W["sc"][j]) for j, q in enumerate(W["q"])]
    return parts, mins


def _add(fn: Fn, vs: list[str]) -> str:
    out = vs[0]
    for v in vs[1:]:
        out = fn.v(f"add {V8I} {out}, {v}")
    return out


def _q6_K_lanes(fn: Fn, W: dict, xb: str) -> str:
    """llama.cpp's 8 int32 lanes of a Q6_K superblock (see the module docstring)."""
    parts = [_scaled_dot(fn, q, fn.load(V32B, fn.gep(xb, str(4 + 32 * c))), W["scw"][c]) for c, q in enumerate(W["q"])]
    bs = fn.load("<16 x i16>", fn.gep(xb, "260"))
    off = fn.v(f"shl {V8I} {_madd_i16(fn, bs, W['sc16'])}, splat (i32 5)")
    return fn.v(f"sub {V8I} {_add(fn, parts)}, {off}")


# --- steps ----------------------------------------------------------------------------------------
def _dx_products(fn: Fn, W: dict, xb: str) -> tuple[str, str]:
    dx = fn.load("float", xb)
    return fn.v(f"fmul float {W['d']}, {dx}"), fn.v(f"fmul float {W['dmin']}, {dx}")


def _pair(fn: Fn, a: str, b: str, ty: str) -> str:
    """<2 x ty> [a, b]"""
    v = fn.v(f"insertelement <2 x {ty}> poison, {ty} {a}, i64 0")
    return fn.v(f"insertelement <2 x {ty}> {v}, {ty} {b}, i64 1")


# Q4_K's two accumulators (acc, accm) ride in one <2 x float>: lane-wise fmas round as scalar ones
def _q4_K_gemv(fn: Fn, W: dict, xb: str, vals: list[str]) -> list[str]:
    parts, mins = _q4_K_ints(fn, W, xb)
    dd = _pair(fn, *_dx_products(fn, W, xb), "float")                  # [d dx, dmin dx]
    sm = fn.v(f"sitofp <2 x i32> {_isum_pair(fn, _add(fn, parts), mins)} to {V2F}")
    return [_fma(fn, sm, dd, vals[0], 2)]                               # [acc, accm]


def _q6_K_vec_dot(fn: Fn, W: dict, xb: str, vals: list[str]) -> list[str]:
    lanes = fn.v(f"sitofp {V8I} {_q6_K_lanes(fn, W, xb)} to {V8F}")
    d = fn.v(f"fmul float {fn.load('float', xb)}, {W['d']}")
    return [_fma(fn, fn.splat(8, "float", d), lanes, vals[0], 8)]


def _difference(fn: Fn, vals: list[str]) -> str:
    a, m = (fn.v(f"extractelement {V2F} {vals[0]}, i64 {i}") for i in range(2))
    return fn.v(f"fsub float {a}, {m}")


ZERO_F = ("float", "0.0")
STEPS = {
    ("Q4_K", "gemv"): KStep(((V2F, "zeroinitializer"),), _q4_K_gemv, _difference),
    ("Q5_K", "gemv"): KStep(((V2F, "zeroinitializer"),), _q4_K_gemv, _difference),
    ("Q6_K", "vec_dot"): KStep(((V8F, "zeroinitializer"),), _q6_K_vec_dot, lambda fn, v: row_totals(fn, v, [], False)[0]),
}
UNPACK = {"Q4_K": (144, lambda fn, wb: _q4_K_unpack(fn, wb, False)), "Q5_K": (176, lambda fn, wb: _q4_K_unpack(fn, wb, True)),
          "Q6_K": (210, _q6_K_unpack)}
DECODE = {"Q4_K": "gemv", "Q5_K": "gemv", "Q6_K": "vec_dot"}     # one token, as llama.cpp decodes


BATCH_ORDERS = True     # False: every token of a batch in the decode order (tests: a batch computes
                        # exactly what decoding computes, as ops.SINGLE_QUERY_DECODE_ORDER for attention)


def batch_modes(name: str, rows: int, n_tok: int) -> list[tuple[int, int, str]]:
    """llama.cpp's choice for a batch of n_tok tokens against `rows` weight rows: [(t0, t1, mode)]."""
    if not BATCH_ORDERS:
        return [(0, n_tok, DECODE[name])]
    if name == "Q4_K" and rows % 8 == 0:
        n4 = n_tok - n_tok % 4
        return [(a, b, m) for a, b, m in ((0, n4, "gemm"), (n4, n_tok, "gemv")) if b > a]
    if name == "Q6_K":
        return [(0, n_tok, "tiled" if n_tok >= 8 else "vec_dot")]
    return [(0, n_tok, DECODE[name])]


def superblock_dots(fn: Fn, wrow: str, nb: str, name: str, mode: str, xqs: list[str], prefetch=None) -> list[str]:
    """A weight row's dot product with several tokens' Q8_K activations (pointers xqs), over nb
    superblocks: each superblock is unpacked once and used by every token; each token's float
    operations are those of `mode` alone, so any grouping of tokens gives the same bits."""
    return row_dots(fn, wrow, nb, UNPACK[name], STEPS[name, mode], xqs, prefetch)


def row_dots(fn: Fn, wrow: str, nb: str, unpacker: tuple, kstep: KStep, xqs: list[str], prefetch=None) -> list[str]:
    """superblock_dots with the (bytes, unpack) of the weights and the per-token step given."""
    wbytes, unpack = unpacker
    with fn.loop("0", nb, stem="sb") as B:
        carried = [[B.carry(ty, init) for ty, init in kstep.carries] for _ in xqs]
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {wbytes}"))
        if prefetch:
            prefetch(fn, wb, wbytes)
        W = unpack(fn, wb)
        off = fn.v(f"mul i64 {B.i}, {X_BYTES}")
        for xq, vals in zip(xqs, carried):
            for c, v in zip(vals, kstep.step(fn, W, fn.gep(xq, off), vals)):
                B.set(c, v)
    return [kstep.total(fn, vals) for vals in carried]
