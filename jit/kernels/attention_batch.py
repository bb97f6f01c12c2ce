"""Batch (prefill) attention over heads that share a KV head: `attn_grp_<Dk>_<Dv>_<G>` runs G
query heads of one token at once, so each key and value row read from the cache serves G heads
(Gemma 3: 4 heads on 1 KV head, the caches streamed from L2/L3 a quarter as often).

Every head's float operations are those of the batch kernel attn_bat_* (attention.py), in the
same order, so the bits are the numpy twin's (inference.ops._attention_f16, batch order):

    kq[s] = reduce_add16(chain of fma16(f16(q)[j], k[s][j]) over the Dk/16 chunks j) * scale
    p     = f16(softmax(kq))        expf by 16-groups of positions, group sums added in double
    out   = reduce_lanes over lanes l < 16 of sum_{s = l mod 16, in order} fma(p[s], v[s], .)

    void attn_grp_<f16|f32>_<Dk>_<Dv>_<G>(const i64 *p, void *unused, float *out, i64 unit_begin,
                                          i64 unit_end, i64 n)

p as attention.py (P_* slots; k, v of the cache type, f16 halves or f32; over an F32 cache f16()
above is the identity). A unit is (token t, heads h0 .. h0+G-1) with G dividing Hq/Hkv:
unit = t * (Hq / G) + h0 / G. Scratch (stack): G score rows of p[P_SCRATCH] floats, the G rounded
query rows [G, Dk], one chunk's lane sums [G, 16 lanes, 16 floats], each lane's first index and slot.
The value sum walks Dv in chunks of 16 floats (G accumulators stay in registers), each chunk
lane by lane over the visible positions, and reduces a chunk's 16 lanes as soon as it is done.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .attention import (KV_BYTES, P_HKV, P_HQ, P_K, P_KBEG, P_Q, P_QPOS, P_R, P_SCALE, P_SCRATCH, P_V, V16F,
                        f16_round, flt, fma16, load16, reduce_add16, reduce_lanes, splatf, v_expf)
from .emit import Fn, ModuleText

LANES = 16        # positions s go to lane s % 16 of the value sum (batch order)


def symbol(dk: int, dv: int, group: int, kv: str = "f16") -> str:
    return f"attn_grp_{kv}_{dk}_{dv}_{group}"


def group_for(hq: int, hkv: int) -> int:
    """Heads per unit: the largest of 4, 3, 2, 1 that divides the heads of one KV head."""
    g = hq // hkv
    return next(k for k in (4, 3, 2, 1) if g % k == 0)


def _scores(fn: Fn, a: dict, u: dict, dk: int, G: int, kv: str) -> list[str]:
    """kq of every visible position into each head's score row; -> each head's maximum."""
    with fn.loop(u["kb"], u["stop"], stem="kq") as K:
        mx = [K.carry("float", flt(float("-inf"))) for _ in range(G)]
        slot = K.carry("i64", u["slot0"])
        krow = fn.gep(u["kh"], fn.v(f"mul i64 {slot}, {u['kstride']}"))
        acc = ["zeroinitializer"] * G
        for j in range(dk // 16):
            kr = load16(fn, fn.gep(krow, str(16 * KV_BYTES[kv] * j)), kv)
            for i in range(G):
                qv = fn.load(V16F, fn.gep(u["qbuf"], str(4 * (i * dk + 16 * j))), 64)
                acc[i] = fma16(fn, qv, kr, acc[i])
        a0 = u["a0"]
        at = fn.v(f"shl i64 {fn.v(f'sub i64 {K.i}, {a0}')}, 2")
        for i in range(G):
            kq = fn.v(f"fmul float {reduce_add16(fn, acc[i])}, {a['scale']}")
            fn.store("float", kq, fn.gep(u["srow"][i], at), 4)
            K.set(mx[i], fn.call("float", "llvm.maxnum.f32", [f"float {mx[i]}", f"float {kq}"], "float, float"))
        nxt = fn.v(f"add i64 {slot}, 1")
        ring = a["R"]
        K.set(slot, fn.v(f"select i1 {fn.v(f'icmp eq i64 {nxt}, {ring}')}, i64 0, i64 {nxt}"))
    return mx


def _softmax(fn: Fn, s: str, span_p: str, mx: str, kv: str) -> None:
    """Score row s -> f16(softmax): expf by 16-groups, each group's sum added in double."""
    mxv = fn.splat(16, "float", mx)
    with fn.loop("0", span_p, step=16, stem="sm") as S:
        tot = S.carry("double", "0.0")
        ptr = fn.gep(s, fn.v(f"shl i64 {S.i}, 2"))
        e = v_expf(fn, fn.v(f"fsub {V16F} {fn.load(V16F, ptr, 64)}, {mxv}"))
        fn.store(V16F, e, ptr, 64)
        S.set(tot, fn.v(f"fadd double {tot}, {fn.v(f'fpext float {reduce_add16(fn, e)} to double')}"))
    invv = fn.splat(16, "float", fn.v(f"fptrunc double {fn.v(f'fdiv double 1.0, {tot}')} to float"))
    with fn.loop("0", span_p, step=16, stem="pr") as S:
        ptr = fn.gep(s, fn.v(f"shl i64 {S.i}, 2"))
        fn.store(V16F, f16_round(fn, fn.v(f"fmul {V16F} {fn.load(V16F, ptr, 64)}, {invv}"), kv), ptr, 64)


def _values(fn: Fn, a: dict, u: dict, dv: int, G: int, kv: str) -> None:
    """out rows of the G heads, 16 floats at a time: lane sums over the positions, then their tree.
    Each lane's first position (and its cache slot) is found once per unit, not once per chunk."""
    a0, ring = u["a0"], a["R"]
    off = fn.v(f"sub i64 {u['kb']}, {a0}")                                          # 0..63
    with fn.loop("0", str(LANES), stem="l0") as Ln:
        behind = fn.call("i64", "llvm.smax.i64", [f"i64 {fn.v(f'sub i64 {off}, {Ln.i}')}", "i64 0"], "i64, i64")
        skip = fn.v(f"and i64 {fn.v(f'add i64 {behind}, {LANES - 1}')}, {-LANES}")
        i0 = fn.v(f"add i64 {Ln.i}, {skip}")
        fn.store("i64", i0, fn.gep(u["lane0"], fn.v(f"shl i64 {Ln.i}, 4")), 8)
        fn.store("i64", fn.v(f"urem i64 {fn.v(f'add i64 {a0}, {i0}')}, {ring}"),
                 fn.gep(u["lane0"], fn.v(f"add i64 {fn.v(f'shl i64 {Ln.i}, 4')}, 8")), 8)
    with fn.loop("0", str(dv // 16), stem="ch") as C:
        vcol = fn.gep(u["vh"], fn.v(f"mul i64 {C.i}, {16 * KV_BYTES[kv]}"))
        with fn.loop("0", str(LANES), stem="ln") as Ln:
            at0 = fn.gep(u["lane0"], fn.v(f"shl i64 {Ln.i}, 4"))
            i0, vslot0 = fn.load("i64", at0, 8), fn.load("i64", fn.gep(at0, "8"), 8)
            with fn.loop(i0, u["span"], step=LANES, stem="pv") as P:
                accs = [P.carry(V16F, "zeroinitializer") for _ in range(G)]
                vslot = P.carry("i64", vslot0)
                v = load16(fn, fn.gep(vcol, fn.v(f"mul i64 {vslot}, {u['vstride']}")), kv)
                at = fn.v(f"shl i64 {P.i}, 2")
                for i in range(G):
                    pv = fn.splat(16, "float", fn.load("float", fn.gep(u["srow"][i], at), 4))
                    P.set(accs[i], fma16(fn, pv, v, accs[i]))
                nxt = fn.v(f"add i64 {vslot}, {LANES}")
                wrap = fn.v(f"icmp sge i64 {nxt}, {ring}")
                P.set(vslot, fn.v(f"select i1 {wrap}, i64 {fn.v(f'sub i64 {nxt}, {ring}')}, i64 {nxt}"))
            for i in range(G):
                lane = fn.v(f"add i64 {Ln.i}, {LANES * i}")
                fn.store(V16F, accs[i], fn.gep(u["lanes"], fn.v(f"shl i64 {lane}, 6")), 64)
        for i in range(G):
            parts = [fn.load(V16F, fn.gep(u["lanes"], str(64 * (LANES * i + l))), 64) for l in range(LANES)]
            orow = fn.gep(u["out"][i], fn.v(f"shl i64 {C.i}, 6"))
            fn.store(V16F, reduce_lanes(fn, parts, False), orow, 4)


def _unit(fn: Fn, r: str, a: dict, dk: int, dv: int, G: int, kv: str) -> None:
    esz = KV_BYTES[kv]
    hq, hkv = a["hq"], a["hkv"]
    per = fn.v(f"sdiv i64 {hq}, {G}")
    t = fn.v(f"sdiv i64 {r}, {per}")
    h0 = fn.v(f"mul i64 {fn.v(f'srem i64 {r}, {per}')}, {G}")
    hk = fn.v(f"sdiv i64 {h0}, {fn.v(f'sdiv i64 {hq}, {hkv}')}")
    qp = fn.load("i64", fn.gep(a["qpos"], fn.v(f"shl i64 {t}, 3")), 8)
    kb = fn.load("i64", fn.gep(a["kbeg"], fn.v(f"shl i64 {t}, 3")), 8)
    a0 = fn.v(f"and i64 {kb}, -64")
    span = fn.v(f"add i64 {fn.v(f'sub i64 {qp}, {a0}')}, 1")                     # score index = pos - a0
    span_p = fn.v(f"and i64 {fn.v(f'add i64 {span}, 63')}, -64")
    row0 = fn.v(f"add i64 {fn.v(f'mul i64 {t}, {hq}')}, {h0}")
    u = dict(kb=kb, a0=a0, span=span, stop=fn.v(f"add i64 {qp}, 1"), slot0=fn.v(f"urem i64 {kb}, {a['R']}"),
             qbuf=a["qbuf"], lanes=a["lanes"], lane0=a["lane0"],
             kstride=fn.v(f"mul i64 {a['hkv']}, {esz * dk}"), vstride=fn.v(f"mul i64 {a['hkv']}, {esz * dv}"),
             kh=fn.gep(a["k"], fn.v(f"mul i64 {hk}, {esz * dk}")), vh=fn.gep(a["v"], fn.v(f"mul i64 {hk}, {esz * dv}")),
             srow=[fn.gep(a["scratch"], fn.v(f"mul i64 {a['nscratch']}, {4 * i}")) for i in range(G)],
             out=[fn.gep("%out", fn.v(f"mul i64 {fn.v(f'add i64 {row0}, {i}')}, {4 * dv}")) for i in range(G)])
    qrow = fn.gep(a["q"], fn.v(f"mul i64 {row0}, {4 * dk}"))
    for i in range(G):
        for j in range(dk // 16):
            qv = f16_round(fn, fn.load(V16F, fn.gep(qrow, str(4 * (i * dk + 16 * j))), 4), kv)
            fn.store(V16F, qv, fn.gep(a["qbuf"], str(4 * (i * dk + 16 * j))), 64)
        with fn.loop("0", span_p, step=16, stem="fill") as F:
            fn.store(V16F, splatf(float("-inf")), fn.gep(u["srow"][i], fn.v(f"shl i64 {F.i}, 2")), 64)
    mx = _scores(fn, a, u, dk, G, kv)
    for i in range(G):
        _softmax(fn, u["srow"][i], span_p, mx[i], kv)
    _values(fn, a, u, dv, G, kv)


@functools.cache
def attention_group_ir(dk: int, dv: int, group: int, kv: str, cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function(f"define void @{symbol(dk, dv, group, kv)}(ptr noalias %p, ptr %unused, ptr noalias %out, "
                     "i64 %r0, i64 %r1, i64 %n) nounwind")
    names = {P_Q: "q", P_K: "k", P_V: "v", P_QPOS: "qpos", P_KBEG: "kbeg", P_R: "R", P_HQ: "hq", P_HKV: "hkv",
             P_SCRATCH: "nscratch"}
    a = {name: fn.load("ptr" if i < P_R else "i64", fn.gep("%p", str(8 * i)), 8) for i, name in names.items()}
    a["scale"] = fn.load("float", fn.gep("%p", str(8 * P_SCALE)), 4)
    ns = fn.v(f"add i64 {a['nscratch']}, 15")
    ns = a["nscratch"] = fn.v(f"and i64 {ns}, -16")              # score rows 64-byte aligned
    a["scratch"] = fn.v(f"alloca float, i64 {fn.v(f'mul i64 {ns}, {group}')}, align 64")
    a["qbuf"] = fn.v(f"alloca float, i64 {group * dk}, align 64")
    a["lanes"] = fn.v(f"alloca float, i64 {group * LANES * 16}, align 64")
    a["lane0"] = fn.v(f"alloca i64, i64 {2 * LANES}, align 64")     # per lane: first index, its slot
    with fn.loop("%r0", "%r1", stem="unit") as U:
        _unit(fn, U.i, a, dk, dv, group, kv)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
