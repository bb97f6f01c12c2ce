"""Activation quantizers: float32 x[n] -> the 8-bit blocks the matvec kernels consume.

As llama.cpp's x86 CPU backend computes them (ggml-cpu/arch/x86/quants.c, AVX2 path, which is
what a llama.cpp build on any AVX2 machine runs; ggml-quants.c *_ref for Q8_K):
  Q8_0  32-blocks, 34 B: f16 d, i8 qs[32].   d = amax/127, q = roundeven(x * (127/amax))
  Q8_1  32-blocks, 36 B: f16 d, f16 s, i8 qs[32]; s = f16(d * sum(q))
  (Q8_0 and Q8_1 blocks are followed by 8 bytes per block: Q8_0 f32 d, i32 sum(q) (the repacked
  kernels' offset term, x8.py); Q8_1 f32 d, f32 s)
  Q8_K  256-blocks, 292 B: f32 d, i8 qs[256], i16 bsums[16] (sums of 16 consecutive q).
        max = the x of largest |x| (first one), iscale = -127/max, q = min(127, roundeven(iscale*x)),
        d = 1/iscale; an all-zero block stores d = 0, q = 0, bsums = 0
  Q8_K_il  Q8_K with the qs of each block interleaved (IL_ORDER below), for the Q4_K batch kernels
  F16   x converted to half (round to nearest even), the vec_dot_type of F16 weights.
Signature: void quantize_<fmt>(const float *x, void *out, i64 n); n a multiple of the block.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .emit import ModuleText, mask, vec

BLOCK = {"q8_0": (32, 34), "q8_1": (32, 36), "q8_K": (256, 292), "q8_K_il": (256, 292), "f16": (1, 2), "f32": (1, 4), "bf16": (1, 4)}
# After the blocks, Q8_0 and Q8_1 activations carry their f16 scales again as f32 (Q8_0: d and
# the integer sum of q; Q8_1: d, s per block), so the matvec kernels need not convert them once
# per weight row.
AUX = {"q8_0": 8, "q8_1": 8}


def activation_bytes(fmt: str, n: int) -> int:
    """Bytes of the activation buffer for n values in format fmt (blocks + f32 scales)."""
    bs, bb = BLOCK[fmt]
    return n // bs * (bb + AUX.get(fmt, 0))


def _round_to_i8(fn, n: int, v: str, scale: str, lo: int, hi: int) -> str:
    """<n x float> v * scale, rounded to nearest even, clamped to [lo, hi], as <n x i32>."""
    vf, vi = vec(n, "float"), vec(n, "i32")
    s = fn.splat(n, "float", scale)
    m = fn.v(f"fmul {vf} {v}, {s}")
    r = fn.call(vf, f"llvm.roundeven.v{n}f32", [f"{vf} {m}"], vf)
    i = fn.v(f"fptosi {vf} {r} to {vi}")
    i = fn.call(vi, f"llvm.smin.v{n}i32", [f"{vi} {i}", f"{vi} splat (i32 {hi})"], f"{vi}, {vi}")
    if lo is not None:
        i = fn.call(vi, f"llvm.smax.v{n}i32", [f"{vi} {i}", f"{vi} splat (i32 {lo})"], f"{vi}, {vi}")
    return i


def _q8_32(mt: ModuleText, with_sum: bool) -> None:
    name, (_, bb) = ("q8_1", BLOCK["q8_1"]) if with_sum else ("q8_0", BLOCK["q8_0"])
    fn = mt.function(f"define void @quantize_{name}(ptr noalias %x, ptr noalias %out, i64 %n) nounwind")
    nb = fn.v("sdiv i64 %n, 32")
    vf = vec(32, "float")
    with fn.loop("0", nb, stem="blk") as L:
        xo = fn.v(f"mul i64 {L.i}, 128")
        v = fn.load(vf, fn.gep("%x", xo), 4)
        a = fn.call(vf, "llvm.fabs.v32f32", [f"{vf} {v}"], vf)
        amax = fn.call("float", "llvm.vector.reduce.fmax.v32f32", [f"{vf} {a}"], vf)
        d = fn.v(f"fdiv float {amax}, 127.0")
        nz = fn.v(f"fcmp une float {amax}, 0.0")
        inv = fn.v(f"fdiv float 127.0, {amax}")
        inv = fn.v(f"select i1 {nz}, float {inv}, float 0.0")
        q = _round_to_i8(fn, 32, v, inv, -128, 127)
        ob = fn.gep("%out", fn.v(f"mul i64 {L.i}, {bb}"))
        aux = fn.gep(fn.gep("%out", fn.v(f"mul i64 {nb}, {bb}")), fn.v(f"mul i64 {L.i}, {AUX[name]}"))
        dh = fn.float_to_half(d)
        fn.store("i16", dh, ob)
        fn.store("float", fn.half_to_float(dh), aux)
        q8 = fn.v(f"trunc <32 x i32> {q} to <32 x i8>")
        s = fn.call("i32", "llvm.vector.reduce.add.v32i32", [f"<32 x i32> {q}"], "<32 x i32>")
        if with_sum:
            sf = fn.v(f"sitofp i32 {s} to float")
            sf = fn.v(f"fmul float {d}, {sf}")
            sh = fn.float_to_half(sf)
            fn.store("i16", sh, fn.gep(ob, "2"))
            fn.store("float", fn.half_to_float(sh), fn.gep(aux, "4"))
            fn.store("<32 x i8>", q8, fn.gep(ob, "4"))
        else:
            fn.store("i32", s, fn.gep(aux, "4"), 4)
            fn.store("<32 x i8>", q8, fn.gep(ob, "2"))
    fn.do("ret void")
    mt.add(fn)


# Q8_K_il (the Q4_K batch kernels' activations): Q8_K with qs in 8 slices of 32 bytes, slice k byte
# 4j + i = element 32j + 4k + i (bytes 4k..4k+3 of each 32-element sub-block j); d and bsums as Q8_K
IL_ORDER = [32 * j + 4 * k + i for k in range(8) for j in range(8) for i in range(4)]


def _q8_K(mt: ModuleText, interleave: bool = False) -> None:
    name = "q8_K_il" if interleave else "q8_K"
    fn = mt.function(f"define void @quantize_{name}(ptr noalias %x, ptr noalias %out, i64 %n) nounwind")
    nb = fn.v("sdiv i64 %n, 256")
    n = 256
    vf, vi = vec(n, "float"), vec(n, "i32")
    with fn.loop("0", nb, stem="blk") as L:
        v = fn.load(vf, fn.gep("%x", fn.v(f"mul i64 {L.i}, 1024")), 4)
        a = fn.call(vf, "llvm.fabs.v256f32", [f"{vf} {v}"], vf)
        amax = fn.call("float", "llvm.vector.reduce.fmax.v256f32", [f"{vf} {a}"], vf)
        zero = fn.v(f"fcmp oeq float {amax}, 0.0")
        # the first element whose |x| is the maximum: its signed value sets the scale
        at = fn.v(f"fcmp oeq {vf} {a}, {fn.splat(n, 'float', amax)}")
        iota = "<" + ", ".join(f"i32 {k}" for k in range(n)) + ">"
        idx = fn.v(f"select <{n} x i1> {at}, {vi} {iota}, {vi} splat (i32 {n})")
        first = fn.call("i32", "llvm.vector.reduce.umin.v256i32", [f"{vi} {idx}"], vi)
        first = fn.v(f"and i32 {first}, 255")
        mx = fn.v(f"extractelement {vf} {v}, i32 {first}")
        iscale = fn.v(f"fdiv float -127.0, {mx}")
        iscale = fn.v(f"select i1 {zero}, float 0.0, float {iscale}")
        q = _round_to_i8(fn, n, v, iscale, None, 127)
        d = fn.v(f"fdiv float 1.0, {iscale}")
        d = fn.v(f"select i1 {zero}, float 0.0, float {d}")
        ob = fn.gep("%out", fn.v(f"mul i64 {L.i}, 292"))
        fn.store("float", d, ob)
        q8 = fn.v(f"trunc {vi} {q} to {vec(n, 'i8')}")
        if interleave:
            q8 = fn.v(f"shufflevector {vec(n, 'i8')} {q8}, {vec(n, 'i8')} poison, {mask(IL_ORDER)}")
        fn.store(vec(n, "i8"), q8, fn.gep(ob, "4"))
        # bsums[j] = sum q[16j .. 16j+15]: slice k holds q[16j + k] in lane j; add the 16 slices
        s = None
        for k in range(16):
            part = fn.v(f"shufflevector {vi} {q}, {vi} poison, {mask(range(k, n, 16))}")
            s = part if s is None else fn.v(f"add <16 x i32> {s}, {part}")
        fn.store("<16 x i16>", fn.v(f"trunc <16 x i32> {s} to <16 x i16>"), fn.gep(ob, "260"))
    fn.do("ret void")
    mt.add(fn)


def _f16(mt: ModuleText) -> None:
    fn = mt.function("define void @quantize_f16(ptr noalias %x, ptr noalias %out, i64 %n) nounwind")
    with fn.loop("0", "%n", stem="el") as L:
        f = fn.load("float", fn.gep("%x", fn.v(f"shl i64 {L.i}, 2")), 4)
        fn.store("i16", fn.float_to_half(f), fn.gep("%out", fn.v(f"shl i64 {L.i}, 1")), 2)
    fn.do("ret void")
    mt.add(fn)


@functools.cache
def quantizers_ir(cpu: CpuInfo) -> str:
    """All activation quantizers in one module (they are small)."""
    mt = ModuleText(cpu)
    _q8_32(mt, with_sum=False)
    _q8_32(mt, with_sum=True)
    _q8_K(mt)
    _q8_K(mt, interleave=True)
    _f16(mt)
    return mt.text()
