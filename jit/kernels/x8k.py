"""Q4_K weights repacked 8 rows at a time (llama.cpp's block_q4_Kx8 idea, our own byte order): one
32-byte vector op works on 8 rows, each row's integer sums landing in its own 32-bit lane, so a
superblock's scales, mins and sums are handled once for 8 rows and no row needs a horizontal
sum. In the file's layout a Q4_K superblock costs ~69 vector µops per row (the matvec bound by
arithmetic at ~16 GB/s per Zen 3 core); here ~36.

Layout (bytes), for each group g of 8 rows and superblock b, at (g * nb + b) * 1152, a word
transpose of the 8 rows' 144-byte superblocks (the same bytes, moved):
  d[8]        f16 d of rows 8g .. 8g+7                                                16 B
  dmin[8]     f16 dmin                                                                16 B
  sm[3][8]    u32: word w of row r's 12 packed 6-bit scales/mins (file bytes 4+4w..)  96 B
  qs[32][8]   u32: vector v = 8c + k, lane r = row r's qs bytes 32c + 4k .. 32c + 4k + 3  1024 B
so in vector (c, k) the low nibbles are elements 4k .. 4k+3 of sub-block 2c of each row, the high
nibbles those of sub-block 2c + 1, and the activation's 4 bytes there, broadcast to every lane,
complete 8 rows' dots at once.

Per row (lane), per superblock, the exact integers and floats of kquants.py's Q4_K modes:
  S_j = sc_j * (q_j . x_j)   vpmaddubsw over the 8 vectors of sub-block j (16 products per i16
                             word, <= 16 * 15 * 128 < 2^15), then vpmaddwd with sc_j in both words
  M_j = m_j * (bsums[2j] + bsums[2j+1])        vpmaddwd with bsums' dword j broadcast
  gemv  acc = fma(f32(sum_j S_j), d dx, acc);  accm = fma(f32(sum_j M_j), dmin dx, accm)
  gemm  for p < 4: the same with S_2p + S_2p+1 and M_2p + M_2p+1
  y = acc - accm
so the bits are those of the file layout's kernels (and llama.cpp's q4_K_8x8 gemv / gemm).

    void matvec_q4_kx8(const u8 *w, const void *xq, float *y, i64 r0, i64 r1, i64 n)   Q8_K x
    void mm_q4_kx8_<mode>(const u8 *w, const i64 *p, float *y, i64 r0, i64 r1, i64 n)  Q8_K_il x
    void repack_q4_kx8(const u8 *src, u8 *dst, void *unused, i64 g0, i64 g1, i64 nb)
"""
from __future__ import annotations

import functools

import numpy as np

from .. import tables
from ..cpu import CpuInfo
from .emit import Fn, ModuleText, mask, vec
from .kquants import _madd_i16, maddubs
from .tiles import P_NTOK, P_XQ, P_XSTRIDE, P_YSTRIDE
from .x8 import PREFETCH, _fma, _prefetch, _store_rows

V8F, V8I, V32B, V16W = vec(8, "float"), vec(8, "i32"), vec(32, "i8"), vec(16, "i16")
NAME = "Q4_K"
SRC_BYTES = 144                     # one superblock of one row in the file
GROUP_BYTES = 1152                  # one superblock of 8 rows here
X_BYTES = 292                       # Q8_K: f32 d, i8 qs[256], i16 bsums[16]
# (file offset, word bytes, words, offset here) of each field: row r's word i goes to
# here + (i * 8 + r) * word bytes
FIELDS = ((0, 2, 1, 0), (2, 2, 1, 16), (4, 4, 3, 32), (16, 4, 32, 128))
TOKENS = 4                          # batch: tokens sharing each unpacked vector
MODES = ("gemm", "gemv")


def symbols() -> tuple[str, ...]:
    return ("matvec_q4_kx8", *(f"mm_q4_kx8_{m}" for m in MODES), "repack_q4_kx8")


def repack(data: np.ndarray, rows: int, n_cols: int) -> np.ndarray:
    """GGUF bytes of a Q4_K matrix -> the layout above: the numpy twin of repack_q4_kx8."""
    if rows % 8 or n_cols % 256:
        raise ValueError(f"Q4_Kx8 needs a multiple of 8 rows and of 256 columns, not {rows} x {n_cols}")
    nb = n_cols // 256
    g = np.ascontiguousarray(data).view(np.uint8).reshape(rows // 8, 8, nb, SRC_BYTES).transpose(0, 2, 1, 3)
    out = np.empty((rows // 8, nb, GROUP_BYTES), np.uint8)
    for src, size, n, dst in FIELDS:
        words = g[..., src:src + size * n].reshape(rows // 8, nb, 8, n, size)
        out[..., dst:dst + 8 * n * size] = words.transpose(0, 1, 3, 2, 4).reshape(rows // 8, nb, -1)
    return out.reshape(-1)


def unpack(packed: np.ndarray, rows: int, n_cols: int) -> np.ndarray:
    """The inverse of repack (GGUF bytes)."""
    nb = n_cols // 256
    p = np.ascontiguousarray(packed).view(np.uint8).reshape(rows // 8, nb, GROUP_BYTES)
    out = np.empty((rows // 8, nb, 8, SRC_BYTES), np.uint8)
    for src, size, n, dst in FIELDS:
        words = p[..., dst:dst + 8 * n * size].reshape(rows // 8, nb, n, 8, size)
        out[..., src:src + size * n] = words.transpose(0, 1, 3, 2, 4).reshape(rows // 8, nb, 8, -1)
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3)).reshape(-1)


# ----------------------------------------------------------------------------- IR

def _x_at(element: int, il: bool) -> int:
    """Byte offset in a Q8_K (il: Q8_K_il, quantize.py IL_ORDER) block of element 32j + 4k."""
    j, k = divmod(element, 32)
    return 4 + (32 * (k // 4) + 4 * j if il else element)


def _bcast4(fn: Fn, ptr: str) -> str:
    """The 4 bytes at ptr in every lane of a <32 x i8>."""
    return fn.v(f"bitcast {V8I} {fn.splat(8, 'i32', fn.load('i32', ptr))} to {V32B}")


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


def _nibbles(fn: Fn, wb: str, c: int, k: int) -> tuple[str, str]:
    """Vector (c, k) -> (low, high) nibbles: sub-blocks 2c and 2c + 1, elements 4k .. 4k+3."""
    v = fn.load(V32B, fn.gep(wb, str(128 + 32 * (8 * c + k))))
    lo = fn.v(f"and {V32B} {v}, splat (i8 15)")
    sh = fn.v(f"lshr {V16W} {fn.v(f'bitcast {V32B} {v} to {V16W}')}, splat (i16 4)")
    return lo, fn.v(f"and {V32B} {fn.v(f'bitcast {V16W} {sh} to {V32B}')}, splat (i8 15)")


def _pair_ints(fn: Fn, wbs: list[str], xbs: list[str], scm: list, c: int, il: bool) -> list[list[tuple[str, str]]]:
    """Sub-blocks 2c, 2c + 1 of each group (superblocks wbs, scales scm) for each token (activation
    blocks xbs): [group][token] (S_2c + S_2c+1, M_2c + M_2c+1), each <8 x i32> over the 8 rows; each
    weight vector is unpacked once for every token, each activation word broadcast once for every group."""
    P = [[[None, None] for _ in xbs] for _ in wbs]
    for k in range(8):
        halves = [_nibbles(fn, wb, c, k) for wb in wbs]
        for t, xb in enumerate(xbs):
            for h in range(2):
                x = _bcast4(fn, fn.gep(xb, str(_x_at(32 * (2 * c + h) + 4 * k, il))))
                for g, hv in enumerate(halves):
                    m = maddubs(fn, hv[h], x)
                    P[g][t][h] = m if P[g][t][h] is None else fn.v(f"add {V16W} {P[g][t][h]}, {m}")
    bsums = [[fn.v(f"bitcast {V8I} {fn.splat(8, 'i32', fn.load('i32', fn.gep(xb, str(260 + 4 * (2 * c + h)))))} to {V16W}")
              for h in range(2)] for xb in xbs]
    out = []
    for g, u in enumerate(scm):
        scs, mns = [_sc(fn, u, 2 * c + h) for h in range(2)], [_mn(fn, u, 2 * c + h) for h in range(2)]
        row = []
        for t in range(len(xbs)):
            s = [_madd_i16(fn, P[g][t][h], scs[h]) for h in range(2)]
            m = [_madd_i16(fn, mns[h], bsums[t][h]) for h in range(2)]
            row.append((fn.v(f"add {V8I} {s[0]}, {s[1]}"), fn.v(f"add {V8I} {m[0]}, {m[1]}")))
        out.append(row)
    return out


def _superblock(fn: Fn, wbs: list[str], xbs: list[str], accs: list, mode: str, il: bool) -> list:
    """One superblock of 8 rows of each group for each token: accs [group][token] (acc, accm) after
    the mode's fmas (gemm: one pair of sub-blocks at a time; gemv: once, on the superblock's sums)."""
    scm = [_scales(fn, wb) for wb in wbs]
    dxs = [fn.splat(8, "float", fn.load("float", xb, 4)) for xb in xbs]
    dds = []
    for wb in wbs:
        d, dmin = (fn.half_to_float(fn.load(vec(8, "i16"), fn.gep(wb, str(off)), 2), 8) for off in (0, 16))
        dds.append([(fn.v(f"fmul {V8F} {d}, {dx}"), fn.v(f"fmul {V8F} {dmin}, {dx}")) for dx in dxs])
    accs = [list(row) for row in accs]
    sums = [[None] * len(xbs) for _ in wbs]
    for c in range(4):
        for g, row in enumerate(_pair_ints(fn, wbs, xbs, scm, c, il)):
            for t, (s, m) in enumerate(row):
                if mode == "gemm":
                    accs[g][t] = _fmas(fn, s, m, dds[g][t], accs[g][t])
                else:
                    old = sums[g][t]
                    sums[g][t] = (s, m) if old is None else (fn.v(f"add {V8I} {old[0]}, {s}"), fn.v(f"add {V8I} {old[1]}, {m}"))
    if mode == "gemv":
        accs = [[_fmas(fn, *sums[g][t], dds[g][t], accs[g][t]) for t in range(len(xbs))] for g in range(len(wbs))]
    return accs


def _fmas(fn: Fn, s: str, m: str, dd: tuple[str, str], acc: tuple[str, str]) -> tuple[str, str]:
    """(fma(f32(s), d dx, acc), fma(f32(m), dmin dx, accm))"""
    return (_fma(fn, fn.v(f"sitofp {V8I} {s} to {V8F}"), dd[0], acc[0]),
            _fma(fn, fn.v(f"sitofp {V8I} {m} to {V8F}"), dd[1], acc[1]))


def _group_rows(fn: Fn) -> tuple[str, str, str, str]:
    """(nb, bytes of a group's row of superblocks, first group, end group) for rows [r0, r1)."""
    nb = fn.v("sdiv i64 %n, 256")
    g1 = fn.v(f"ashr i64 {fn.v('add i64 %r1, 7')}, 3")
    return nb, fn.v(f"mul i64 {nb}, {GROUP_BYTES}"), fn.v("ashr i64 %r0, 3"), g1


def _rows(fn: Fn, wgs: list[str], nb: str, xts: list[str], mode: str, il: bool) -> list[list[str]]:
    """Groups' 8 rows (weights wgs) . each token (activations xts): [group][token] <8 x float>."""
    with fn.loop("0", nb, stem="sb") as B:
        accs = [[(B.carry(V8F, "zeroinitializer"), B.carry(V8F, "zeroinitializer")) for _ in xts] for _ in wgs]
        wbs = [fn.gep(wg, fn.v(f"mul i64 {B.i}, {GROUP_BYTES}")) for wg in wgs]
        for wb in wbs:
            _prefetch(fn, wb, PREFETCH, GROUP_BYTES)
        off = fn.v(f"mul i64 {B.i}, {X_BYTES}")
        new = _superblock(fn, wbs, [fn.gep(x, off) for x in xts], accs, mode, il)
        for row, nrow in zip(accs, new):
            for (acc, accm), (a, am) in zip(row, nrow):
                B.set(acc, a)
                B.set(accm, am)
    return [[fn.v(f"fsub {V8F} {acc}, {accm}") for acc, accm in row] for row in accs]


def _matvec(mt: ModuleText) -> None:
    fn = mt.function(f"define void @{symbols()[0]}(ptr noalias %w, ptr noalias %xq, ptr noalias %y, i64 %r0, "
                     "i64 %r1, i64 %n) nounwind")
    nb, gbytes, g0, g1 = _group_rows(fn)
    with fn.loop(g0, g1, stem="g") as G:
        (y,), = _rows(fn, [fn.gep("%w", fn.v(f"mul i64 {G.i}, {gbytes}"))], nb, ["%xq"], "gemv", il=False)
        _store_rows(fn, y, "%y", G.i)
    fn.do("ret void")
    mt.add(fn)


def _mm(mt: ModuleText, mode: str) -> None:
    """For each group: tokens TOKENS at a time (then one by one), each weight vector unpacked once
    for the tokens of a group; every (row, token) in `mode`'s order, whatever the grouping."""
    fn = mt.function(f"define void @mm_q4_kx8_{mode}(ptr noalias %w, ptr noalias %p, ptr noalias %y, i64 %r0, "
                     "i64 %r1, i64 %n) nounwind")
    xq = fn.load("ptr", fn.gep("%p", str(8 * P_XQ)), 8)
    ntok, xs, ys = (fn.load("i64", fn.gep("%p", str(8 * k)), 8) for k in (P_NTOK, P_XSTRIDE, P_YSTRIDE))
    nb, gbytes, g0, g1 = _group_rows(fn)
    n_full = fn.v(f"sdiv i64 {ntok}, {TOKENS}")
    t_rest = fn.v(f"mul i64 {n_full}, {TOKENS}")
    with fn.loop(g0, g1, stem="g") as G:
        wg = fn.gep("%w", fn.v(f"mul i64 {G.i}, {gbytes}"))
        for size, first, count in ((TOKENS, "0", n_full), (1, t_rest, fn.v(f"sub i64 {ntok}, {t_rest}"))):
            with fn.loop("0", count, stem="tg") as K:
                t0 = fn.v(f"add i64 {first}, {fn.v(f'mul i64 {K.i}, {size}')}")
                ts = [fn.v(f"add i64 {t0}, {k}") for k in range(size)]
                ys_, = _rows(fn, [wg], nb, [fn.gep(xq, fn.v(f"mul i64 {t}, {xs}")) for t in ts], mode, il=True)
                for t, yv in zip(ts, ys_):
                    _store_rows(fn, yv, fn.gep("%y", fn.v(f"mul i64 {t}, {ys}")), G.i)
    fn.do("ret void")
    mt.add(fn)


def _repack_fn(mt: ModuleText) -> None:
    """repack_q4_kx8(src, dst, unused, g0, g1, nb): groups [g0, g1) of the file's rows into the
    layout above, as repack() does (its numpy twin)."""
    fn = mt.function(f"define void @{symbols()[-1]}(ptr noalias %src, ptr noalias %dst, ptr %unused, i64 %g0, "
                     "i64 %g1, i64 %nb) nounwind")
    row = fn.v(f"mul i64 %nb, {SRC_BYTES}")
    with fn.loop("%g0", "%g1", stem="g") as G:
        sg = fn.gep("%src", fn.v(f"mul i64 {G.i}, {fn.v(f'shl i64 {row}, 3')}"))
        dg = fn.gep("%dst", fn.v(f"mul i64 {G.i}, {fn.v(f'mul i64 %nb, {GROUP_BYTES}')}"))
        with fn.loop("0", "%nb", stem="b") as B:
            db = fn.gep(dg, fn.v(f"mul i64 {B.i}, {GROUP_BYTES}"))
            for r in range(8):
                sblk = fn.gep(fn.gep(sg, fn.v(f"mul i64 {row}, {r}")), fn.v(f"mul i64 {B.i}, {SRC_BYTES}"))
                for src, size, n, dst in FIELDS:
                    ty = f"i{8 * size}"
                    for i in range(n):
                        fn.store(ty, fn.load(ty, fn.gep(sblk, str(src + size * i))), fn.gep(db, str(dst + (8 * i + r) * size)))
    fn.do("ret void")
    mt.add(fn)


@functools.cache
def module_ir(cpu: CpuInfo) -> str:
    """matvec_q4_kx8, mm_q4_kx8_gemm / _gemv and repack_q4_kx8 in one module."""
    mt = ModuleText(cpu)
    _matvec(mt)
    for m in MODES:
        _mm(mt, m)
    _repack_fn(mt)
    return mt.text()

