"""One decode step of a Gemma 3 block as ONE native call (see layer.py for the llama block):

    void gemma_layer(const i64 *P)

    h = rms_norm(x) * attn_norm
    q, k, v = linear_group(job_qkv)                                  (one pool job, kernels/group.py)
    q, k = rms_norm(q_head) * q_norm, rms_norm(k_head) * k_norm     (per head)
    q = rope_neox(q) * attn_scale; k = rope_neox(k)                  (this layer's cos/sin)
    cache[slot], vcache[slot] = k, v  (slot = pos, or pos % ring; stored as the cache type: F16 or F32)
    a = attention kernel on the pool (window on sliding layers: its param block)
    x += rms_norm(linear_one(lo_o)) * post_attention_norm
    h = rms_norm(x) * ffn_norm
    g = gelu_f16(gate) * up, gate/up = linear_group(job_ffn)         (GGML_GELU_FP16: a table; one job)
    x += rms_norm(linear_one(lo_down)) * post_ffw_norm
    then (gemma_layers(P, n, H), with H) the final norm and the output matrix (layer.head_ir)

The float32 operations of inference/models/gemma3.py's per-op path (tested for equal bits).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ..cpu import CpuInfo
from .attention import V16F, splatf
from .emit import Fn, ModuleText, vec
from .layer import add_into, head_ir, kv_store, rms_norm, rope, token_ir

SLOTS = ("x", "attn_norm", "q_norm", "k_norm", "post_attn_norm", "ffn_norm", "post_ffw_norm", "h",
         "job_qkv", "lo_o", "job_ffn", "lo_down", "q", "k", "v", "cos", "sin", "krow", "vrow",
         "attn_p", "attn_fn", "run", "ctx", "att", "attn_chunk", "o", "down", "linear_one", "linear_group")
G = {name: i for i, name in enumerate(SLOTS)}


@dataclass(frozen=True)
class GemmaShape:
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_dim: int
    n_ff: int
    eps: float
    attn_scale: float
    neox: bool = True
    kv: str = "f16"          # KV cache type: "f16" (2-byte halves) | "f32"


def supported(s: GemmaShape) -> bool:
    return (s.n_embd % 16 == 0 and s.n_ff % 16 == 0 and s.head_dim % 16 == 0 and s.rope_dim % 2 == 0
            and s.rope_dim <= s.head_dim)


def scale_into(fn: Fn, buf: str, n: int, scale: float) -> None:
    with fn.loop("0", str(n), step=16, stem="sc") as S:
        p = fn.gep(buf, fn.v(f"shl i64 {S.i}, 2"))
        fn.store(V16F, fn.v(f"fmul {V16F} {fn.load(V16F, p, 4)}, {splatf(scale)}"), p, 4)


def gelu_mul(fn: Fn, gate: str, up: str, out: str, table: str, n) -> None:
    """out = gelu_f16(gate) * up: table[f16 bits of x] (F16-rounded gelu values), 0 at x <= -10,
    x itself at x >= 10 (ggml_cpu.geglu)."""
    V16I, V16P = vec(16, "i32"), vec(16, "ptr")
    fn.declare(f"declare {V16F} @llvm.masked.gather.v16f32.v16p0({V16P}, i32, <16 x i1>, {V16F})")
    with fn.loop("0", str(n), step=16, stem="ge") as S:
        off = fn.v(f"shl i64 {S.i}, 2")
        x = fn.load(V16F, fn.gep(gate, off), 4)
        h = fn.v(f"bitcast <16 x half> {fn.v(f'fptrunc {V16F} {x} to <16 x half>')} to <16 x i16>")
        idx = fn.v(f"zext <16 x i16> {h} to {V16I}")
        ptrs = fn.v(f"getelementptr inbounds float, ptr {table}, {V16I} {idx}")
        y = fn.v(f"call {V16F} @llvm.masked.gather.v16f32.v16p0({V16P} {ptrs}, i32 4, <16 x i1> splat (i1 true), "
                 f"{V16F} poison)")
        hi = fn.v(f"fcmp oge {V16F} {x}, {splatf(10.0)}")
        y = fn.v(f"select <16 x i1> {hi}, {V16F} {x}, {V16F} {y}")
        lo = fn.v(f"fcmp ole {V16F} {x}, {splatf(-10.0)}")
        y = fn.v(f"select <16 x i1> {lo}, {V16F} zeroinitializer, {V16F} {y}")
        fn.store(V16F, fn.v(f"fmul {V16F} {y}, {fn.load(V16F, fn.gep(up, off), 4)}"), fn.gep(out, off), 4)


def per_head_norm(fn: Fn, buf: str, w: str, heads: int, s) -> None:
    """RMSNorm of each of `heads` rows of s.head_dim in buf, in place, with one weight w (Gemma 3's and
    Step-3.5's q / k norms)."""
    with fn.loop("0", str(heads), stem="hn") as H:
        hp = fn.gep(buf, fn.v(f"mul i64 {H.i}, {4 * s.head_dim}"))
        rms_norm(fn, hp, w, hp, s.head_dim, s.eps)


@functools.cache
def gemma_layer_ir(s: GemmaShape, cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @gemma_layer(ptr noalias %P) nounwind")
    a = {k: fn.load("i64" if k == "attn_chunk" else "ptr", fn.gep("%P", str(8 * i)), 8) for k, i in G.items()}

    def lin(name):
        fn.do(f"call void {a['linear_one']}(ptr {a[name]})")

    kv_dim = s.n_head_kv * s.head_dim
    rms_norm(fn, a["x"], a["attn_norm"], a["h"], s.n_embd, s.eps)
    fn.do(f"call void {a['linear_group']}(ptr {a['job_qkv']})")
    per_head_norm(fn, a["q"], a["q_norm"], s.n_head, s)
    per_head_norm(fn, a["k"], a["k_norm"], s.n_head_kv, s)
    rope(fn, a["q"], a["cos"], a["sin"], s.n_head, s)
    rope(fn, a["k"], a["cos"], a["sin"], s.n_head_kv, s)
    scale_into(fn, a["q"], s.n_head * s.head_dim, s.attn_scale)
    kv_store(fn, a["k"], a["krow"], kv_dim, s.kv)
    kv_store(fn, a["v"], a["vrow"], kv_dim, s.kv)
    fn.do(f"call void {a['run']}(ptr {a['ctx']}, ptr {a['attn_fn']}, ptr {a['attn_p']}, ptr null, ptr {a['att']}, "
          f"i64 {s.n_head}, i64 0, i64 {a['attn_chunk']})")
    lin("lo_o")
    rms_norm(fn, a["o"], a["post_attn_norm"], a["o"], s.n_embd, s.eps)
    add_into(fn, a["x"], a["o"], s.n_embd)
    rms_norm(fn, a["x"], a["ffn_norm"], a["h"], s.n_embd, s.eps)
    fn.do(f"call void {a['linear_group']}(ptr {a['job_ffn']})")     # gate, up, g (kernels/group.py)
    lin("lo_down")
    rms_norm(fn, a["down"], a["post_ffw_norm"], a["down"], s.n_embd, s.eps)
    add_into(fn, a["x"], a["down"], s.n_embd)
    fn.do("ret void")
    mt.add(fn)

    head_ir(mt, s.n_embd, s.eps)
    token_ir(mt, "gemma_layers", "gemma_layer", len(SLOTS))
    return mt.text()
