"""MLA latent attention for one decoding query (kimi-linear's absorbed MLA), online softmax over
key blocks; the numpy twin is jit.mla_attention.decode_twin.

    void mla_dec_<f16|f32>_<D>_<R>(const i64 *p, void *unused, float *acc, i64 b0, i64 b1, i64 n)

One row = one block of BLK keys (keys b*BLK .. min(S, (b+1)*BLK) - 1), all H heads. Every head's
query q_h [D] (D = R + r: absorbed latent part, then rope part) meets the same cache row
K_s = [c_s | k_pe_s] [D]; its value is V_s = c_s, the row's first R elements. Per block and head:

    m[b, h]      = max_s score(h, s),  score = scale * dot(q_h, K_s)
    l[b, h]      = sum_s exp(score - m[b, h])
    acc[b, h, :] = sum_s exp(score - m[b, h]) * V_s                   [R]

computed tile by tile (16 keys) with running max / sum / accumulator (rescaled by exp(m_old -
m_new)); the caller merges the blocks in a fixed order, so the result never depends on how the
pool hands out blocks. exp is ggml's polynomial (attention.v_expf).

Params p (i64 slots, P_*): q [H, D] f32, cache rows [>= S, D] (f16 or f32, contiguous), S, H
(even), BLK (multiple of 16), m [nblocks, H] f32, l [nblocks, H] f32, scale (f32 bits).
acc (the `out` argument): [nblocks, H, R] f32.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .attention import flt, splatf, v_expf
from .emit import Fn, ModuleText, mask, vec

P_Q, P_K, P_S, P_H, P_BLK, P_M, P_L, P_SCALE = range(8)
N_PARAMS = 8
TILE = 16          # keys per tile: one <16 x float> of scores per head
V16F, V8F = vec(16, "float"), vec(8, "float")


def symbol(d: int, r_lat: int, half: bool) -> str:
    return f"mla_dec_{'f16' if half else 'f32'}_{d}_{r_lat}"


def supported(cpu: CpuInfo, d: int, r_lat: int) -> bool:
    """FMA in hardware (halves: F16C's vcvtph2ps, or the portable integer code)."""
    return cpu.has_fma and d % 16 == 0 and r_lat % 32 == 0 and 0 < r_lat <= d <= 1024


def _fill_tile(fn: Fn, a: dict, t0: str, d: int, half: bool) -> None:
    """kt[j, :] = float(K[min(t0 + j, S - 1), :]) for j < 16: rows past the end repeat the last
    row (read in bounds; their scores are masked)."""
    esz = 2 if half else 4
    last = fn.v(f"sub i64 {a['S']}, 1")
    for j in range(TILE):
        row = fn.call("i64", "llvm.smin.i64", [f"i64 {fn.v(f'add i64 {t0}, {j}')}", f"i64 {last}"], "i64, i64")
        src = fn.gep(a["k"], fn.v(f"mul i64 {row}, {esz * d}"))
        dst = fn.gep(a["kt"], str(4 * d * j))
        with fn.loop("0", str(d), step=16, stem="cp") as C:
            x = fn.load(vec(16, "i16") if half else V16F, fn.gep(src, fn.v(f"mul i64 {C.i}, {esz}")), esz)
            if half:
                x = fn.half_to_float(x, 16)
            fn.store(V16F, x, fn.gep(dst, fn.v(f"shl i64 {C.i}, 2")), 64)


def _scores(fn: Fn, a: dict, d: int) -> None:
    """sc[h, j] = dot(q_h, kt[j]) for all heads, 2 heads x `keys` keys of w-lane partial sums at a
    time: with 512-bit registers (32 of them) w = 16 and 8 keys, else w = 8 and 4 keys (16 ymm)."""
    wide = fn.cpu.vector_bits >= 512
    w, keys = (16, 8) if wide else (8, 4)
    vt = vec(w, "float")
    with fn.loop("0", a["H"], step=2, stem="qk") as Hp:
        qa = fn.gep(a["q"], fn.v(f"mul i64 {Hp.i}, {4 * d}"))
        qb = fn.gep(qa, str(4 * d))
        for kg in range(TILE // keys):
            with fn.loop("0", str(d), step=w, stem="dot") as Dl:
                acc = [[Dl.carry(vt, "zeroinitializer") for _ in range(keys)] for _ in range(2)]
                off = fn.v(f"shl i64 {Dl.i}, 2")
                qv = [fn.load(vt, fn.gep(qp, off), 4) for qp in (qa, qb)]
                for j in range(keys):
                    kv = fn.load(vt, fn.gep(fn.gep(a["kt"], str(4 * d * (keys * kg + j))), off), 4 * w)
                    for i in range(2):
                        Dl.set(acc[i][j], fn.fma_v(w, qv[i], kv, acc[i][j]))
            for i in range(2):
                srow = fn.gep(a["sc"], fn.v(f"shl i64 {fn.v(f'add i64 {Hp.i}, {i}')}, 6"))
                if wide:
                    fn.store(V8F, _hsum8x16(fn, acc[i]), fn.gep(srow, str(4 * keys * kg)), 4)
                    continue
                for j in range(keys):
                    fn.store("float", fn.hsum_f(w, acc[i][j]), fn.gep(srow, str(4 * (keys * kg + j))), 4)


def _hsum8x16(fn: Fn, vs: list[str]) -> str:
    """The lane sums of 8 <16 x float> as one <8 x float>, by a transposing tree: each level adds
    lane l to lane l + half of the same vector, as a plain 16 -> 8 -> 4 -> 2 -> 1 tree does
    (same sums, same order), but for 2, 4, 8 vectors per shuffle pair instead of one."""
    def pair(x, y, lo, hi):
        a = fn.v(f"shufflevector {V16F} {x}, {V16F} {y}, {mask(lo)}")
        b = fn.v(f"shufflevector {V16F} {x}, {V16F} {y}, {mask(hi)}")
        return fn.v(f"fadd {V16F} {a}, {b}")
    # level 1: [x lanes l + l+8 | y lanes l + l+8]
    l1 = [pair(vs[k], vs[k + 1], [*range(8), *range(16, 24)], [*range(8, 16), *range(24, 32)]) for k in range(0, 8, 2)]
    # level 2: x = [a|b], y = [c|d] (8 each) -> [a|c|b|d] (4 each), l + l+4
    lo2 = [*range(4), *range(16, 20), *range(8, 12), *range(24, 28)]
    l2 = [pair(l1[k], l1[k + 1], lo2, [i + 4 for i in lo2]) for k in (0, 2)]
    # level 3: 2 lanes each, l + l+2: [a a e e c c g g b b f f d d h h]
    lo3 = [i for q in range(4) for i in (4 * q, 4 * q + 1, 16 + 4 * q, 17 + 4 * q)]
    l3 = pair(l2[0], l2[1], lo3, [i + 2 for i in lo3])
    sw = fn.v(f"shufflevector {V16F} {l3}, {V16F} poison, {mask([i ^ 1 for i in range(16)])}")
    l4 = fn.v(f"fadd {V16F} {l3}, {sw}")
    return fn.v(f"shufflevector {V16F} {l4}, {V16F} poison, {mask([0, 8, 4, 12, 2, 10, 6, 14])}")


def _softmax(fn: Fn, a: dict, mrow: str, lrow: str, nvalid: str) -> None:
    """Per head: scale and mask the tile's scores, update the running max m and sum l, leave
    p = exp(score - m_new) in sc[h] and alpha = exp(m_old - m_new) in al[h]."""
    lanes = ", ".join(f"i64 {j}" for j in range(TILE))
    valid = fn.v(f"icmp slt <16 x i64> <{lanes}>, {fn.splat(16, 'i64', nvalid)}")
    scale = fn.splat(16, "float", a["scale"])
    ninf = splatf(float("-inf"))
    with fn.loop("0", a["H"], stem="sm") as Hl:
        sp = fn.gep(a["sc"], fn.v(f"shl i64 {Hl.i}, 6"))
        s = fn.v(f"fmul {V16F} {fn.load(V16F, sp, 64)}, {scale}")
        s = fn.v(f"select <16 x i1> {valid}, {V16F} {s}, {V16F} {ninf}")
        tmax = fn.call("float", "llvm.vector.reduce.fmax.v16f32", [f"{V16F} {s}"], V16F)
        mp = fn.gep(mrow, fn.v(f"shl i64 {Hl.i}, 2"))
        lp = fn.gep(lrow, fn.v(f"shl i64 {Hl.i}, 2"))
        m_old = fn.load("float", mp, 4)
        m_new = fn.call("float", "llvm.maxnum.f32", [f"float {m_old}", f"float {tmax}"], "float, float")
        e = v_expf(fn, fn.v(f"fsub {V16F} {s}, {fn.splat(16, 'float', m_new)}"))
        da = fn.v(f"fsub {V16F} {fn.splat(16, 'float', m_old)}, {fn.splat(16, 'float', m_new)}")
        alpha = fn.v(f"extractelement {V16F} {v_expf(fn, da)}, i64 0")       # 0 when m_old = -inf
        l_old = fn.load("float", lp, 4)
        l_new = fn.v(f"fadd float {fn.v(f'fmul float {l_old}, {alpha}')}, {fn.hsum_f(16, e)}")
        fn.store(V16F, e, sp, 64)
        fn.store("float", m_new, mp, 4)
        fn.store("float", l_new, lp, 4)
        fn.store("float", alpha, fn.gep(a["al"], fn.v(f"shl i64 {Hl.i}, 2")), 4)


def _accumulate(fn: Fn, a: dict, arow: str, d: int, r_lat: int) -> None:
    """acc[h] = alpha_h acc[h] + sum_j p[h, j] kt[j, :R]: 2 heads x `cols` columns in registers
    (128 with 32 512-bit registers, else 32)."""
    cols = 128 if fn.cpu.vector_bits >= 512 and r_lat % 128 == 0 else 32
    nv = cols // 16
    with fn.loop("0", a["H"], step=2, stem="pv") as Hp:
        hs = [Hp.i, fn.v(f"add i64 {Hp.i}, 1")]
        al = [fn.splat(16, "float", fn.load("float", fn.gep(a["al"], fn.v(f"shl i64 {h}, 2")), 4)) for h in hs]
        srow = [fn.gep(a["sc"], fn.v(f"shl i64 {h}, 6")) for h in hs]
        prow = [fn.gep(arow, fn.v(f"mul i64 {h}, {4 * r_lat}")) for h in hs]
        with fn.loop("0", str(r_lat), step=cols, stem="col") as C:
            off = fn.v(f"shl i64 {C.i}, 2")
            ptrs = [[fn.gep(fn.gep(prow[i], off), str(64 * k)) for k in range(nv)] for i in range(2)]
            acc = [[fn.v(f"fmul {V16F} {fn.load(V16F, ptrs[i][k], 4)}, {al[i]}") for k in range(nv)] for i in range(2)]
            for j in range(TILE):
                vrow = fn.gep(fn.gep(a["kt"], str(4 * d * j)), off)
                vv = [fn.load(V16F, fn.gep(vrow, str(64 * k)), 64) for k in range(nv)]
                for i in range(2):
                    pj = fn.splat(16, "float", fn.load("float", fn.gep(srow[i], str(4 * j)), 4))
                    for k in range(nv):
                        acc[i][k] = fn.fma_v(16, pj, vv[k], acc[i][k])
            for i in range(2):
                for k in range(nv):
                    fn.store(V16F, acc[i][k], ptrs[i][k], 4)


def _block(fn: Fn, a: dict, b: str, d: int, r_lat: int, half: bool) -> None:
    hoff = fn.v(f"mul i64 {b}, {a['H']}")
    mrow = fn.gep(a["m"], fn.v(f"shl i64 {hoff}, 2"))
    lrow = fn.gep(a["l"], fn.v(f"shl i64 {hoff}, 2"))
    arow = fn.gep("%out", fn.v(f"mul i64 {hoff}, {4 * r_lat}"))
    with fn.loop("0", a["H"], stem="init") as Hl:
        fn.store("float", flt(float("-inf")), fn.gep(mrow, fn.v(f"shl i64 {Hl.i}, 2")), 4)
        fn.store("float", "0.0", fn.gep(lrow, fn.v(f"shl i64 {Hl.i}, 2")), 4)
    with fn.loop("0", fn.v(f"mul i64 {a['H']}, {r_lat}"), step=16, stem="zero") as Z:
        fn.store(V16F, "zeroinitializer", fn.gep(arow, fn.v(f"shl i64 {Z.i}, 2")), 4)
    s0 = fn.v(f"mul i64 {b}, {a['blk']}")
    end = fn.v(f"add i64 {s0}, {a['blk']}")
    s1 = fn.call("i64", "llvm.smin.i64", [f"i64 {end}", f"i64 {a['S']}"], "i64, i64")
    with fn.loop(s0, s1, step=TILE, stem="tile") as T:
        _fill_tile(fn, a, T.i, d, half)
        _scores(fn, a, d)
        _softmax(fn, a, mrow, lrow, fn.v(f"sub i64 {s1}, {T.i}"))
        _accumulate(fn, a, arow, d, r_lat)


@functools.cache
def mla_decode_ir(d: int, r_lat: int, half: bool, cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function(f"define void @{symbol(d, r_lat, half)}(ptr noalias %p, ptr %unused, ptr noalias %out, "
                     "i64 %r0, i64 %r1, i64 %n) nounwind")
    names = {P_Q: "q", P_K: "k", P_S: "S", P_H: "H", P_BLK: "blk", P_M: "m", P_L: "l"}
    ptrs = (P_Q, P_K, P_M, P_L)
    a = {name: fn.load("ptr" if i in ptrs else "i64", fn.gep("%p", str(8 * i)), 8) for i, name in names.items()}
    a["scale"] = fn.load("float", fn.gep("%p", str(8 * P_SCALE)), 4)
    a["kt"] = fn.v(f"alloca float, i64 {TILE * d}, align 64")                    # [16, D] converted rows
    nsc = fn.v(f"mul i64 {a['H']}, {TILE}")
    a["sc"] = fn.v(f"alloca float, i64 {nsc}, align 64")                         # [H, 16] scores
    a["al"] = fn.v(f"alloca float, i64 {a['H']}, align 64")                      # [H] rescale factors
    with fn.loop("%r0", "%r1", stem="blk") as B:
        _block(fn, a, B.i, d, r_lat, half)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
