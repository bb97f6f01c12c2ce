"""Elementwise kernels of a layer, in llama.cpp's float32 operations (numpy twins in ggml_cpu):

    void swiglu(const float *g, const float *u, float *out, i64 n)
        out = g / (1 + ggml_v_expf(-g)) * u     ggml_vec_swiglu_f32 (AVX512 path), n % 16 == 0
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .attention import V16F, splatf, v_expf
from .emit import ModuleText


@functools.cache
def elementwise_ir(cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @swiglu(ptr noalias %g, ptr noalias %u, ptr noalias %out, i64 %n) nounwind")
    with fn.loop("0", "%n", step=16, stem="sw") as L:
        off = fn.v(f"shl i64 {L.i}, 2")
        x = fn.load(V16F, fn.gep("%g", off), 4)
        e = v_expf(fn, fn.v(f"fsub {V16F} zeroinitializer, {x}"))
        s = fn.v(f"fdiv {V16F} {x}, {fn.v(f'fadd {V16F} {splatf(1.0)}, {e}')}")
        y = fn.v(f"fmul {V16F} {s}, {fn.load(V16F, fn.gep('%u', off), 4)}")
        fn.store(V16F, y, fn.gep("%out", off), 4)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
