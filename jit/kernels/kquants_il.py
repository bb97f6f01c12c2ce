"""K-quant batches against interleaved Q8_K activations (quantize.py Q8_K_il): the same exact
integers and float operations as kquants.py's modes (Q4_K gemm / gemv, Q5_K gemv, Q6_K tiled),
with fewer instructions.

A sub-block's 32 products land in one vpmaddubsw's 16 lanes in the plain layout, so every
sub-block needs its own scale multiply (vpmaddwd) and a horizontal sum. Interleaved, byte 4j + i
of slice k is element 32j + 4k + i of both operands (the weights are transposed per superblock
row in registers, once for a group of 16 tokens; the activations were stored that way):

    m_k    = vpmaddubsw(w slice k, x slice k)        i16 lane 2j + e: 2 products of sub-block j
    P      = m_0 + ... + m_7                        16 products per lane, |P| <= 16 * 15 * 127 < 2^15
    S      = vpmaddwd(P, [sc_0, sc_0, .., sc_7, sc_7])    i32 lane j = sc_j * (sub-block j . x)
    M      = vpmaddwd(bsums, m pairs)                     i32 lane j = m_j * (bsums[2j] + bsums[2j+1])

One scale multiply per token and superblock instead of eight (Q5_K: two, its 5-bit weights allow
4 slices per i16 sum; Q6_K: four, 16-element sub-blocks, slices 0-3 and 4-7 hold sub-blocks 2j and
2j + 1). The lanes are exact integers, so the sums each mode takes of them, and every float
operation after, are unchanged: the same bits as the plain kernels and llama.cpp. The float work
then runs with 8 tokens in the 8 lanes (row_dots_il).
"""
from __future__ import annotations

from .emit import Fn, mask
from .kquants import UNPACK, V2F, V4I, V8F, V8I, V32B, X_BYTES, ZERO_F, KStep, _add, _difference, _dx_products, \
    _fma, _isum, _madd_i16, _pair, _to_f, maddubs, row_dots


def _transpose8(fn: Fn, rows: list[str]) -> list[str]:
    """8 <8 x i32> rows -> 8 columns: out[k][j] = rows[j][k] (unpack 32, unpack 64, 128-bit halves)."""
    def sh(a: str, b: str, m: list[int]) -> str:
        return fn.v(f"shufflevector {V8I} {a}, {V8I} {b}, {mask(m)}")
    lo32, hi32 = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    lo64, hi64 = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    l1 = [sh(rows[2 * i], rows[2 * i + 1], m) for i in range(4) for m in (lo32, hi32)]  # pairs: k {0,1,4,5}, {2,3,6,7}
    l2 = {}
    for half in range(2):            # rows 0-3 (l1[0..3]) and rows 4-7 (l1[4..7])
        for h, (k_lo, k_hi) in ((0, (0, 1)), (1, (2, 3))):
            a, b = l1[4 * half + h], l1[4 * half + 2 + h]
            l2[half, k_lo] = sh(a, b, lo64)      # lanes k and k + 4 of rows 4 half .. 4 half + 3
            l2[half, k_hi] = sh(a, b, hi64)
    cols = [None] * 8
    for k in range(4):
        cols[k] = sh(l2[0, k], l2[1, k], [0, 1, 2, 3, 8, 9, 10, 11])
        cols[k + 4] = sh(l2[0, k], l2[1, k], [4, 5, 6, 7, 12, 13, 14, 15])
    return cols


def _unpack_il(fn: Fn, wb: str, name: str = "Q4_K") -> dict:
    """kquants' Q4_K (Q5_K) unpack, then the 8 sub-block vectors transposed into the 8 interleaved
    slices, and the scales as word pairs [sc_j, sc_j]."""
    W = UNPACK[name][1](fn, wb)
    W["i16_slices"] = 8 if name == "Q4_K" else 4       # 16 products of <= 15, or 8 of <= 31, x 127 < 2^15
    subs = [fn.v(f"bitcast {V32B} {q} to {V8I}") for q in W["q"]]        # lane k: bytes 4k..4k+3 of sub-block j
    W["slices"] = [fn.v(f"bitcast {V8I} {c} to {V32B}") for c in _transpose8(fn, subs)]
    W["sc2"] = fn.v(f"shufflevector <8 x i16> {W['sc8']}, <8 x i16> poison, {mask(j // 2 for j in range(16))}")
    return W


def _unpack6_il(fn: Fn, wb: str) -> dict:
    """kquants' Q6_K unpack (8 chunks of 32 weights, 0..63), transposed into the interleaved slices;
    scale words for slices 0-3 (their lanes 2j, 2j+1 are sub-block 2j) and 4-7 (sub-block 2j+1)."""
    W = UNPACK["Q6_K"][1](fn, wb)
    subs = [fn.v(f"bitcast {V32B} {q} to {V8I}") for q in W["q"]]
    W["slices"] = [fn.v(f"bitcast {V8I} {c} to {V32B}") for c in _transpose8(fn, subs)]
    W["sc_even"], W["sc_odd"] = (fn.v(f"shufflevector <16 x i16> {W['sc16']}, <16 x i16> poison, "
                                      f"{mask(2 * (j // 2) + o for j in range(16))}") for o in (0, 1))
    return W


def _isum6_il(fn: Fn, W: dict, xb: str) -> str:
    """-> <8 x i32> whose lane sum is the superblock's exact integer sum_j sc_j (q_j . x_j - 32 bsum_j):
    two slices add up in i16 (4 products of one sub-block per lane, <= 4 * 63 * 127 < 2^15)."""
    m = [maddubs(fn, w, fn.load(V32B, fn.gep(xb, str(4 + 32 * k)))) for k, w in enumerate(W["slices"])]
    parts = [_madd_i16(fn, fn.v(f"add <16 x i16> {m[2 * h]}, {m[2 * h + 1]}"), W["sc_even" if h < 2 else "sc_odd"])
             for h in range(4)]
    off = fn.v(f"shl {V8I} {_madd_i16(fn, fn.load('<16 x i16>', fn.gep(xb, '260')), W['sc16'])}, splat (i32 5)")
    return fn.v(f"sub {V8I} {_add(fn, parts)}, {off}")


def _tiled6_il(fn: Fn, W: dict, xb: str, vals: list[str]) -> list[str]:
    s1 = fn.v(f"fmul float {_to_f(fn, _isum(fn, _isum6_il(fn, W, xb)))}, {W['d']}")
    return [_fma(fn, s1, fn.load("float", xb), vals[0])]


def _ints_il(fn: Fn, W: dict, xb: str) -> str:
    """-> <8 x i32> [s_0..s_3, m_0..m_3]: s_p = S_2p + S_2p+1, m_p = M_2p + M_2p+1 (exact)."""
    per = W["i16_slices"]            # slices summed in i16 before the scales: 8 (Q4_K), 4 (Q5_K: 5-bit)
    S = None
    for g in range(0, 8, per):
        P = None
        for k in range(g, g + per):
            m = maddubs(fn, W["slices"][k], fn.load(V32B, fn.gep(xb, str(4 + 32 * k))))
            P = m if P is None else fn.v(f"add <16 x i16> {P}, {m}")
        part = _madd_i16(fn, P, W["sc2"])
        S = part if S is None else fn.v(f"add {V8I} {S}, {part}")
    M = _madd_i16(fn, fn.load("<16 x i16>", fn.gep(xb, "260")), W["m"])
    ev = fn.v(f"shufflevector {V8I} {S}, {V8I} {M}, {mask(range(0, 16, 2))}")
    od = fn.v(f"shufflevector {V8I} {S}, {V8I} {M}, {mask(range(1, 16, 2))}")
    return fn.v(f"add {V8I} {ev}, {od}")


def _gemm_il(fn: Fn, W: dict, xb: str, vals: list[str]) -> list[str]:
    sm = fn.v(f"sitofp {V8I} {_ints_il(fn, W, xb)} to {V8F}")             # [s_0..s_3, m_0..m_3]
    dd = _pair(fn, *_dx_products(fn, W, xb), "float")
    acc = vals[0]
    for p in range(4):                                                       # [isum, imin] of pair p
        acc = _fma(fn, fn.v(f"shufflevector {V8F} {sm}, {V8F} poison, {mask([p, p + 4])}"), dd, acc, 2)
    return [acc]


def _gemv_il(fn: Fn, W: dict, xb: str, vals: list[str]) -> list[str]:
    pm = _ints_il(fn, W, xb)
    a = fn.v(f"add {V4I} {fn.v(f'shufflevector {V8I} {pm}, {V8I} poison, {mask([0, 1, 4, 5])}')}, "
             f"{fn.v(f'shufflevector {V8I} {pm}, {V8I} poison, {mask([2, 3, 6, 7])}')}")
    b = fn.v(f"add <2 x i32> {fn.v(f'shufflevector {V4I} {a}, {V4I} poison, {mask([0, 2])}')}, "
             f"{fn.v(f'shufflevector {V4I} {a}, {V4I} poison, {mask([1, 3])}')}")
    sm = fn.v(f"sitofp <2 x i32> {b} to {V2F}")                              # [isum, imin]
    return [_fma(fn, sm, _pair(fn, *_dx_products(fn, W, xb), "float"), vals[0], 2)]


UNPACK_IL = {"Q4_K": (144, _unpack_il), "Q5_K": (176, lambda fn, wb: _unpack_il(fn, wb, "Q5_K")),
             "Q6_K": (210, _unpack6_il)}
STEPS_IL = {("Q4_K", "gemm"): KStep(((V2F, "zeroinitializer"),), _gemm_il, _difference),
            ("Q4_K", "gemv"): KStep(((V2F, "zeroinitializer"),), _gemv_il, _difference),
            ("Q5_K", "gemv"): KStep(((V2F, "zeroinitializer"),), _gemv_il, _difference),
            ("Q6_K", "tiled"): KStep((ZERO_F,), _tiled6_il, lambda fn, v: v[0])}


def row_dots_il(fn: Fn, wrow: str, nb: str, name: str, mode: str, xqs: list[str], prefetch=None) -> list[str]:
    """kquants.superblock_dots against Q8_K_il activations. Groups of 8 tokens run their float work
    with the tokens in the 8 lanes (their integer vectors transposed: lane t of column c is token t's
    c-th value), per lane the very operations of the per-token step, in the same order:
      Q4_K gemm: acc = fma(s_p, d dx, acc), accm = fma(m_p, dmin dx, accm) for p = 0..3; y = acc - accm
      Q4_K, Q5_K gemv: the same once with the sums over p
      Q6_K tiled: buf = fma(f32(isum) * d, dx, buf)"""
    wbytes, unpack = UNPACK_IL[name]
    if len(xqs) % 8:
        return row_dots(fn, wrow, nb, UNPACK_IL[name], STEPS_IL[name, mode], xqs, prefetch)
    eights = [xqs[i:i + 8] for i in range(0, len(xqs), 8)]
    with fn.loop("0", nb, stem="sb") as B:
        accs = [(B.carry(V8F, "zeroinitializer"), B.carry(V8F, "zeroinitializer")) for _ in eights]
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, {wbytes}"))
        if prefetch:
            prefetch(fn, wb, wbytes)
        W = unpack(fn, wb)
        off = fn.v(f"mul i64 {B.i}, {X_BYTES}")
        for (acc, accm), group in zip(accs, eights):
            a, am = _lanes_step(fn, name, mode, W, [fn.gep(xq, off) for xq in group], acc, accm)
            B.set(acc, a)
            B.set(accm, am)
    out = []
    for acc, accm in accs:
        y = acc if name == "Q6_K" else fn.v(f"fsub {V8F} {acc}, {accm}")
        out += [fn.v(f"extractelement {V8F} {y}, i64 {t}") for t in range(8)]
    return out


def _lanes_step(fn: Fn, name: str, mode: str, W: dict, xbs: list[str], acc: str, accm: str) -> tuple[str, str]:
    """One superblock for 8 tokens (activation superblocks xbs), tokens in lanes."""
    dx = fn.v(f"insertelement {V8F} poison, float {fn.load('float', xbs[0])}, i64 0")
    for t, xb in enumerate(xbs[1:], 1):
        dx = fn.v(f"insertelement {V8F} {dx}, float {fn.load('float', xb)}, i64 {t}")
    if name == "Q6_K":
        tot = _add(fn, _transpose8(fn, [_isum6_il(fn, W, xb) for xb in xbs]))            # [isum of token t]
        s1 = fn.v(f"fmul {V8F} {fn.v(f'sitofp {V8I} {tot} to {V8F}')}, {fn.splat(8, 'float', W['d'])}")
        return _fma(fn, s1, dx, acc, 8), accm
    cols = _transpose8(fn, [_ints_il(fn, W, xb) for xb in xbs])                  # cols[p][t], cols[4 + p][t]
    if mode == "gemv":
        cols = [_add(fn, cols[:4]), _add(fn, cols[4:])]
    dd = fn.v(f"fmul {V8F} {fn.splat(8, 'float', W['d'])}, {dx}")
    ddm = fn.v(f"fmul {V8F} {fn.splat(8, 'float', W['dmin'])}, {dx}")
    n = len(cols) // 2
    for p in range(n):
        acc = _fma(fn, fn.v(f"sitofp {V8I} {cols[p]} to {V8F}"), dd, acc, 8)
        accm = _fma(fn, fn.v(f"sitofp {V8I} {cols[n + p]} to {V8F}"), ddm, accm, 8)
    return acc, accm
