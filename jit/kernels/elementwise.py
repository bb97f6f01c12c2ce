"""Elementwise kernels of a layer, in llama.cpp's float32 operations (numpy twins in ggml_cpu):

    void swiglu(const float *g, const float *u, float *out, i64 n)
        out = g / (1 + ggml_v_expf(-g)) * u     ggml_vec_swiglu_f32 (AVX512 path), n % 16 == 0
    void gelu_mul(const float *g, const float *u, float *out, i64 n, const float *table)
        out = gelu_f16(g) * u                   GGML_GELU_FP16: table[f16 bits] (gemma_layer.gelu_mul)
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .emit import ModuleText
from .layer import swiglu


@functools.cache
def elementwise_ir(cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @swiglu(ptr noalias %g, ptr noalias %u, ptr noalias %out, i64 %n) nounwind")
    swiglu(fn, "%g", "%u", "%out", "%n")
    fn.do("ret void")
    mt.add(fn)
    from .gemma_layer import gelu_mul
    fn = mt.function("define void @gelu_mul(ptr noalias %g, ptr noalias %u, ptr noalias %out, i64 %n, "
                     "ptr noalias %table) nounwind")
    nv = fn.v("and i64 %n, -16")
    gelu_mul(fn, "%g", "%u", "%out", "%table", nv)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()


@functools.cache
def norm_rope_ir(n: int, eps: float, head_dim: int, rope_dim: int, neox: bool, cpu: CpuInfo) -> str:
    """Batch forms of the decode plan's RMSNorm and RoPE (layer.py), the per-op path's roundings:

        void rms_norm_rows(const float *x, const float *w, float *out, i64 rows)   rows of n values
        void rope_rows(float *x, const float *cos, const float *sin, i64 n_tok, i64 heads)
            x [n_tok, heads, head_dim] in place; cos/sin [n_tok, rope_dim/2]
    """
    from .layer import LayerShape, rms_norm, rope

    mt = ModuleText(cpu)
    fn = mt.function("define void @rms_norm_rows(ptr %x, ptr %w, ptr %out, i64 %rows) nounwind")
    with fn.loop("0", "%rows", stem="rr") as R:
        off = fn.v(f"mul i64 {R.i}, {4 * n}")
        rms_norm(fn, fn.gep("%x", off), "%w", fn.gep("%out", off), n, eps)
    fn.do("ret void")
    mt.add(fn)
    if rope_dim and rope_dim % 2 == 0 and rope_dim <= head_dim:
        shape = LayerShape(0, 0, 0, head_dim, rope_dim, 0, eps, neox)
        fn = mt.function("define void @rope_rows(ptr %x, ptr %cos, ptr %sin, i64 %ntok, i64 %heads) nounwind")
        with fn.loop("0", "%ntok", stem="rt") as R:
            xr = fn.gep("%x", fn.v(f"mul i64 {R.i}, {fn.v(f'mul i64 %heads, {4 * head_dim}')}"))
            cr = fn.v(f"mul i64 {R.i}, {2 * rope_dim}")
            rope(fn, xr, fn.gep("%cos", cr), fn.gep("%sin", cr), "%heads", shape)
        fn.do("ret void")
        mt.add(fn)
    return mt.text()
