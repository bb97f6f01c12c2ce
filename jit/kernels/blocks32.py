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

import os
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
    def xaux(self) -> int:   # per block after the blocks: f32 d, then f32 s (Q8_1) or i32 sum(q) (Q8_0)
        return 8


KINDS = {k.name: k for k in (Kind("Q4_0", 18, 2, None, 8, False), Kind("Q4_1", 20, 4, None, 0, True),
                             Kind("Q5_0", 22, 6, 2, 16, False), Kind("Q5_1", 24, 8, 4, 0, True),
                             Kind("Q8_0", 34, 2, None, 0, False))}


def _weights(fn: Fn, kind: Kind, wb: str) -> str:
    """The block's 32 weight integers as <32 x i8> (nibbles 0..15 / 0..31 unsigned; Q8_0 signed)."""
    if kind.name == "Q8_0":
        return fn.load(V32B, fn.gep(wb, "2"))
    qs = fn.load(V16B, fn.gep(wb, str(kind.qs)))
    if fn.cpu.has_avx2:
        # both halves of one broadcast load; the high half shifted by 4 in its dwords (vpsrlvd):
        # 2 vector ops instead of shift + insert + and
        both = fn.v(f"bitcast {V32B} {fn.concat('i8', 16, qs, qs)} to {V8I}")
        sh = fn.v(f"lshr {V8I} {both}, <i32 0, i32 0, i32 0, i32 0, i32 4, i32 4, i32 4, i32 4>")
        q = fn.v(f"and {V32B} {fn.v(f'bitcast {V8I} {sh} to {V32B}')}, splat (i8 15)")
    else:
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


def block_rows(fn: Fn, kind: Kind, wrow, xq: str, nb: str, prefetch: int | str = 0) -> list[str]:
    """The dot of weight row(s) wrow (one pointer or a list) with the activation xq (an 8-bit row
    of nb blocks) -> one total per row. Each row is its own strict chain: several rows only
    interleave for the CPU. prefetch (bytes, a constant or an i64 value; 0 = none): each row's
    block asks for the cache line that far ahead of it. (Batches of tokens: batch32.py.)"""
    wrows = wrow if isinstance(wrow, list) else [wrow]
    aux = fn.gep(xq, fn.v(f"mul i64 {nb}, {kind.xb}"))
    with fn.loop("0", nb, stem="qb") as B:
        accs = [B.carry(V8F, "zeroinitializer") for _ in wrows]
        summs = [B.carry("float", "0.0") for _ in wrows] if kind.has_min else []
        xb = fn.gep(xq, fn.v(f"mul i64 {B.i}, {kind.xb}"))
        ab = fn.gep(aux, fn.v(f"mul i64 {B.i}, {kind.xaux}"))
        sa = fn.load("float", fn.gep(ab, "4"), 4) if kind.has_min else None
        x, da = fn.load(V32B, fn.gep(xb, str(kind.xqs))), fn.load("float", ab, 4)
        wbs = [fn.gep(wr, fn.v(f"mul i64 {B.i}, {kind.wb}")) for wr in wrows]
        dprods = _scale_products(fn, wbs, da)
        for r, wb in enumerate(wbs):
            if prefetch:
                _prefetch_at(fn, wb, prefetch)
            q = _weights(fn, kind, wb)
            mw = fn.half_to_float_at(fn.gep(wb, "2")) if kind.has_min else None
            lf = fn.v(f"sitofp {V8I} {_lanes(fn, kind, q, x)} to {V8F}")
            B.set(accs[r], _fma8(fn, fn.splat(8, "float", dprods[r]), lf, accs[r]))
            if kind.has_min:
                B.set(summs[r], fn.v(f"fadd float {summs[r]}, {fn.v(f'fmul float {mw}, {sa}')}"))
    return row_totals(fn, accs, summs, kind.has_min)


def row_totals(fn: Fn, accs: list, summs: list, has_min: bool) -> list:
    """Each 8-lane accumulator summed in llama.cpp's order, ((4+0)+(6+2))+((5+1)+(7+3)), plus
    the row's min term (Q4_1/Q5_1)."""
    out = []
    for k, acc in enumerate(accs):
        hi = fn.v(f"shufflevector {V8F} {acc}, {V8F} poison, {mask(range(4, 8))}")
        lo = fn.v(f"shufflevector {V8F} {acc}, {V8F} poison, {mask(range(4))}")
        r = fn.v(f"fadd {vec(4, 'float')} {hi}, {lo}")
        e = [fn.v(f"extractelement {vec(4, 'float')} {r}, i64 {i}") for i in range(4)]
        s = fn.v(f"fadd float {fn.v(f'fadd float {e[0]}, {e[2]}')}, {fn.v(f'fadd float {e[1]}, {e[3]}')}")
        out.append(fn.v(f"fadd float {s}, {summs[k]}") if has_min else s)
    return out


def _scale_products(fn: Fn, wbs: list[str], da: str) -> list[str]:
    """d_w * d_a (float32, one rounding) for each weight block (f16 d at byte 0), per row; d_w
    comes from the exact f16 table (a load, no vector conversion and no shuffles per row)."""
    return [fn.v(f"fmul float {fn.half_to_float_at(wb)}, {da}") for wb in wbs]


def _prefetch_at(fn: Fn, ptr: str, ahead: int | str) -> None:
    fn.declare("declare void @llvm.prefetch.p0(ptr, i32, i32, i32)")
    fn.do(f"call void @llvm.prefetch.p0(ptr {fn.v(f'getelementptr i8, ptr {ptr}, i64 {ahead}')}, i32 0, i32 3, i32 1)")


# matvec: rows per step, and the prefetch distance (< 0: the next group of rows, at the same block)
MV_ROWS = int(os.environ.get("LECTERN_MV_ROWS", "4"))
MV_PREFETCH = int(os.environ.get("LECTERN_MV_PREFETCH", "-1"))
# Q8_0 rows shorter than this run one at a time: a group of short rows is several short streams,
# which ran at 17-18 GB/s on 640 columns (Gemma 3's output) against 24-27 GB/s one row after
# another, and 24-26 against 30-31 on 2560 (2 threads, Zen 3); groups pay on long rows. The 4-
# and 5-bit types stay grouped at every length (they are bound by arithmetic the group shares).
GROUP_MIN_BYTES = {"Q8_0": int(os.environ.get("LECTERN_MV_GROUP_MIN_BYTES", "8192"))}


def matvec_body(fn: Fn, name: str, rows: int = MV_ROWS, prefetch: int = MV_PREFETCH) -> None:
    """matvec_<type>'s body: y[r] = row r . xq, `rows` neighbouring rows per step, then the
    remaining rows one at a time. One row alone is bound by latency (its FMA chain); several
    interleave and share the activation's work. Several rows are several streams, which the
    hardware prefetcher follows badly, so each row's block asks for the same block of the next
    group of rows (prefetch < 0): one sequential stream of prefetches runs a group ahead. Every
    row's float sequence is the one-row sequence, so results never depend on how rows are
    grouped or split over threads."""
    kind = KINDS[name]
    nb = fn.v("sdiv i64 %n, 32")
    row_bytes = fn.v(f"mul i64 {nb}, {kind.wb}")
    if prefetch < 0:       # the same place in the next group of rows (+ |prefetch| - 1 bytes)
        prefetch = fn.v(f"add i64 {fn.v(f'mul i64 {row_bytes}, {rows}')}, {-prefetch - 1}")
    span = fn.v("sub i64 %r1, %r0")
    rest = fn.v(f"srem i64 {span}, {rows}")
    grouped = fn.v(f"sub i64 %r1, {rest}")                  # rows in [r0, grouped) go `rows` at a time
    if GROUP_MIN_BYTES.get(name):                           # ... if they are long; short ones one by one
        short = fn.v(f"icmp slt i64 {row_bytes}, {GROUP_MIN_BYTES[name]}")
        grouped = fn.v(f"select i1 {short}, i64 %r0, i64 {grouped}")
    with fn.loop("%r0", grouped, step=rows, stem="mg") as R:
        wrow = fn.gep("%w", fn.v(f"mul i64 {R.i}, {row_bytes}"))
        wrows = [wrow] + [fn.gep(wrow, fn.v(f"mul i64 {row_bytes}, {k}")) for k in range(1, rows)]
        yrow = fn.gep("%y", fn.v(f"shl i64 {R.i}, 2"))
        for k, total in enumerate(block_rows(fn, kind, wrows, "%xq", nb, prefetch)):
            fn.store("float", total, fn.gep(yrow, str(4 * k)), 4)
    with fn.loop(grouped, "%r1", stem="mr") as R:
        wrow = fn.gep("%w", fn.v(f"mul i64 {R.i}, {row_bytes}"))
        total = block_rows(fn, kind, wrow, "%xq", nb, prefetch)[0]
        fn.store("float", total, fn.gep("%y", fn.v(f"shl i64 {R.i}, 2")), 4)
    fn.do("ret void")


def matvec_builder(name: str):
    """matvec.BUILDERS entry: (block bytes, row function over %xq)."""
    kind = KINDS[name]

    def build(fn: Fn):
        return kind.wb, lambda fn, wrow, nb: block_rows(fn, kind, wrow, "%xq", nb)[0]
    return build
