"""One key block of an online (flash-style) softmax, row by row: the float work between the two
matmuls of a blocked attention (scores = q K^T before it, acc += p V after it). The numpy twin is
jit.softmax_block.update_twin.

    void sm_block(const i64 *p, void *unused, float *sc, i64 r0, i64 r1, i64 n)

sc [rows, LD] f32 holds one block's raw scores (q . k); row i sees its first vis[i] columns
(vis in 0..LD; the causal edge). Per row, with m_old = m[i]:

    s        = scale * sc[i, j]                             j < vis[i]
    m_new    = max(m_old, max_j s)                          m[i]     <- m_new
    sc[i, j] = exp(s - m_new)  (j < vis[i]),  0 (else)
    alpha[i] = exp(m_old - m_new)                           0 when m_old = -inf; 1 when vis[i] = 0
    l[i]     = l[i] * alpha[i] + sum_j sc[i, j]

exp is ggml's reduction and polynomial for arguments <= 0 (exp_nonpos; alpha: attention.v_expf);
sums in 16 lanes, then across them. scale must be positive. Rows are
independent, so any split over threads gives the same bits.

Params p (i64 slots, P_*): LD (row stride in floats, a multiple of 16), m, l, alpha [rows] f32,
vis [rows] i64, scale (f32 bits).
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .attention import _EXP, flt, splatf, v_expf
from .emit import Fn, ModuleText, vec

P_LD, P_M, P_L, P_AL, P_VIS, P_SCALE = range(6)
N_PARAMS = 6
SYMBOL = "sm_block"
V16F = vec(16, "float")
LANES = ", ".join(f"i32 {j}" for j in range(16))


def _valid(fn: Fn, j0: str, vis: str) -> str:
    """<16 x i1>: column j0 + lane < vis."""
    left = fn.v(f"trunc i64 {fn.v(f'sub i64 {vis}, {j0}')} to i32")
    return fn.v(f"icmp slt <16 x i32> <{LANES}>, {fn.splat(16, 'i32', left)}")


def _max(fn: Fn, a: str, b: str) -> str:
    return fn.v(f"select <16 x i1> {fn.v(f'fcmp ogt {V16F} {a}, {b}')}, {V16F} {a}, {V16F} {b}")


def exp_nonpos(fn: Fn, x: str) -> str:
    """exp(x) for x <= 0 (or -inf) on <16 x float>: ggml_v_expf's reduction and polynomial, 0 below
    -87 (where 2^n leaves the normal range); no overflow handling, the arguments never exceed 0."""
    c1, c2, c3, c4, c5 = (f"splat (float {flt(float.fromhex(h))})" for h in _EXP)
    r = splatf(12582912.0)
    xc = _max(fn, x, splatf(-87.0))
    n = fn.v(f"fsub {V16F} {fn.fma_v(16, xc, splatf(float.fromhex('0x1.715476p+0')), r)}, {r}")
    nn = fn.v(f"fneg {V16F} {n}")
    b = fn.fma_v(16, nn, splatf(float.fromhex("0x1.7f7d1cp-20")),
                 fn.fma_v(16, nn, splatf(float.fromhex("0x1.62e4p-1")), xc))
    u = fn.v(f"fmul {V16F} {b}, {b}")
    j = fn.fma_v(16, fn.fma_v(16, fn.fma_v(16, c5, b, c4), u, fn.fma_v(16, c3, b, c2)), u,
                 fn.fma_v(16, c1, b, splatf(1.0)))
    V16I = vec(16, "i32")
    ni = fn.v(f"fptosi {V16F} {n} to {V16I}")
    biased = fn.v(f"add {V16I} {ni}, splat (i32 127)")
    p2 = fn.v(f"bitcast {V16I} {fn.v(f'shl {V16I} {biased}, splat (i32 23)')} to {V16F}")
    res = fn.v(f"fmul {V16F} {j}, {p2}")
    return fn.v(f"select <16 x i1> {fn.v(f'fcmp olt {V16F} {x}, {splatf(-87.0)}')}, {V16F} zeroinitializer, "
                f"{V16F} {res}")


def _row_max(fn: Fn, row: str, vis: str, full: str, scale: str) -> str:
    """max_j scale * row[j] over j < vis (-inf when vis = 0): full tiles, then the partial one."""
    ninf = splatf(float("-inf"))
    with fn.loop("0", full, step=16, stem="mx") as L:
        best = L.carry(V16F, ninf)
        L.set(best, _max(fn, best, fn.load(V16F, fn.gep(row, fn.v(f"shl i64 {L.i}, 2")), 4)))
    with fn.loop(full, vis, step=16, stem="mxt") as L:                     # at most once
        tail = L.carry(V16F, best)
        x = fn.load(V16F, fn.gep(row, fn.v(f"shl i64 {L.i}, 2")), 4)
        L.set(tail, _max(fn, tail, fn.v(f"select <16 x i1> {_valid(fn, L.i, vis)}, {V16F} {x}, {V16F} {ninf}")))
    raw = fn.call("float", "llvm.vector.reduce.fmax.v16f32", [f"{V16F} {tail}"], V16F)
    return fn.v(f"fmul float {raw}, {scale}")                              # scale > 0: max commutes


def _exp_tile(fn: Fn, row: str, j: str, scale: str, mv: str, valid: str | None) -> str:
    ptr = fn.gep(row, fn.v(f"shl i64 {j}, 2"))
    e = exp_nonpos(fn, fn.v(f"fsub {V16F} {fn.v(f'fmul {V16F} {fn.load(V16F, ptr, 4)}, {scale}')}, {mv}"))
    if valid is not None:
        e = fn.v(f"select <16 x i1> {valid}, {V16F} {e}, {V16F} zeroinitializer")
    fn.store(V16F, e, ptr, 4)
    return e


def _exp_row(fn: Fn, row: str, ld: str, vis: str, full: str, scale: str, m_new: str) -> str:
    """row[j] = exp(scale row[j] - m_new) for j < vis, else 0; -> their sum."""
    mv = fn.splat(16, "float", m_new)
    with fn.loop("0", full, step=16, stem="ex") as L:
        tot = L.carry(V16F, "zeroinitializer")
        L.set(tot, fn.v(f"fadd {V16F} {tot}, {_exp_tile(fn, row, L.i, scale, mv, None)}"))
    with fn.loop(full, vis, step=16, stem="ext") as L:                     # at most once
        tail = L.carry(V16F, tot)
        L.set(tail, fn.v(f"fadd {V16F} {tail}, {_exp_tile(fn, row, L.i, scale, mv, _valid(fn, L.i, vis))}"))
    with fn.loop(fn.v(f"and i64 {fn.v(f'add i64 {vis}, 15')}, -16"), ld, step=16, stem="ez") as L:
        fn.store(V16F, "zeroinitializer", fn.gep(row, fn.v(f"shl i64 {L.i}, 2")), 4)
    return fn.hsum_f(16, tail)


def _row(fn: Fn, a: dict, i: str) -> None:
    off4 = fn.v(f"shl i64 {i}, 2")
    ld4 = fn.v(f"shl i64 {a['ld']}, 2")
    row = fn.gep("%sc", fn.v(f"mul i64 {i}, {ld4}"))
    vis = fn.load("i64", fn.gep(a["vis"], fn.v(f"shl i64 {i}, 3")), 8)
    mp, lp, ap = (fn.gep(a[k], off4) for k in ("m", "l", "al"))
    m_old = fn.load("float", mp, 4)
    full = fn.v(f"and i64 {vis}, -16")
    m_new = fn.call("float", "llvm.maxnum.f32", [f"float {m_old}", f"float {_row_max(fn, row, vis, full, a['sc1'])}"],
                    "float, float")
    tot = _exp_row(fn, row, a["ld"], vis, full, a["scale"], m_new)
    da = fn.v(f"fsub {V16F} {fn.splat(16, 'float', m_old)}, {fn.splat(16, 'float', m_new)}")
    alpha = fn.v(f"extractelement {V16F} {v_expf(fn, da)}, i64 0")                # 0 when m_old = -inf
    alpha = fn.v(f"select i1 {fn.v(f'icmp sle i64 {vis}, 0')}, float {flt(1.0)}, float {alpha}")
    l_old = fn.load("float", lp, 4)
    l_new = fn.v(f"fadd float {fn.v(f'fmul float {l_old}, {alpha}')}, {tot}")
    fn.store("float", m_new, mp, 4)
    fn.store("float", l_new, lp, 4)
    fn.store("float", alpha, ap, 4)


@functools.cache
def softmax_block_ir(cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function(f"define void @{SYMBOL}(ptr noalias %p, ptr %unused, ptr noalias %sc, "
                     "i64 %r0, i64 %r1, i64 %n) nounwind")
    names = {P_LD: "ld", P_M: "m", P_L: "l", P_AL: "al", P_VIS: "vis"}
    a = {name: fn.load("i64" if i == P_LD else "ptr", fn.gep("%p", str(8 * i)), 8) for i, name in names.items()}
    a["sc1"] = fn.load("float", fn.gep("%p", str(8 * P_SCALE)), 4)
    a["scale"] = fn.splat(16, "float", a["sc1"])
    with fn.loop("%r0", "%r1", stem="row") as R:
        _row(fn, a, R.i)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
