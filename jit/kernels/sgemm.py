"""float32 matrix product C = A B (or C += A B), row-major with row strides, for the long MLA
prefill's attention (scores, values) where numpy's BLAS may run below the CPU's vector width.

    void sgemm(const i64 *p, void *unused, float *unused, i64 r0, i64 r1, i64 n)      C = A B
    void sgemm_acc(...)                                                               C += A B
    p (i64 slots, P_*): A, B, C pointers; M, N, K; lda, ldb, ldc (floats)
    rows [r0, r1) are tiles of MR rows of C: tile t = rows MR t .. min(M, MR t + MR) - 1

Register tile MR x NR (AVX-512: 8 x 32 in 16 zmm; else 6 x 16 in 12 ymm): per k, MR broadcasts
of A[i, k], NR/16 or NR/8 loads of B[k, j..], MR x (NR/w) FMAs. Columns go in panels of NR, then
panels of 16 (N must be a multiple of 16); a tile's rows past M read row M - 1 and store nothing.
Both operands are packed per k block: B's panel [KC][NR], and A's MB tiles [tile][KC][MR] (the
MR values of one k side by side, once for all panels). A whole tile's C rows take plain loads and
stores, only the last, partial one masked ones. Zen 3, one thread: 2048 x 512 x 2048 went from
28-33 to 39-44 GMAC/s (the FMA loop alone reaches 49 of its 51).
k goes in blocks of KC: each block's sum is one FMA chain in k order, added to C block after
block, so every C element has the same float sequence whatever the split over threads.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .emit import Fn, ModuleText, vec

P_A, P_B, P_C, P_M, P_N, P_K, P_LDA, P_LDB, P_LDC = range(9)
N_PARAMS = 9


def shape(cpu: CpuInfo) -> tuple[int, int, int]:
    """(MR, NR, lanes) of the register tile."""
    return (8, 32, 16) if cpu.vector_bits >= 512 else (6, 16, 8)


KC = 256           # k per block: a packed B panel of KC x NR floats (32 KB) stays in L1
MB = 32            # row tiles per block: their packed A (32 x MR x KC floats, <= 256 KB) stays in L2


def _pack(fn: Fn, a: dict, buf: str, kb: str, kc: str, j0: str, nr: int) -> None:
    """buf[k, :nr] = B[kb + k, j0 .. j0 + nr) for k < kc: the panel contiguous (rows of B a
    power-of-two apart would all fall in one L1 set)."""
    vt = vec(16, "float")
    ldb = a["ldb"]
    first = fn.v(f"add i64 {fn.v(f'mul i64 {kb}, {ldb}')}, {j0}")
    src0 = fn.gep(a["B"], fn.v(f"shl i64 {first}, 2"))
    with fn.loop("0", kc, stem="pk") as P:
        src = fn.gep(src0, fn.v(f"shl i64 {fn.v(f'mul i64 {P.i}, {ldb}')}, 2"))
        dst = fn.gep(buf, fn.v(f"mul i64 {P.i}, {4 * nr}"))
        for h in range(nr // 16):
            fn.store(vt, fn.load(vt, fn.gep(src, str(64 * h)), 4), fn.gep(dst, str(64 * h)), 64)


def _tile_rows(fn: Fn, a: dict, tile: str, mr: int) -> list[str]:
    """The A / C rows of a tile: MR tile .. MR tile + MR - 1, those past M read as row M - 1."""
    row0 = fn.v(f"mul i64 {tile}, {mr}")
    last = fn.v(f"sub i64 {a['M']}, 1")
    return [fn.call("i64", "llvm.smin.i64", [f"i64 {fn.v(f'add i64 {row0}, {i}')}", f"i64 {last}"], "i64, i64")
            for i in range(mr)]


def _pack_a(fn: Fn, a: dict, abuf: str, t0: str, t1: str, kb: str, kc: str, mr: int) -> None:
    """abuf[t - t0][k][i] = A[row i of tile t, kb + k] for tiles [t0, t1), k < kc: the tile's MR
    values of each k side by side (MR rows lda apart would share L1 sets, and be MR streams)."""
    with fn.loop(t0, t1, stem="pa") as Tl:
        rows = _tile_rows(fn, a, Tl.i, mr)
        lda = a["lda"]
        starts = [fn.v(f"add i64 {fn.v(f'mul i64 {r}, {lda}')}, {kb}") for r in rows]
        srcs = [fn.gep(a["A"], fn.v(f"shl i64 {st}, 2")) for st in starts]
        dst0 = fn.gep(abuf, fn.v(f"mul i64 {fn.v(f'sub i64 {Tl.i}, {t0}')}, {4 * KC * mr}"))
        with fn.loop("0", kc, stem="pak") as K:
            koff = fn.v(f"shl i64 {K.i}, 2")
            dst = fn.gep(dst0, fn.v(f"mul i64 {K.i}, {4 * mr}"))
            for i, src in enumerate(srcs):
                fn.store("float", fn.load("float", fn.gep(src, koff), 4), fn.gep(dst, str(4 * i)), 4)


def _panel(fn: Fn, a: dict, tile: str, apack: str, buf: str, kc: str, j0: str, mr: int, nr: int, w: int,
           add: str) -> None:
    """C[tile rows, j0 .. j0 + nr) = (C if add else 0) + A[tile rows, kb .. kb + kc) buf, the A
    values from the tile's packed block apack [kc][MR]."""
    vt = vec(w, "float")
    nv = nr // w
    row0 = fn.v(f"mul i64 {tile}, {mr}")
    rows = _tile_rows(fn, a, tile, mr)
    ldc = a["ldc"]
    with fn.loop("0", kc, stem="k") as Kl:
        accs = [[Kl.carry(vt, "zeroinitializer") for _ in range(nv)] for _ in range(mr)]
        brow = fn.gep(buf, fn.v(f"mul i64 {Kl.i}, {4 * nr}"))
        bv = [fn.load(vt, fn.gep(brow, str(4 * w * h)), 64 if w == 16 else 32) for h in range(nv)]
        arow = fn.gep(apack, fn.v(f"mul i64 {Kl.i}, {4 * mr}"))
        for i in range(mr):
            ai = fn.splat(w, "float", fn.load("float", fn.gep(arow, str(4 * i)), 4))
            for h in range(nv):
                Kl.set(accs[i][h], fn.fma_v(w, ai, bv[h], accs[i][h]))
    # a whole tile's rows take plain loads and stores (AMD's masked stores are microcoded: Zen 3
    # lost ~20 % of the FMA rate to them); only the tile past the last row takes masked ones
    fast, edge, join = fn.fresh("sgfull"), fn.fresh("sgedge"), fn.fresh("sgjoin")
    full = fn.v(f"icmp sle i64 {fn.v(f'add i64 {row0}, {mr}')}, {a['M']}")
    fn.do(f"br i1 {full}, label %{fast}, label %{edge}")
    fn.label(fast)
    for i in range(mr):
        off = fn.v(f"add i64 {fn.v(f'mul i64 {rows[i]}, {ldc}')}, {j0}")
        crow = fn.gep(a["C"], fn.v(f"shl i64 {off}, 2"))
        for h in range(nv):
            cp = fn.gep(crow, str(4 * w * h))
            old = fn.load(vt, cp, 4)
            val = fn.v(f"select i1 {add}, {vt} {fn.v(f'fadd {vt} {old}, {accs[i][h]}')}, {vt} {accs[i][h]}")
            fn.store(vt, val, cp, 4)
    fn.do(f"br label %{join}")
    fn.label(edge)
    fn.declare(f"declare void @llvm.masked.store.v{w}f32.p0({vt}, ptr, i32, <{w} x i1>)")
    for i in range(mr):
        ok = fn.v(f"icmp slt i64 {fn.v(f'add i64 {row0}, {i}')}, {a['M']}")
        m = fn.splat(w, "i1", ok)
        ml = fn.splat(w, "i1", fn.v(f"and i1 {ok}, {add}"))
        off = fn.v(f"add i64 {fn.v(f'mul i64 {rows[i]}, {ldc}')}, {j0}")
        crow = fn.gep(a["C"], fn.v(f"shl i64 {off}, 2"))
        for h in range(nv):
            cp = fn.gep(crow, str(4 * w * h))
            old = fn.call(vt, f"llvm.masked.load.v{w}f32.p0", [f"ptr {cp}", "i32 4", f"<{w} x i1> {ml}",
                          f"{vt} zeroinitializer"], f"ptr, i32, <{w} x i1>, {vt}")
            val = fn.v(f"fadd {vt} {old}, {accs[i][h]}")
            fn.do(f"call void @llvm.masked.store.v{w}f32.p0({vt} {val}, ptr {cp}, i32 4, <{w} x i1> {m})")
    fn.do(f"br label %{join}")
    fn.label(join)


def _fn(mt: ModuleText, accumulate: bool) -> None:
    mr, nr, w = shape(mt.cpu)
    fn = mt.function(f"define void @{symbol(accumulate)}(ptr noalias %p, ptr %u0, ptr %u1, i64 %r0, i64 %r1, "
                     "i64 %n) nounwind")
    a = {name: fn.load("ptr", fn.gep("%p", str(8 * i)), 8) for i, name in ((P_A, "A"), (P_B, "B"), (P_C, "C"))}
    for i, name in ((P_M, "M"), (P_N, "N"), (P_K, "K"), (P_LDA, "lda"), (P_LDB, "ldb"), (P_LDC, "ldc")):
        a[name] = fn.load("i64", fn.gep("%p", str(8 * i)), 8)
    buf = fn.v(f"alloca float, i64 {KC * nr}, align 64")
    abuf = fn.v(f"alloca float, i64 {MB * mr * KC}, align 64")
    n_cols = a["N"]
    wide = fn.v(f"mul i64 {fn.v(f'sdiv i64 {n_cols}, {nr}')}, {nr}")         # columns in full NR panels
    k_all = a["K"]
    nkb = fn.v(f"sdiv i64 {fn.v(f'add i64 {k_all}, {KC - 1}')}, {KC}")
    with fn.loop("0", nkb, stem="kb") as Kb:                                  # C += one k block at a time
        kb = fn.v(f"mul i64 {Kb.i}, {KC}")
        kc = fn.call("i64", "llvm.smin.i64", [f"i64 {KC}", f"i64 {fn.v(f'sub i64 {k_all}, {kb}')}"], "i64, i64")
        add = "true" if accumulate else fn.v(f"icmp sgt i64 {kb}, 0")
        panels = [(nr, "0", fn.v(f"sdiv i64 {wide}, {nr}"), nr)]
        if nr > 16:
            panels.append((16, fn.v(f"sdiv i64 {wide}, 16"), fn.v(f"sdiv i64 {n_cols}, 16"), 16))
        span = fn.v("sub i64 %r1, %r0")
        nmb = fn.v(f"sdiv i64 {fn.v(f'add i64 {span}, {MB - 1}')}, {MB}")
        with fn.loop("0", nmb, stem="mb") as Mb:                              # A's rows of MB tiles stay in L2
            t0 = fn.v(f"add i64 %r0, {fn.v(f'mul i64 {Mb.i}, {MB}')}")
            t1 = fn.call("i64", "llvm.smin.i64", [f"i64 {fn.v(f'add i64 {t0}, {MB}')}", "i64 %r1"], "i64, i64")
            _pack_a(fn, a, abuf, t0, t1, kb, kc, mr)
            for width, p0, p1, step in panels:
                with fn.loop(p0, p1, stem="pn") as Pn:
                    j0 = fn.v(f"mul i64 {Pn.i}, {step}")
                    _pack(fn, a, buf, kb, kc, j0, width)
                    with fn.loop(t0, t1, stem="tl") as Tl:
                        apack = fn.gep(abuf, fn.v(f"mul i64 {fn.v(f'sub i64 {Tl.i}, {t0}')}, {4 * KC * mr}"))
                        _panel(fn, a, Tl.i, apack, buf, kc, j0, mr, width, w, add)
    fn.do("ret void")
    mt.add(fn)


def symbol(accumulate: bool) -> str:
    return "sgemm_acc" if accumulate else "sgemm"


@functools.cache
def sgemm_ir(cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    _fn(mt, False)
    _fn(mt, True)
    return mt.text()
