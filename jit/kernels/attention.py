"""Attention over a KV cache, as llama.cpp's CPU backend computes it (no flash attention), bit
for bit the numpy twin inference.ops._attention_f16 (half = the cache type is F16):

    kq[s] = dot(f16(q), k[s]) * scale          (F16 dot in tinyBLAS order, or ggml_vec_dot_f16's
                                                 for a single query: `decode`)
    p     = f16(softmax(kq))                   (ggml's exp polynomial, 16-groups summed in double)
    out   = sum_s p[s] * v[s]                  (same dot order, along the keys)

With an F32 cache nothing is rounded to half (f16() is the identity), the sums are the same.

    void attn_<bat|dec>_<f16|f32>_<Dk>_<Dv>(const i64 *p, void *unused, float *out, i64 row_begin,
                                            i64 row_end, i64 n)

A row is one (query t, head h): row = t * Hq + h, KV head h / (Hq / Hkv). Params p (i64 slots, P_*):
q [T, Hq, Dk] f32, k [R, Hkv, Dk], v [R, Hkv, Dv] of the cache type (f16: IEEE halves, 2 bytes,
widened with vcvtph2ps under F16C, integer code without; f32: floats),
q_pos [T] i64, k_begin [T] i64 (first visible key position), R (position p lives in slot p % R,
R >= 64), Hq, Hkv, scale (f32 bits), scratch floats per row (>= max span from k_begin & ~63 to q_pos,
rounded up to 64). Query t sees positions k_begin[t] .. q_pos[t], all present in the cache.

Summation lanes follow the key position (llama.cpp's cache holds position p in cell p): lane
p % STEP (STEP 16 in a batch, 64 for a single query), 16-groups of the softmax sum by p // 16.
Keys outside the visible range would add exact zeros there, so they are skipped here.
"""
from __future__ import annotations

import functools
import struct

from inference.kv_cache import KV_BYTES, KV_TYPES   # cache element types, bytes per value

from ..cpu import CpuInfo
from .emit import Fn, ModuleText, mask, vec

P_Q, P_K, P_V, P_QPOS, P_KBEG, P_R, P_HQ, P_HKV, P_SCALE, P_SCRATCH = range(10)
N_PARAMS = 10
V16F, V8F, V4F = vec(16, "float"), vec(8, "float"), vec(4, "float")

# ggml_v_expf (ggml-cpu/vec.h, AVX512) constants as float32
_EXP = ["0x1.ffffecp-1", "0x1.fffdb6p-2", "0x1.555e66p-3", "0x1.573e2ep-5", "0x1.0e4020p-7"]


def flt(x: float) -> str:
    """A float32 value as an LLVM float literal (the double hex form)."""
    f = struct.unpack("<f", struct.pack("<f", x))[0]
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", f))[0]


def splatf(x: float) -> str:
    return f"splat (float {flt(x)})"


def symbol(dk: int, dv: int, decode: bool, kv: str = "f16") -> str:
    return f"attn_{'dec' if decode else 'bat'}_{kv}_{dk}_{dv}"


def supported(cpu: CpuInfo, dk: int, dv: int, kv: str = "f16") -> bool:
    """FMA in hardware (half conversions: F16C or the portable code); head sizes in whole
    16-lane vectors."""
    return kv in KV_TYPES and cpu.has_fma and dk % 16 == 0 and dv % 16 == 0 and 0 < dk <= 512 and 0 < dv <= 512


def load16(fn: Fn, ptr: str, kv: str) -> str:
    """16 cache values at ptr as <16 x float>: halves widened (F16C's vcvtph2ps, else integer
    code: emit.half_to_float), or floats as they are."""
    if kv == "f16":
        return fn.half_to_float(fn.load(vec(16, "i16"), ptr, 2), 16)
    return fn.load(V16F, ptr, 4)


def fma16(fn: Fn, a: str, b: str, c: str) -> str:
    return fn.fma_v(16, a, b, c)


def f16_round(fn: Fn, v: str, kv: str = "f16") -> str:
    """f16(v) over an F16 cache (llama.cpp rounds q and the probabilities), v itself over F32."""
    return fn.round_to_half_v(v, 16) if kv == "f16" else v


def reduce_add16(fn: Fn, v: str) -> str:
    """_mm512_reduce_add_ps in GCC's order: (8 + 8), (4 + 4), then (0 + 2) + (1 + 3)."""
    hi = fn.v(f"shufflevector {V16F} {v}, {V16F} poison, {mask(range(8, 16))}")
    lo = fn.v(f"shufflevector {V16F} {v}, {V16F} poison, {mask(range(8))}")
    h8 = fn.v(f"fadd {V8F} {hi}, {lo}")
    hi = fn.v(f"shufflevector {V8F} {h8}, {V8F} poison, {mask(range(4, 8))}")
    lo = fn.v(f"shufflevector {V8F} {h8}, {V8F} poison, {mask(range(4))}")
    h4 = fn.v(f"fadd {V4F} {hi}, {lo}")
    e = [fn.v(f"extractelement {V4F} {h4}, i64 {i}") for i in range(4)]
    return fn.v(f"fadd float {fn.v(f'fadd float {e[0]}, {e[2]}')}, {fn.v(f'fadd float {e[1]}, {e[3]}')}")


def reduce_lanes(fn: Fn, parts: list[str], decode: bool) -> str:
    """The cross-lane sum of dot_f16's accumulator, elementwise over vectors: parts[l] holds lane
    l (16 lanes, or 64 when decoding: first (0+32) + (16+48)), then reduce_add16's tree."""
    if decode:
        parts = [fn.v(f"fadd {V16F} {fn.v(f'fadd {V16F} {parts[l]}, {parts[32 + l]}')}, "
                      f"{fn.v(f'fadd {V16F} {parts[16 + l]}, {parts[48 + l]}')}") for l in range(16)]
    h8 = [fn.v(f"fadd {V16F} {parts[8 + i]}, {parts[i]}") for i in range(8)]
    h4 = [fn.v(f"fadd {V16F} {h8[4 + i]}, {h8[i]}") for i in range(4)]
    return fn.v(f"fadd {V16F} {fn.v(f'fadd {V16F} {h4[0]}, {h4[2]}')}, {fn.v(f'fadd {V16F} {h4[1]}, {h4[3]}')}")


def v_expf(fn: Fn, x: str) -> str:
    """ggml_v_expf on <16 x float>, the same float32 operations (fma where it has fma); the final
    scalef as an exact multiply by powers of two (one rounding, also for subnormal results)."""
    c1, c2, c3, c4, c5 = (f"splat (float {flt(float.fromhex(h))})" for h in _EXP)
    r = splatf(12582912.0)
    n = fn.v(f"fsub {V16F} {fma16(fn, x, splatf(float.fromhex('0x1.715476p+0')), r)}, {r}")
    nn = fn.v(f"fneg {V16F} {n}")
    b = fma16(fn, nn, splatf(float.fromhex("0x1.7f7d1cp-20")), fma16(fn, nn, splatf(float.fromhex("0x1.62e4p-1")), x))
    u = fn.v(f"fmul {V16F} {b}, {b}")
    j = fma16(fn, fma16(fn, fma16(fn, c5, b, c4), u, fma16(fn, c3, b, c2)), u, fma16(fn, c1, b, splatf(1.0)))
    an = fn.call(V16F, "llvm.fabs.v16f32", [f"{V16F} {n}"], V16F)
    small = fn.v(f"fcmp ole {V16F} {an}, {splatf(192.0)}")          # false for NaN too
    V16I = vec(16, "i32")
    ni = fn.v(f"fptosi {V16F} {fn.v(f'select <16 x i1> {small}, {V16F} {n}, {V16F} zeroinitializer')} to {V16I}")
    # j * 2^n: first by 2^(n -/+ 100) when |n| > 126 (exact: j is near 1), then by 2^(+/-100)
    lo = fn.v(f"icmp slt {V16I} {ni}, splat (i32 -126)")
    hi = fn.v(f"icmp sgt {V16I} {ni}, splat (i32 127)")
    n1 = fn.v(f"select <16 x i1> {lo}, {V16I} {fn.v(f'add {V16I} {ni}, splat (i32 100)')}, {V16I} {ni}")
    n1 = fn.v(f"select <16 x i1> {hi}, {V16I} {fn.v(f'sub {V16I} {n1}, splat (i32 100)')}, {V16I} {n1}")
    biased = fn.v(f"add {V16I} {n1}, splat (i32 127)")
    p1 = fn.v(f"bitcast {V16I} {fn.v(f'shl {V16I} {biased}, splat (i32 23)')} to {V16F}")
    res = fn.v(f"fmul {V16F} {j}, {p1}")
    adj = fn.v(f"select <16 x i1> {lo}, {V16F} {splatf(2.0 ** -100)}, {V16F} {splatf(1.0)}")
    adj = fn.v(f"select <16 x i1> {hi}, {V16F} {splatf(2.0 ** 100)}, {V16F} {adj}")
    res = fn.v(f"fmul {V16F} {res}, {adj}")
    neg = fn.v(f"fcmp ole {V16F} {n}, zeroinitializer")
    big = fn.v(f"select <16 x i1> {neg}, {V16F} zeroinitializer, {V16F} {splatf(float('inf'))}")
    return fn.v(f"select <16 x i1> {small}, {V16F} {res}, {V16F} {big}")


def _row(fn: Fn, r: str, a: dict, dk: int, dv: int, decode: bool, kv: str) -> None:
    step = 64 if decode else 16
    esz = KV_BYTES[kv]
    hq, hkv, ring = a["hq"], a["hkv"], a["R"]
    t = fn.v(f"sdiv i64 {r}, {hq}")
    h = fn.v(f"srem i64 {r}, {hq}")
    hk = fn.v(f"sdiv i64 {h}, {fn.v(f'sdiv i64 {hq}, {hkv}')}")
    qp = fn.load("i64", fn.gep(a["qpos"], fn.v(f"shl i64 {t}, 3")), 8)
    kb = fn.load("i64", fn.gep(a["kbeg"], fn.v(f"shl i64 {t}, 3")), 8)
    a0 = fn.v(f"and i64 {kb}, -64")
    span = fn.v(f"add i64 {fn.v(f'sub i64 {qp}, {a0}')}, 1")                 # scratch index = pos - a0
    span_p = fn.v(f"and i64 {fn.v(f'add i64 {span}, 63')}, -64")
    qrow = fn.gep(a["q"], fn.v(f"mul i64 {r}, {4 * dk}"))
    q16 = [f16_round(fn, fn.load(V16F, fn.gep(qrow, str(64 * j)), 4), kv) for j in range(dk // 16)]
    s = a["scratch"]
    with fn.loop("0", span_p, step=16, stem="fill") as F:
        fn.store(V16F, splatf(float("-inf")), fn.gep(s, fn.v(f"shl i64 {F.i}, 2")), 64)
    kstride, vstride = fn.v(f"mul i64 {hkv}, {esz * dk}"), fn.v(f"mul i64 {hkv}, {esz * dv}")
    kh, vh = fn.gep(a["k"], fn.v(f"mul i64 {hk}, {esz * dk}")), fn.gep(a["v"], fn.v(f"mul i64 {hk}, {esz * dv}"))
    slot0 = fn.v(f"urem i64 {kb}, {ring}")
    stop = fn.v(f"add i64 {qp}, 1")
    # scores: kq[pos] = dot * scale, and their maximum
    with fn.loop(kb, stop, stem="kq") as K:
        mx = K.carry("float", flt(float("-inf")))
        slot = K.carry("i64", slot0)
        krow = fn.gep(kh, fn.v(f"mul i64 {slot}, {kstride}"))
        kr = [load16(fn, fn.gep(krow, str(16 * esz * j)), kv) for j in range(dk // 16)]
        if decode:      # 4 accumulators over steps of 64, then (0 + 2) + (1 + 3)
            acc = ["zeroinitializer"] * 4
            for j in range(dk // 16):
                acc[j % 4] = fma16(fn, q16[j], kr[j], acc[j % 4])
            acc = fn.v(f"fadd {V16F} {fn.v(f'fadd {V16F} {acc[0]}, {acc[2]}')}, {fn.v(f'fadd {V16F} {acc[1]}, {acc[3]}')}")
        else:
            acc = "zeroinitializer"
            for j in range(dk // 16):
                acc = fma16(fn, q16[j], kr[j], acc)
        kq = fn.v(f"fmul float {reduce_add16(fn, acc)}, {a['scale']}")
        fn.store("float", kq, fn.gep(s, fn.v(f"shl i64 {fn.v(f'sub i64 {K.i}, {a0}')}, 2")), 4)
        K.set(mx, fn.call("float", "llvm.maxnum.f32", [f"float {mx}", f"float {kq}"], "float, float"))
        nxt = fn.v(f"add i64 {slot}, 1")
        K.set(slot, fn.v(f"select i1 {fn.v(f'icmp eq i64 {nxt}, {ring}')}, i64 0, i64 {nxt}"))
    # softmax: e = expf(kq - max) by 16-groups, each group's sum added in double
    mxv = fn.splat(16, "float", mx)
    with fn.loop("0", span_p, step=16, stem="sm") as S:
        tot = S.carry("double", "0.0")
        ptr = fn.gep(s, fn.v(f"shl i64 {S.i}, 2"))
        e = v_expf(fn, fn.v(f"fsub {V16F} {fn.load(V16F, ptr, 64)}, {mxv}"))
        fn.store(V16F, e, ptr, 64)
        S.set(tot, fn.v(f"fadd double {tot}, {fn.v(f'fpext float {reduce_add16(fn, e)} to double')}"))
    inv = fn.v(f"fptrunc double {fn.v(f'fdiv double 1.0, {tot}')} to float")
    invv = fn.splat(16, "float", inv)
    with fn.loop("0", span_p, step=16, stem="pr") as S:
        ptr = fn.gep(s, fn.v(f"shl i64 {S.i}, 2"))
        fn.store(V16F, f16_round(fn, fn.v(f"fmul {V16F} {fn.load(V16F, ptr, 64)}, {invv}"), kv), ptr, 64)
    # out = sum_pos p[pos] v[pos]: lane l takes the visible positions == l (mod step), in order
    off = fn.v(f"sub i64 {kb}, {a0}")                                          # 0..63
    acc_buf = a["accbuf"]
    with fn.loop("0", str(step), stem="ln") as Ln:
        behind = fn.call("i64", "llvm.smax.i64", [f"i64 {fn.v(f'sub i64 {off}, {Ln.i}')}", "i64 0"], "i64, i64")
        skip = fn.v(f"and i64 {fn.v(f'add i64 {behind}, {step - 1}')}, {-step}")
        i0 = fn.v(f"add i64 {Ln.i}, {skip}")
        pos0 = fn.v(f"add i64 {a0}, {i0}")
        vslot0 = fn.v(f"urem i64 {pos0}, {ring}")
        with fn.loop(i0, span, step=step, stem="pv") as P:
            accs = [P.carry(V16F, "zeroinitializer") for _ in range(dv // 16)]
            vslot = P.carry("i64", vslot0)
            pv = fn.load("float", fn.gep(s, fn.v(f"shl i64 {P.i}, 2")), 4)
            pvv = fn.splat(16, "float", pv)
            vrow = fn.gep(vh, fn.v(f"mul i64 {vslot}, {vstride}"))
            for j in range(dv // 16):
                P.set(accs[j], fma16(fn, pvv, load16(fn, fn.gep(vrow, str(16 * esz * j)), kv), accs[j]))
            nxt = fn.v(f"add i64 {vslot}, {step}")
            wrap = fn.v(f"icmp sge i64 {nxt}, {ring}")
            P.set(vslot, fn.v(f"select i1 {wrap}, i64 {fn.v(f'sub i64 {nxt}, {ring}')}, i64 {nxt}"))
        lrow = fn.gep(acc_buf, fn.v(f"mul i64 {Ln.i}, {4 * dv}"))
        for j in range(dv // 16):
            fn.store(V16F, accs[j], fn.gep(lrow, str(64 * j)), 64)
    orow = fn.gep("%out", fn.v(f"mul i64 {r}, {4 * dv}"))
    for j in range(dv // 16):
        parts = [fn.load(V16F, fn.gep(acc_buf, str(4 * (l * dv + 16 * j))), 64) for l in range(step)]
        fn.store(V16F, reduce_lanes(fn, parts, decode), fn.gep(orow, str(64 * j)), 4)


@functools.cache
def attention_ir(dk: int, dv: int, decode: bool, kv: str, cpu: CpuInfo) -> str:
    step = 64 if decode else 16
    mt = ModuleText(cpu)
    fn = mt.function(f"define void @{symbol(dk, dv, decode, kv)}(ptr noalias %p, ptr %unused, ptr noalias %out, "
                     "i64 %r0, i64 %r1, i64 %n) nounwind")
    names = {P_Q: "q", P_K: "k", P_V: "v", P_QPOS: "qpos", P_KBEG: "kbeg", P_R: "R", P_HQ: "hq", P_HKV: "hkv",
             P_SCRATCH: "nscratch"}
    a = {name: fn.load("ptr" if i < P_R else "i64", fn.gep("%p", str(8 * i)), 8) for i, name in names.items()}
    a["scale"] = fn.load("float", fn.gep("%p", str(8 * P_SCALE)), 4)
    a["scratch"] = fn.v(f"alloca float, i64 {a['nscratch']}, align 64")
    a["accbuf"] = fn.v(f"alloca float, i64 {step * dv}, align 64")
    with fn.loop("%r0", "%r1", stem="row") as R:
        _row(fn, R.i, a, dk, dv, decode, kv)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
