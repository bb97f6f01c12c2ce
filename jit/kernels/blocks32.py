"""32-block weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) . 8-bit activations in llama.cpp's own order
(ggml_vec_dot_<type>_q8_<0|1>, AVX2/VNNI; numpy twin of Q4_1: inference.ggml_cpu.vec_dot_q4_1_q8_1),
for one token (the matvec); the batch kernels `mm_<type>` (batch32.py) run the same float sequence
per token, so batch and decode give identical bits.

Per 32-block b:  lanes[8] = int32 sums of 4 consecutive products (vpdpbusd on 32 bytes), with the
                 weights' offset (Q4_0: q - 8, Q5_0: q - 16) applied to the integers
                 acc = fma(f32(d_w * d_a), float(lanes), acc)          <8 x float>
                 summs += m_w * s_a                                     (Q4_1/Q5_1: s_a = Q8_1's F16 sum)
Row result: r = acc[4:8] + acc[0:4]; ((r0 + r2) + (r1 + r3)) + summs   (hsum_float_8)
"""
from __future__ import annotations

from dataclasses import dataclass

from .emit import Fn, mask, vec

V8F, V8I, V32B, V16B = vec(8, "float"), vec(8, "i32"), vec(32, "i8"), vec(16, "i8")


@dataclass(frozen=True)
class Kind:
    name: str
    wb: int                  # weight block bytes
    qs: int                  # offset of the 16 nibble bytes (or of the 32 int8 for Q8_0)
    qh: int | None           # offset of the 32 fifth bits (Q5_*)
    offset: int              # subtracted from every weight integer
    has_min: bool            # Q4_1/Q5_1: + m_w * s_a per block (Q8_1 activations)

    @property
    def xb(self) -> int:     # activation block bytes; its qs start; f32 copies per block after the blocks
        return 36 if self.has_min else 34

    @property
    def xqs(self) -> int:
        return 4 if self.has_min else 2

    @property
    def xaux(self) -> int:
        return 8 if self.has_min else 4


KINDS = {k.name: k for k in (Kind("Q4_0", 18, 2, None, 8, False), Kind("Q4_1", 20, 4, None, 0, True),
                             Kind("Q5_0", 22, 6, 2, 16, False), Kind("Q5_1", 24, 8, 4, 0, True),
                             Kind("Q8_0", 34, 2, None, 0, False))}


def _weights(fn: Fn, kind: Kind, wb: str) -> str:
    """The block's 32 weight integers as <32 x i8> (nibbles 0..15 / 0..31 unsigned; Q8_0 signed)."""
    if kind.name == "Q8_0":
        return fn.load(V32B, fn.gep(wb, "2"))
    qs = fn.load(V16B, fn.gep(wb, str(kind.qs)))
    q = fn.concat("i8", 16, fn.v(f"and {V16B} {qs}, splat (i8 15)"), fn.v(f"lshr {V16B} {qs}, splat (i8 4)"))
    if kind.qh is not None:
        m = fn.v(f"bitcast i32 {fn.load('i32', fn.gep(wb, str(kind.qh)))} to <32 x i1>")
        q = fn.v(f"or {V32B} {q}, {fn.v(f'select <32 x i1> {m}, {V32B} splat (i8 16), {V32B} zeroinitializer')}")
    return q


def _lanes(fn: Fn, kind: Kind, q: str, x: str) -> str:
    if kind.name == "Q8_0":
        return fn.dot_s8s8("zeroinitializer", q, x, 32)
    p = fn.dot_u8s8("zeroinitializer", q, x, 32)
    if kind.offset:
        po = fn.dot_u8s8("zeroinitializer", f"splat (i8 {kind.offset})", x, 32)
        p = fn.v(f"sub {V8I} {p}, {po}")
    return p


def _fma8(fn: Fn, a: str, b: str, c: str) -> str:
    if fn.cpu.has_fma:
        return fn.fma_v(8, a, b, c)
    return fn.v(f"fadd {V8F} {fn.v(f'fmul {V8F} {a}, {b}')}, {c}")   # no FMA: two roundings


def block_rows(fn: Fn, kind: Kind, wrow, xqs: list[str], nb: str) -> list[str]:
    """The dot of weight row(s) wrow (one pointer or a list) with each activation in xqs (8-bit
    rows of nb blocks) -> totals, row-major over (row, token). Each (row, token) is its own
    strict chain: several of them only interleave for the CPU."""
    wrows = wrow if isinstance(wrow, list) else [wrow]
    auxs = [fn.gep(x, fn.v(f"mul i64 {nb}, {kind.xb}")) for x in xqs]
    pairs = [(r, k) for r in range(len(wrows)) for k in range(len(xqs))]
    with fn.loop("0", nb, stem="qb") as B:
        accs = [B.carry(V8F, "zeroinitializer") for _ in pairs]
        summs = [B.carry("float", "0.0") for _ in pairs] if kind.has_min else []
        xs = []
        for xq, aux in zip(xqs, auxs):
            xb = fn.gep(xq, fn.v(f"mul i64 {B.i}, {kind.xb}"))
            ab = fn.gep(aux, fn.v(f"mul i64 {B.i}, {kind.xaux}"))
            sa = fn.load("float", fn.gep(ab, "4"), 4) if kind.has_min else None
            xs.append((fn.load(V32B, fn.gep(xb, str(kind.xqs))), fn.load("float", ab, 4), sa))
        for r, wr in enumerate(wrows):
            wb = fn.gep(wr, fn.v(f"mul i64 {B.i}, {kind.wb}"))
            q = _weights(fn, kind, wb)
            dw = fn.half_to_float(fn.load("i16", wb, 2))
            mw = fn.half_to_float(fn.load("i16", fn.gep(wb, "2"), 2)) if kind.has_min else None
            for k, (x, da, sa) in enumerate(xs):
                i = r * len(xqs) + k
                lf = fn.v(f"sitofp {V8I} {_lanes(fn, kind, q, x)} to {V8F}")
                d = fn.v(f"fmul float {dw}, {da}")
                B.set(accs[i], _fma8(fn, fn.splat(8, "float", d), lf, accs[i]))
                if kind.has_min:
                    B.set(summs[i], fn.v(f"fadd float {summs[i]}, {fn.v(f'fmul float {mw}, {sa}')}"))
    out = []
    for k, acc in enumerate(accs):
        hi = fn.v(f"shufflevector {V8F} {acc}, {V8F} poison, {mask(range(4, 8))}")
        lo = fn.v(f"shufflevector {V8F} {acc}, {V8F} poison, {mask(range(4))}")
        r = fn.v(f"fadd {vec(4, 'float')} {hi}, {lo}")
        e = [fn.v(f"extractelement {vec(4, 'float')} {r}, i64 {i}") for i in range(4)]
        s = fn.v(f"fadd float {fn.v(f'fadd float {e[0]}, {e[2]}')}, {fn.v(f'fadd float {e[1]}, {e[3]}')}")
        out.append(fn.v(f"fadd float {s}, {summs[k]}") if kind.has_min else s)
    return out


def matvec_body(fn: Fn, name: str) -> None:
    """matvec_<type>'s body, one row at a time: y[r] = row r . xq. (Interleaving rows measured
    slower out of cache: one sequential weight stream suits the hardware prefetcher best.)"""
    kind = KINDS[name]
    nb = fn.v("sdiv i64 %n, 32")
    row_bytes = fn.v(f"mul i64 {nb}, {kind.wb}")
    with fn.loop("%r0", "%r1", stem="mr") as R:
        wrow = fn.gep("%w", fn.v(f"mul i64 {R.i}, {row_bytes}"))
        fn.store("float", block_rows(fn, kind, wrow, ["%xq"], nb)[0], fn.gep("%y", fn.v(f"shl i64 {R.i}, 2")), 4)
    fn.do("ret void")


def matvec_builder(name: str):
    """matvec.BUILDERS entry: (block bytes, row function over %xq)."""
    kind = KINDS[name]

    def build(fn: Fn):
        return kind.wb, lambda fn, wrow, nb: block_rows(fn, kind, wrow, ["%xq"], nb)[0]
    return build
