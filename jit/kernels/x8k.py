"""Q4_K and Q5_K weights repacked 8 rows at a time (llama.cpp's block_q4_Kx8 idea, our own byte order): one
32-byte vector op works on 8 rows, each row's integer sums landing in its own 32-bit lane, so a
superblock's scales, mins and sums are handled once for 8 rows and no row needs a horizontal
sum. In the file's layout a Q4_K superblock costs ~69 vector µops per row (the matvec bound by
arithmetic at ~16 GB/s per Zen 3 core); here ~36.

Layout (bytes), for each group g of 8 rows and superblock b, at (g * nb + b) * 1152, a word
transpose of the 8 rows' 144-byte superblocks (the same bytes, moved):
  d[8]        f16 d of rows 8g .. 8g+7                                                16 B
  dmin[8]     f16 dmin                                                                16 B
  sm[3][8]    u32: word w of row r's 12 packed 6-bit scales/mins (file bytes 4+4w..)  96 B
  Q5_K only:
  qh[8][8]    u32: vector k, lane r = row r's qh bytes 4k .. 4k+3 (bit j: 5th bit of sub-block j)  256 B
  qs[32][8]   u32: vector v = 8c + k, lane r = row r's qs bytes 32c + 4k .. 32c + 4k + 3  1024 B
so in vector (c, k) the low nibbles are elements 4k .. 4k+3 of sub-block 2c of each row, the high
nibbles those of sub-block 2c + 1 (Q5_K: with bits 2c, 2c + 1 of qh vector k on top), and the
activation's 4 bytes there, broadcast to every lane, complete 8 rows' dots at once.

Per row (lane), per superblock, the exact integers and floats of kquants.py's Q4_K modes:
  S_j = sc_j * (q_j . x_j)   vpmaddubsw over the 8 vectors of sub-block j (16 products per i16
                             word, <= 16 * 15 * 128 < 2^15; Q5_K: two sums of 4, 8 * 31 * 128),
                             then vpmaddwd with sc_j in both words
  M_j = m_j * (bsums[2j] + bsums[2j+1])        vpmaddwd with bsums' dword j broadcast
  gemv  acc = fma(f32(sum_j S_j), d dx, acc);  accm = fma(f32(sum_j M_j), dmin dx, accm)
  gemm  for p < 4: the same with S_2p + S_2p+1 and M_2p + M_2p+1 (Q4_K batches, tokens in fours)
  y = acc - accm
so the bits are those of the file layout's kernels (and llama.cpp's q4_K_8x8 gemv / gemm).

    void matvec_<t>x8(const u8 *w, const void *xq, float *y, i64 r0, i64 r1, i64 n)   Q8_K x
    void mm_<t>x8_<mode>(const u8 *w, const i64 *p, float *y, i64 r0, i64 r1, i64 n)  Q8_K_il x
    void repack_<t>x8(const u8 *src, u8 *dst, void *unused, i64 g0, i64 g1, i64 nb)
(t = q4_k, q5_k; a Q5_K batch has one order, gemv)
"""
from __future__ import annotations

import functools

import numpy as np

from .. import tables
from ..cpu import CpuInfo
from .emit import Fn, ModuleText, mask, vec
from .kquants import _madd_i16, maddubs
from .tiles import P_NTOK, P_XQ, P_XSTRIDE, P_YSTRIDE
from .matvec import prefetch
from .x8 import STREAMS, _fma, _store_rows, bcast4, groups, nibbles, repack_loops, shift16, stream_groups, token_groups

V8F, V8I, V32B, V16W = vec(8, "float"), vec(8, "i32"), vec(32, "i8"), vec(16, "i16")
SRC_BYTES = {"Q4_K": 144, "Q5_K": 176}         # one superblock of one row in the file
X_BYTES = 292                       # Q8_K: f32 d, i8 qs[256], i16 bsums[16]
# (file offset, word bytes, words, offset here) of each field: row r's word i goes to
# here + (i * 8 + r) * word bytes
FIELDS = {"Q4_K": ((0, 2, 1, 0), (2, 2, 1, 16), (4, 4, 3, 32), (16, 4, 32, 128)),
          "Q5_K": ((0, 2, 1, 0), (2, 2, 1, 16), (4, 4, 3, 32), (16, 4, 8, 128), (48, 4, 32, 384))}
QS_AT = {"Q4_K": 128, "Q5_K": 384}
TOKENS = 4                          # batch: tokens sharing each unpacked vector
MODES = {"Q4_K": ("gemm", "gemv"), "Q5_K": ("gemv",)}      # kquants.batch_modes' orders


def symbols(name: str) -> tuple[str, ...]:
    t = name.lower()
    return (f"matvec_{t}x8", *(f"mm_{t}x8_{m}" for m in MODES[name]), f"repack_{t}x8")


def repack(data: np.ndarray, rows: int, n_cols: int, name: str = "Q4_K") -> np.ndarray:
    """GGUF bytes of a Q4_K / Q5_K matrix -> the layout above: the numpy twin of repack_<t>x8."""
    if rows % 8 or n_cols % 256:
        raise ValueError(f"{name}x8 needs a multiple of 8 rows and of 256 columns, not {rows} x {n_cols}")
    nb, sb = n_cols // 256, SRC_BYTES[name]
    g = np.ascontiguousarray(data).view(np.uint8).reshape(rows // 8, 8, nb, sb).transpose(0, 2, 1, 3)
    out = np.empty((rows // 8, nb, 8 * sb), np.uint8)
    for src, size, n, dst in FIELDS[name]:
        words = g[..., src:src + size * n].reshape(rows // 8, nb, 8, n, size)
        out[..., dst:dst + 8 * n * size] = words.transpose(0, 1, 3, 2, 4).reshape(rows // 8, nb, -1)
    return out.reshape(-1)


def unpack(packed: np.ndarray, rows: int, n_cols: int, name: str = "Q4_K") -> np.ndarray:
    """The inverse of repack (GGUF bytes)."""
    nb, sb = n_cols // 256, SRC_BYTES[name]
    p = np.ascontiguousarray(packed).view(np.uint8).reshape(rows // 8, nb, 8 * sb)
    out = np.empty((rows // 8, nb, 8, sb), np.uint8)
    for src, size, n, dst in FIELDS[name]:
        words = p[..., dst:dst + 8 * n * size].reshape(rows // 8, nb, n, 8, size)
        out[..., src:src + size * n] = words.transpose(0, 1, 3, 2, 4).reshape(rows // 8, nb, 8, -1)
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3)).reshape(-1)


# ----------------------------------------------------------------------------- IR

def _x_at(element: int, il: bool) -> int:
    """Byte offset in a Q8_K (il: Q8_K_il, quantize.py IL_ORDER) block of element 32j + 4k."""
    j, k = divmod(element, 32)
    return 4 + (32 * (k // 4) + 4 * j if il else element)


def _word_splat(fn: Fn, u: str, j: int) -> str:
    """<8 x i32> u (4 bytes a lane) -> <16 x i16> with lane r's byte j (< 4) in both of its words
    (one vpshufb on AVX2, its mask read from jit/tables.py)."""
    b = fn.v(f"bitcast {V8I} {u} to {V32B}")
    if not fn.cpu.has_avx2:
        picks = mask([i for r in range(8) for i in (4 * r + j, 32, 4 * r + j, 32)])
        return fn.v(f"bitcast {V32B} {fn.v(f'shufflevector {V32B} {b}, {V32B} zeroinitializer, {picks}')} to {V16W}")
    fn.declare(f"@{tables.DWORD_WORD_SPLATS} = external global [128 x i8]")
    idx = fn.load(V32B, fn.v(f"getelementptr i8, ptr @{tables.DWORD_WORD_SPLATS}, i64 {32 * j}"))
    s = fn.call(V32B, "llvm.x86.avx2.pshuf.b", [f"{V32B} {b}", f"{V32B} {idx}"], f"{V32B}, {V32B}")
    return fn.v(f"bitcast {V32B} {s} to {V16W}")


def _scales(fn: Fn, wb: str) -> list[str]:
    """-> [u0, u1, u2, u3], <8 x i32> whose lane r holds row r's 6-bit sc_0..3, sc_4..7, m_0..3,
    m_4..7 as bytes (llama.cpp's get_scale_min_k4 on the 8 rows' words w0, w1, w2 at once)."""
    w0, w1, w2 = (fn.load(V8I, fn.gep(wb, str(32 + 32 * i))) for i in range(3))

    def bits(a: str, b: str, shift_a: int) -> str:      # ((a >> shift_a) & 0x0F..) | ((b >> 6) & 3) << 4
        lo = fn.v(f"lshr {V8I} {a}, splat (i32 {shift_a})") if shift_a else a
        lo = fn.v(f"and {V8I} {lo}, splat (i32 {0x0F0F0F0F})")
        hi = fn.v(f"and {V8I} {fn.v(f'lshr {V8I} {b}, splat (i32 2)')}, splat (i32 {0x30303030})")
        return fn.v(f"or {V8I} {lo}, {hi}")
    u0 = fn.v(f"and {V8I} {w0}, splat (i32 {0x3F3F3F3F})")          # sc 0..3
    u2 = fn.v(f"and {V8I} {w1}, splat (i32 {0x3F3F3F3F})")          # m 0..3
    return [u0, bits(w2, w0, 0), u2, bits(w2, w1, 4)]               # sc 4..7, m 4..7 from w2


def _sc(fn: Fn, u: list[str], j: int) -> str:
    return _word_splat(fn, u[j // 4], j % 4)


def _mn(fn: Fn, u: list[str], j: int) -> str:
    return _word_splat(fn, u[2 + j // 4], j % 4)


def _nibbles(fn: Fn, wb: str, c: int, k: int, name: str, qh: str | None) -> tuple[str, str]:
    """Vector (c, k) -> the weight integers of sub-blocks 2c and 2c + 1, elements 4k .. 4k+3 of each
    row: (low, high) nibbles, Q5_K with bits 2c, 2c + 1 of qh (vector k) moved to bit 4."""
    lo, hi = nibbles(fn, fn.load(V32B, fn.gep(wb, str(QS_AT[name] + 32 * (8 * c + k)))))
    if qh is None:
        return lo, hi
    # bit b of each byte to bit 4: a 16-bit shift by 4 - b stays inside the byte for b <= 7, 4 - b >= -3
    return tuple(fn.v(f"or {V32B} {q}, {fn.v(f'and {V32B} {shift16(fn, qh, 4 - (2 * c + h))}, splat (i8 16)')}")
                 for h, q in enumerate((lo, hi)))


I16_RUN = {"Q4_K": 8, "Q5_K": 4}    # vpmaddubsw results summed in i16: 2 * run * (15 | 31) * 128 < 2^15


def _pair_ints(fn: Fn, wb: str, xbs: list[str], u: list[str], c: int, name: str, il: bool) -> list[tuple[str, str]]:
    """Sub-blocks 2c, 2c + 1 for each token (activation blocks xbs): [(S_2c + S_2c+1, M_2c + M_2c+1)],
    each <8 x i32> over the 8 rows; each weight vector is unpacked once for every token."""
    scs, mns = [_sc(fn, u, 2 * c + h) for h in range(2)], [_mn(fn, u, 2 * c + h) for h in range(2)]
    run = I16_RUN[name]
    S = [[None, None] for _ in xbs]
    for k0 in range(0, 8, run):
        P = [[None, None] for _ in xbs]
        for k in range(k0, k0 + run):
            qh = fn.load(V32B, fn.gep(wb, str(128 + 32 * k))) if name == "Q5_K" else None
            halves = _nibbles(fn, wb, c, k, name, qh)
            for t, xb in enumerate(xbs):
                for h, q in enumerate(halves):
                    m = maddubs(fn, q, bcast4(fn, fn.gep(xb, str(_x_at(32 * (2 * c + h) + 4 * k, il)))))
                    P[t][h] = m if P[t][h] is None else fn.v(f"add {V16W} {P[t][h]}, {m}")
        for t in range(len(xbs)):
            for h in range(2):
                part = _madd_i16(fn, P[t][h], scs[h])
                S[t][h] = part if S[t][h] is None else fn.v(f"add {V8I} {S[t][h]}, {part}")
    out = []
    for t, xb in enumerate(xbs):
        # bsums[2j], bsums[2j+1] of sub-block j = 2c + h in every lane
        bs = [fn.v(f"bitcast {V32B} {bcast4(fn, fn.gep(xb, str(260 + 4 * (2 * c + h))))} to {V16W}") for h in range(2)]
        m = [_madd_i16(fn, mns[h], bs[h]) for h in range(2)]
        out.append((fn.v(f"add {V8I} {S[t][0]}, {S[t][1]}"), fn.v(f"add {V8I} {m[0]}, {m[1]}")))
    return out


def _superblock(fn: Fn, wb: str, xbs: list[str], accs: list, mode: str, name: str, il: bool) -> list:
    """One superblock of the group's 8 rows for each token: the tokens' (acc, accm) after the mode's
    fmas (gemm: one pair of sub-blocks at a time; gemv: once, on the superblock's sums)."""
    u = _scales(fn, wb)
    d, dmin = (fn.half_to_float(fn.load(vec(8, "i16"), fn.gep(wb, str(off)), 2), 8) for off in (0, 16))
    dds = []
    for xb in xbs:
        dx = fn.splat(8, "float", fn.load("float", xb, 4))
        dds.append((fn.v(f"fmul {V8F} {d}, {dx}"), fn.v(f"fmul {V8F} {dmin}, {dx}")))
    accs, sums = list(accs), [None] * len(xbs)
    for c in range(4):
        for t, (s, m) in enumerate(_pair_ints(fn, wb, xbs, u, c, name, il)):
            if mode == "gemm":
                accs[t] = _fmas(fn, s, m, dds[t], accs[t])
            else:
                old = sums[t]
                sums[t] = (s, m) if old is None else \
                    (fn.v(f"add {V8I} {old[0]}, {s}"), fn.v(f"add {V8I} {old[1]}, {m}"))
    if mode == "gemv":
        accs = [_fmas(fn, *sums[t], dds[t], accs[t]) for t in range(len(xbs))]
    return accs


def _fmas(fn: Fn, s: str, m: str, dd: tuple[str, str], acc: tuple[str, str]) -> tuple[str, str]:
    """(fma(f32(s), d dx, acc), fma(f32(m), dmin dx, accm))"""
    return (_fma(fn, fn.v(f"sitofp {V8I} {s} to {V8F}"), dd[0], acc[0]),
            _fma(fn, fn.v(f"sitofp {V8I} {m} to {V8F}"), dd[1], acc[1]))


def _rows(fn: Fn, runs: list[tuple[str, list[str]]], nb: str, mode: str, name: str, il: bool,
          pf: bool = True) -> list[list[str]]:
    """Groups of 8 rows side by side, each run given as (its weights, its tokens' activations): one
    superblock of each in turn, each group's superblocks summed in order: <8 x float> per token of
    each group. pf: prefetch ahead in each group's weights (matvec.prefetch)."""
    gb = 8 * SRC_BYTES[name]
    with fn.loop("0", nb, stem="sb") as B:
        accs = [[(B.carry(V8F, "zeroinitializer"), B.carry(V8F, "zeroinitializer")) for _ in xts] for _, xts in runs]
        off = fn.v(f"mul i64 {B.i}, {X_BYTES}")
        for (wg, xts), acc in zip(runs, accs):
            wb = fn.gep(wg, fn.v(f"mul i64 {B.i}, {gb}"))
            if pf:
                prefetch(fn, wb, gb)
            for (a, am), (new, newm) in zip(acc, _superblock(fn, wb, [fn.gep(x, off) for x in xts], acc, mode, name, il)):
                B.set(a, new)
                B.set(am, newm)
    return [[fn.v(f"fsub {V8F} {a}, {am}") for a, am in acc] for acc in accs]


def _matvec(mt: ModuleText, name: str) -> None:
    fn = mt.function(f"define void @{symbols(name)[0]}(ptr noalias %w, ptr noalias %xq, ptr noalias %y, i64 %r0, "
                     "i64 %r1, i64 %n) nounwind")
    nb, gbytes, g0, g1 = groups(fn, 256, 8 * SRC_BYTES[name])

    def body(gs: list[str], xs: list[str]) -> None:
        ys = _rows(fn, [(fn.gep("%w", fn.v(f"mul i64 {g}, {gbytes}")), [x]) for g, x in zip(gs, xs)], nb, "gemv",
                   name, il=False, pf=STREAMS == 1)
        for g, (y,) in zip(gs, ys):
            _store_rows(fn, y, "%y", g)
    stream_groups(fn, g0, g1, gbytes, body)
    fn.do("ret void")
    mt.add(fn)


def _mm(mt: ModuleText, name: str, mode: str) -> None:
    """For each group: tokens TOKENS at a time (then one by one), each weight vector unpacked once
    for the tokens of a group; every (row, token) in `mode`'s order, whatever the grouping."""
    fn = mt.function(f"define void @mm_{name.lower()}x8_{mode}(ptr noalias %w, ptr noalias %p, ptr noalias %y, "
                     "i64 %r0, i64 %r1, i64 %n) nounwind")
    xq = fn.load("ptr", fn.gep("%p", str(8 * P_XQ)), 8)
    ntok, xs, ys = (fn.load("i64", fn.gep("%p", str(8 * k)), 8) for k in (P_NTOK, P_XSTRIDE, P_YSTRIDE))
    nb, gbytes, g0, g1 = groups(fn, 256, 8 * SRC_BYTES[name])
    with fn.loop(g0, g1, stem="g") as G:
        wg = fn.gep("%w", fn.v(f"mul i64 {G.i}, {gbytes}"))
        for ts in token_groups(fn, ntok, TOKENS):
            outs, = _rows(fn, [(wg, [fn.gep(xq, fn.v(f"mul i64 {t}, {xs}")) for t in ts])], nb, mode, name, il=True)
            for t, yv in zip(ts, outs):
                _store_rows(fn, yv, fn.gep("%y", fn.v(f"mul i64 {t}, {ys}")), G.i)
    fn.do("ret void")
    mt.add(fn)


def _repack_fn(mt: ModuleText, name: str) -> None:
    """repack_<t>x8(src, dst, unused, g0, g1, nb): groups [g0, g1) of the file's rows into the
    layout above, as repack() does (its numpy twin)."""
    fn = mt.function(f"define void @{symbols(name)[-1]}(ptr noalias %src, ptr noalias %dst, ptr %unused, i64 %g0, "
                     "i64 %g1, i64 %nb) nounwind")

    def row_block(fn: Fn, sblk: str, db: str, r: int) -> None:
        for src, size, n, dst in FIELDS[name]:
            ty = f"i{8 * size}"
            for i in range(n):
                fn.store(ty, fn.load(ty, fn.gep(sblk, str(src + size * i))), fn.gep(db, str(dst + (8 * i + r) * size)))
    repack_loops(fn, SRC_BYTES[name], 8 * SRC_BYTES[name], row_block)
    fn.do("ret void")
    mt.add(fn)


@functools.cache
def module_ir(name: str, cpu: CpuInfo) -> str:
    """matvec_<t>x8, mm_<t>x8_<mode> for each batch order and repack_<t>x8 in one module."""
    mt = ModuleText(cpu)
    _matvec(mt, name)
    for m in MODES[name]:
        _mm(mt, name, m)
    _repack_fn(mt, name)
    return mt.text()
