"""32-block weights repacked 8 rows at a time (llama.cpp's idea of block_q4_0x8 / q8_0x8, our own
byte order), so that one 32-byte vector op works on 8 rows: the scales of 8 rows convert in one
vcvtph2ps and each row's integer dot lands in its own lane, with no per-row shuffles or
horizontal sums. In the GGUF layout a Q4_0 row-block costs ~9 vector µops; here ~4, which
leaves the matvec bound by memory instead of arithmetic; for Q8_0 ~6 instead of ~8, and one
stream of bytes per thread however short the rows (Gemma 3's 640-column output).

Layout (bytes), for each group g of 8 rows and each 32-block b, at (g * nb + b) * group_bytes:
  d[8]       f16 scale of rows 8g .. 8g+7                                        16 B
  Q4_0 (144 B a group-block): qs[4][32], load j, lane r (4 bytes), byte m:       128 B
             low nibble = q[r][8j + m], high nibble = q[r][8j + 4 + m]   (q = 0..15)
  Q8_0 (272 B): qs[8][32], load j, lane r, byte m = q[r][4j + m] (i8)            256 B
so vector k (Q4_0: nibbles of load k/2; Q8_0: load k) holds q[r][4k .. 4k+3] in lane r, and the
activation bytes 4k .. 4k+3 broadcast to every lane complete the dot: lanes = per-row sums.
Only matrices whose row count is a multiple of 8 are repacked (repack()).

Per row r, per block b (matvec and batch alike; s_b = sum of the activation's q):
  Q4_0 (llama.cpp's repacked q4_0_8x8 gemv/gemm on AVX2):
    isum = sum_i q[i] x[i] - 8 s_b                           exact int32
    acc = fma(float(isum), f32(d_w[r] * d_x), acc);  y_r = acc
  Q8_0 (llama.cpp's ggml_vec_dot_q8_0_q8_0, the file layout's order, so the same bits):
    lane_k = sum_{m<4} q[4k+m] x[4k+m]  (k < 8)              exact int32 (|q| x sign(x, q))
    acc_k = fma(float(lane_k), f32(d_w[r] * d_x), acc_k)
    y_r = ((acc_4 + acc_0) + (acc_6 + acc_2)) + ((acc_5 + acc_1) + (acc_7 + acc_3))
Every row is computed the same way whatever the row split or the batch, so decode, batch and
threads give identical bits.

    void matvec_<type>x8(const u8 *w, const void *xq, float *y, i64 r0, i64 r1, i64 n)
    void mm_<type>x8(const u8 *w, const i64 *p, float *y, i64 r0, i64 r1, i64 n)   p as tiles.py
    void repack_<type>x8(const u8 *src, u8 *dst, void *unused, i64 g0, i64 g1, i64 nb)
Rows [r0, r1) may start or end inside a group: the group is computed and only its rows stored.
A matvec reads its groups as STREAMS runs side by side (stream_groups), each group's blocks still
in order, so the bits do not depend on it.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from ..cpu import CpuInfo
from .emit import Fn, ModuleText, const_vec, mask, vec
from .matvec import prefetch, stream_bounds
from .tiles import P_NTOK, P_XQ, P_XSTRIDE, P_YSTRIDE

V8F, V8I, V32B, V16W = vec(8, "float"), vec(8, "i32"), vec(32, "i8"), vec(16, "i16")
GROUP_BYTES = {"Q4_0": 144, "Q8_0": 272}     # one 32-block of 8 rows
SRC_BYTES = {"Q4_0": 18, "Q8_0": 34}         # one 32-block of one row in the file
LANES = {"Q4_0": 1, "Q8_0": 8}              # float accumulators per row (see the docstring)
XB = 34                             # activation block (Q8_0): f16 d, i8 q[32]
XAUX = 8                            # after the blocks, per block: f32 d, i32 sum(q)  (quantize.py)
TOKENS = {"Q4_0": 4, "Q8_0": 1}     # batch: tokens sharing each unpacked block (Q8_0: 8 accumulators a token)

# A matvec call reads its groups of rows as STREAMS runs side by side, one block of each in turn:
# the hardware prefetcher follows each run, and a core keeps more lines in flight for several
# streams than for one. Zen 3, 151 MB matrices, interleaved runs (GB/s, Q4_K / Q4_0 / Q8_0 x8):
#   2 threads, read passes 34.7:  one prefetched stream 29.9 / 32.5 / 29.4;  4 streams 35.4 / 35.4 / 35.3
#   1 thread,  read passes 25.8:  16.8 / 19.5 / 18.0;  22.4 / 24.9 / 22.7
# Software prefetch on top of several streams made them slower, so they have none.
# LECTERN_MV_STREAMS=1: the one prefetched stream.
STREAMS = max(1, int(os.environ.get("LECTERN_MV_STREAMS", "4")))


def _payload(qs: np.ndarray, name: str) -> np.ndarray:
    """One row-block's quant bytes [..., 8 rows, 16 | 32] -> the group's payload [..., 128 | 256]."""
    if name == "Q8_0":
        q = qs.reshape(*qs.shape[:-1], 8, 4)                               # [.., 8 rows, j, m]
    else:
        q = np.concatenate([qs & 15, qs >> 4], axis=-1)                    # [.., 8 rows, 32] weights
        q = q.reshape(*q.shape[:-1], 4, 2, 4)                              # [.., j, h, m]: 8j + 4h + m
        q = q[..., 0, :] | (q[..., 1, :] << 4)                             # [.., 8 rows, 4 j, 4 m]
    q = np.swapaxes(q, -3, -2)                                             # [.., j, 8 rows, m]
    return q.reshape(*q.shape[:-3], -1)


def repack(data: np.ndarray, rows: int, n_cols: int, name: str = "Q4_0", chunk_rows: int = 4096) -> np.ndarray:
    """GGUF bytes of a Q4_0 / Q8_0 matrix -> the layout above (a new array, same size): the numpy
    twin of the repack_<type>x8 kernels (the engine's, jit/repack.py; this runs at ~0.3 GB/s)."""
    if rows % 8:
        raise ValueError(f"{name}x8 needs a multiple of 8 rows, not {rows}")
    nb, sb, gb = n_cols // 32, SRC_BYTES[name], GROUP_BYTES[name]
    src = np.ascontiguousarray(data).view(np.uint8).reshape(rows, nb, sb)
    out = np.empty((rows // 8, nb, gb), np.uint8)
    for r0 in range(0, rows, chunk_rows):
        blk = src[r0:r0 + chunk_rows]
        g = blk.reshape(-1, 8, nb, sb).transpose(0, 2, 1, 3)              # [G, nb, 8 rows, sb]
        o = out[r0 // 8:(r0 + blk.shape[0]) // 8]
        o[..., :16] = g[..., :2].reshape(g.shape[0], nb, 16)
        o[..., 16:] = _payload(g[..., 2:], name)
    return out.reshape(-1)


def unpack(packed: np.ndarray, rows: int, n_cols: int, name: str = "Q4_0") -> np.ndarray:
    """The inverse of repack (GGUF bytes): for tests and for reading the weights back."""
    nb, gb = n_cols // 32, GROUP_BYTES[name]
    p = packed.reshape(rows // 8, nb, gb)
    d = p[..., :16].reshape(-1, nb, 8, 2)
    nj = 8 if name == "Q8_0" else 4
    b = p[..., 16:].reshape(-1, nb, nj, 8, 4).transpose(0, 1, 3, 2, 4)     # [G, nb, 8 rows, j, m]
    if name == "Q8_0":
        qs = b.reshape(-1, nb, 8, 32)
    else:
        q = np.stack([b & 15, b >> 4], axis=-2).reshape(-1, nb, 8, 32)    # weight 8j + 4h + m
        qs = (q[..., :16] | (q[..., 16:] << 4)).astype(np.uint8)
    out = np.concatenate([d, qs], axis=-1).transpose(0, 2, 1, 3)            # [G, 8, nb, sb]
    return np.ascontiguousarray(out).reshape(-1)


# ----------------------------------------------------------------------------- IR

def shift16(fn: Fn, v: str, by: int) -> str:
    """<32 x i8> v shifted as 16-bit words, left by `by` (right when negative)."""
    if by == 0:
        return v
    w = fn.v(f"bitcast {V32B} {v} to {V16W}")
    w = fn.v(f"shl {V16W} {w}, splat (i16 {by})") if by > 0 else fn.v(f"lshr {V16W} {w}, splat (i16 {-by})")
    return fn.v(f"bitcast {V16W} {w} to {V32B}")


def nibbles(fn: Fn, v: str) -> tuple[str, str]:
    """<32 x i8> v -> (low nibbles, high nibbles), each byte 0..15."""
    return fn.v(f"and {V32B} {v}, splat (i8 15)"), fn.v(f"and {V32B} {shift16(fn, v, -4)}, splat (i8 15)")


def bcast4(fn: Fn, ptr: str) -> str:
    """The 4 bytes at ptr in every lane of a <32 x i8>."""
    return fn.v(f"bitcast {V8I} {fn.splat(8, 'i32', fn.load('i32', ptr))} to {V32B}")


def _weights(fn: Fn, wb: str, name: str) -> list[str]:
    """The block's 8 weight vectors (<32 x i8>, unsigned as stored): vector k, lane r = row r."""
    if name == "Q8_0":
        return [fn.load(V32B, fn.gep(wb, str(16 + 32 * k))) for k in range(8)]
    return [q for j in range(4) for q in nibbles(fn, fn.load(V32B, fn.gep(wb, str(16 + 32 * j))))]


def _lanes(fn: Fn, ws: list[str], xb: str, aux: str, name: str) -> list[str]:
    """One block's exact integer sums, each <8 x i32> over the 8 rows: Q4_0 one sum,
    sum_i q[r][i] x[i] - 8 s_b; Q8_0 llama.cpp's 8 lanes, lane k = sum_{m<4} q[r][4k+m] x[4k+m]."""
    xs = [bcast4(fn, fn.gep(xb, str(2 + 4 * k))) for k in range(8)]
    if name == "Q8_0":            # |q| x sign(x, q): vpmaddubsw pairs stay below 2^15 (no -128 in x)
        return [fn.dot_s8s8("zeroinitializer", q, x) for q, x in zip(ws, xs)]
    if fn.cpu.dot_path == "avx2":
        # int16 pair sums of 8 vectors: |sum| <= 8 * 2 * 15 * 128 < 2^15, no saturation
        s = None
        for q, x in zip(ws, xs):
            m = fn.call(V16W, "llvm.x86.avx2.pmadd.ub.sw", [f"{V32B} {q}", f"{V32B} {x}"], f"{V32B}, {V32B}")
            s = m if s is None else fn.v(f"add {V16W} {s}, {m}")
        lanes = fn.call(V8I, "llvm.x86.avx2.pmadd.wd", [f"{V16W} {s}", f"{V16W} splat (i16 1)"], f"{V16W}, {V16W}")
    else:           # vpdpbusd or portable: two chains
        a = fn.dot_u8s8("zeroinitializer", ws[0], xs[0])
        b = fn.dot_u8s8("zeroinitializer", ws[1], xs[1])
        for k in range(2, 8, 2):
            a = fn.dot_u8s8(a, ws[k], xs[k])
            b = fn.dot_u8s8(b, ws[k + 1], xs[k + 1])
        lanes = fn.v(f"add {V8I} {a}, {b}")
    s8 = fn.v(f"shl i32 {fn.load('i32', fn.gep(aux, '4'), 4)}, 3")
    return [fn.v(f"sub {V8I} {lanes}, {fn.splat(8, 'i32', s8)}")]


def _finish(fn: Fn, accs: list[str]) -> str:
    """Each row's total: its one accumulator, or llama.cpp's hsum_float_8 over the 8 lanes,
    ((a4 + a0) + (a6 + a2)) + ((a5 + a1) + (a7 + a3)), done for 8 rows at once."""
    if len(accs) == 1:
        return accs[0]
    add = lambda a, b: fn.v(f"fadd {V8F} {a}, {b}")      # noqa: E731
    t = [add(accs[4 + i], accs[i]) for i in range(4)]
    return add(add(t[0], t[2]), add(t[1], t[3]))


def _scales(fn: Fn, wb: str) -> str:
    """d_w of the group's 8 rows as <8 x float>."""
    return fn.half_to_float(fn.load(vec(8, "i16"), wb, 2), 8)


def _fma(fn: Fn, a: str, b: str, c: str) -> str:
    if fn.cpu.has_fma:
        return fn.fma_v(8, a, b, c)
    return fn.v(f"fadd {V8F} {fn.v(f'fmul {V8F} {a}, {b}')}, {c}")        # no FMA: two roundings


def _step(fn: Fn, lanes: list[str], dw: str, aux: str, accs: list[str]) -> list[str]:
    """acc_k + float(lanes_k) * f32(d_w * d_x), per row."""
    s = fn.v(f"fmul {V8F} {dw}, {fn.splat(8, 'float', fn.load('float', aux, 4))}")
    return [_fma(fn, fn.v(f"sitofp {V8I} {v} to {V8F}"), s, acc) for v, acc in zip(lanes, accs)]


def _store_rows(fn: Fn, acc: str, y: str, g: str) -> None:
    """y[8g + i] = acc[i] for the rows of the group inside [r0, r1)."""
    fn.declare("declare void @llvm.masked.store.v8f32.p0(<8 x float>, ptr, i32, <8 x i1>)")
    base = fn.v(f"shl i64 {g}, 3")
    rows = fn.v(f"add {vec(8, 'i64')} {fn.splat(8, 'i64', base)}, {const_vec('i64', range(8))}")
    lo = fn.v(f"icmp sge {vec(8, 'i64')} {rows}, {fn.splat(8, 'i64', '%r0')}")
    hi = fn.v(f"icmp slt {vec(8, 'i64')} {rows}, {fn.splat(8, 'i64', '%r1')}")
    m = fn.v(f"and <8 x i1> {lo}, {hi}")
    fn.do(f"call void @llvm.masked.store.v8f32.p0({V8F} {acc}, ptr {fn.gep(y, fn.v(f'shl i64 {base}, 2'))}, "
          f"i32 4, <8 x i1> {m})")


def groups(fn: Fn, block: int, group_bytes: int) -> tuple[str, str, str, str]:
    """(nb, bytes per group row of blocks, first group, end group) for rows [r0, r1) of %n
    columns, in blocks of `block` values taking group_bytes for 8 rows."""
    nb = fn.v(f"sdiv i64 %n, {block}")
    g0 = fn.v("ashr i64 %r0, 3")
    g1 = fn.v(f"ashr i64 {fn.v('add i64 %r1, 7')}, 3")
    return nb, fn.v(f"mul i64 {nb}, {group_bytes}"), g0, g1


def token_groups(fn: Fn, ntok: str, tokens: int):
    """Inside a kernel's loop: the batch's tokens `tokens` at a time, then the rest one by one;
    yields each group's token indices (i64 values), the caller's code running inside the loop."""
    n_full = fn.v(f"sdiv i64 {ntok}, {tokens}")
    t_rest = fn.v(f"mul i64 {n_full}, {tokens}")
    spans = [(tokens, "0", n_full)] + ([(1, t_rest, fn.v(f"sub i64 {ntok}, {t_rest}"))] if tokens > 1 else [])
    for size, first, count in spans:
        with fn.loop("0", count, stem="tg") as K:
            t0 = fn.v(f"add i64 {first}, {fn.v(f'mul i64 {K.i}, {size}')}")
            yield [fn.v(f"add i64 {t0}, {k}") for k in range(size)]


def symbols(name: str) -> tuple[str, str, str]:
    return f"matvec_{name.lower()}x8", f"mm_{name.lower()}x8", f"repack_{name.lower()}x8"


def stream_groups(fn: Fn, g0: str, g1: str, gbytes: str, body) -> None:
    """A matvec's groups [g0, g1) (gbytes each) as STREAMS equal runs read side by side:
    body(gs, xs) with one group of each run (gs) and as many names for %xq (xs, own_names), then
    body([g], [%xq]) for each group left over. With STREAMS == 1, one run, prefetched."""
    if STREAMS == 1:
        stream_bounds(fn, fn.gep("%w", fn.v(f"mul i64 {g0}, {gbytes}")), fn.gep("%w", fn.v(f"mul i64 {g1}, {gbytes}")))
    part = fn.v(f"sdiv i64 {fn.v(f'sub i64 {g1}, {g0}')}, {STREAMS}")
    starts = [g0] + [fn.v(f"add i64 {g0}, {fn.v(f'mul i64 {part}, {k}')}") for k in range(1, STREAMS)]
    xs = own_names(fn, "%xq", STREAMS)
    with fn.loop("0", part, stem="gs") as G:
        body([fn.v(f"add i64 {s}, {G.i}") for s in starts], xs)
    with fn.loop(fn.v(f"add i64 {g0}, {fn.v(f'mul i64 {part}, {STREAMS}')}"), g1, stem="g") as G:
        body([G.i], xs[:1])


def own_names(fn: Fn, ptr: str, n: int) -> list[str]:
    """ptr and n - 1 copies LLVM cannot prove equal to it (each through an empty inline asm): each
    stream loads its own activation broadcasts; shared, they would live across every stream's
    work and spill (Q4_K x8, 2 streams: 20 GB/s in L2 against 35)."""
    return [ptr] + [fn.v(f'call ptr asm "", "=r,0"(ptr {ptr})') for _ in range(n - 1)]


def _matvec(mt: ModuleText, name: str) -> None:
    fn = mt.function(f"define void @{symbols(name)[0]}(ptr noalias %w, ptr noalias %xq, ptr noalias %y, i64 %r0, "
                     "i64 %r1, i64 %n) nounwind")
    gb = GROUP_BYTES[name]
    nb, gbytes, g0, g1 = groups(fn, 32, gb)

    def body(gs: list[str], xs: list[str]) -> None:
        wgs = [fn.gep("%w", fn.v(f"mul i64 {g}, {gbytes}")) for g in gs]
        auxbs = [fn.gep(x, fn.v(f"mul i64 {nb}, {XB}")) for x in xs]     # each name's per-block aux
        with fn.loop("0", nb, stem="b") as B:
            accs = [[B.carry(V8F, "zeroinitializer") for _ in range(LANES[name])] for _ in gs]
            for wg, x, auxb, acc in zip(wgs, xs, auxbs, accs):
                wb = fn.gep(wg, fn.v(f"mul i64 {B.i}, {gb}"))
                if STREAMS == 1:
                    prefetch(fn, wb, gb)
                aux = fn.gep(auxb, fn.v(f"mul i64 {B.i}, {XAUX}"))
                lanes = _lanes(fn, _weights(fn, wb, name), fn.gep(x, fn.v(f"mul i64 {B.i}, {XB}")), aux, name)
                for a, new in zip(acc, _step(fn, lanes, _scales(fn, wb), aux, acc)):
                    B.set(a, new)
        for g, acc in zip(gs, accs):
            _store_rows(fn, _finish(fn, acc), "%y", g)
    stream_groups(fn, g0, g1, gbytes, body)
    fn.do("ret void")
    mt.add(fn)


def _mm(mt: ModuleText, name: str, tokens: int) -> None:
    """For each group: tokens in groups of `tokens` (then one by one), each block unpacked once
    for the tokens of a group; the per-(row, token) sequence is the matvec's."""
    fn = mt.function(f"define void @{symbols(name)[1]}(ptr noalias %w, ptr noalias %p, ptr noalias %y, i64 %r0, "
                     "i64 %r1, i64 %n) nounwind")
    gb = GROUP_BYTES[name]
    xq = fn.load("ptr", fn.gep("%p", str(8 * P_XQ)), 8)
    ntok, xs, ys = (fn.load("i64", fn.gep("%p", str(8 * k)), 8) for k in (P_NTOK, P_XSTRIDE, P_YSTRIDE))
    nb, gbytes, g0, g1 = groups(fn, 32, gb)
    auxoff = fn.v(f"mul i64 {nb}, {XB}")
    with fn.loop(g0, g1, stem="g") as G:
        wg = fn.gep("%w", fn.v(f"mul i64 {G.i}, {gbytes}"))
        for ts in token_groups(fn, ntok, tokens):
            xts = [fn.gep(xq, fn.v(f"mul i64 {t}, {xs}")) for t in ts]
            with fn.loop("0", nb, stem="b") as B:
                accs = [[B.carry(V8F, "zeroinitializer") for _ in range(LANES[name])] for _ in ts]
                wb = fn.gep(wg, fn.v(f"mul i64 {B.i}, {gb}"))
                ws, dw = _weights(fn, wb, name), _scales(fn, wb)
                xoff = fn.v(f"mul i64 {B.i}, {XB}")
                aoff = fn.v(f"add i64 {auxoff}, {fn.v(f'mul i64 {B.i}, {XAUX}')}")
                for k, xt in enumerate(xts):
                    aux = fn.gep(xt, aoff)
                    lanes = _lanes(fn, ws, fn.gep(xt, xoff), aux, name)
                    for acc, new in zip(accs[k], _step(fn, lanes, dw, aux, accs[k])):
                        B.set(acc, new)
            for t, acc in zip(ts, accs):
                _store_rows(fn, _finish(fn, acc), fn.gep("%y", fn.v(f"mul i64 {t}, {ys}")), G.i)
    fn.do("ret void")
    mt.add(fn)


def _repack_fn(mt: ModuleText, name: str) -> None:
    """repack_<type>x8(src, dst, unused, g0, g1, nb): groups [g0, g1) of the file's rows into the
    layout above, as repack() does (its numpy twin), at memory speed: a model's weights are
    repacked when first used, so this is time to the first token."""
    fn = mt.function(f"define void @{symbols(name)[2]}(ptr noalias %src, ptr noalias %dst, ptr %unused, i64 %g0, "
                     "i64 %g1, i64 %nb) nounwind")

    def row_block(fn: Fn, sblk: str, db: str, r: int) -> None:
        fn.store("i16", fn.load("i16", sblk), fn.gep(db, str(2 * r)))
        for j, wd in enumerate(_payload_words(fn, fn.gep(sblk, "2"), name)):
            fn.store("i32", wd, fn.gep(db, str(16 + 32 * j + 4 * r)))
    repack_loops(fn, SRC_BYTES[name], GROUP_BYTES[name], row_block)
    fn.do("ret void")
    mt.add(fn)


def repack_loops(fn: Fn, sb: int, gb: int, row_block) -> None:
    """The loops of a repack_<type>x8(src, dst, unused, g0, g1, nb) kernel: for each group of 8 rows
    in [g0, g1) and each of its nb blocks, row_block(fn, that row's block in the file, the group's
    block here, r) for r < 8 (blocks of sb bytes in the file, gb = 8 sb here)."""
    row = fn.v(f"mul i64 %nb, {sb}")
    with fn.loop("%g0", "%g1", stem="g") as G:
        sg = fn.gep("%src", fn.v(f"mul i64 {G.i}, {fn.v(f'shl i64 {row}, 3')}"))
        dg = fn.gep("%dst", fn.v(f"mul i64 {G.i}, {fn.v(f'mul i64 %nb, {gb}')}"))
        with fn.loop("0", "%nb", stem="b") as B:
            db = fn.gep(dg, fn.v(f"mul i64 {B.i}, {gb}"))
            for r in range(8):
                row_block(fn, fn.gep(fn.gep(sg, fn.v(f"mul i64 {row}, {r}")), fn.v(f"mul i64 {B.i}, {sb}")), db, r)


def _payload_words(fn: Fn, qs: str, name: str) -> list[str]:
    """One row's block quants -> its 4-byte word for each load j of the group (see Layout)."""
    if name == "Q8_0":
        return [fn.load("i32", fn.gep(qs, str(4 * j))) for j in range(8)]
    v16 = vec(16, "i8")
    q = fn.load(v16, qs)
    lo4 = fn.v(f"and {v16} {q}, splat (i8 15)")                 # weights 0..15
    hi4 = fn.v(f"lshr {v16} {q}, splat (i8 4)")                 # weights 16..31
    # byte (j, m) = w[8j + m] | w[8j + 4 + m] << 4, w = lo4 ++ hi4
    first = [i for j in range(4) for i in range(8 * j, 8 * j + 4)]
    a = fn.v(f"shufflevector {v16} {lo4}, {v16} {hi4}, {mask(first)}")
    b = fn.v(f"shufflevector {v16} {lo4}, {v16} {hi4}, {mask([i + 4 for i in first])}")
    out = fn.v(f"or {v16} {a}, {fn.v(f'shl {v16} {b}, splat (i8 4)')}")
    w4 = fn.v(f"bitcast {v16} {out} to {vec(4, 'i32')}")
    return [fn.v(f"extractelement {vec(4, 'i32')} {w4}, i64 {j}") for j in range(4)]


@functools.cache
def module_ir(name: str, cpu: CpuInfo) -> str:
    """matvec_<type>x8, mm_<type>x8 and repack_<type>x8 in one module."""
    mt = ModuleText(cpu)
    _matvec(mt, name)
    _mm(mt, name, TOKENS[name])
    _repack_fn(mt, name)
    return mt.text()
