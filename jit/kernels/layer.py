"""One decode step of a llama-family block as ONE native call (llama2.c's forward, per layer):

    void llama_layer(const i64 *P)

    h = rms_norm(x) * attn_norm                       -> the q/k/v linears' shared input
    q, k, v = linear_group(job_qkv)                  (quantize h once, the 3 matvecs as one pool job)
    q, k = rope(q), rope(k)                           (cos/sin of this position, ggml's fma order)
    kcache[pos], vcache[pos] = k, v                   (as the cache stores them: F16 halves or F32)
    a = attention kernel on the pool over the heads   (its own param block, set per token)
    x += linear_one(lo_o)                             (its input is a)
    h = rms_norm(x) * ffn_norm
    g = silu(gate) * up, gate/up = linear_group(job_ffn)  (one pool job; each row chunk ends
                                                        with its ggml_vec_swiglu_f32, kernels/group.py)
    x += linear_one(lo_down)                          (its input is g)

Every step is the float32 arithmetic of the per-op path (ops.rms_norm, ggml_cpu.rotate, the same
linear and attention kernels), so a planned decode gives that path's bits. P: i64 slots, L_* below;
buffers are allocated once by jit.plan (llama2.c's RunState).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ..cpu import CpuInfo
from .attention import V16F, flt, splatf, v_expf
from .emit import Fn, ModuleText, vec

SLOTS = ("x", "attn_norm", "ffn_norm", "h", "job_qkv", "lo_o", "job_ffn", "lo_down",
         "q", "k", "v", "cos", "sin", "krow", "vrow", "attn_p", "attn_fn", "run", "ctx", "att", "attn_chunk",
         "o", "down", "linear_one", "linear_group")
L = {name: i for i, name in enumerate(SLOTS)}
# the output head after the last layer (plan_head): x [n_embd] -> rms_norm * norm -> xn, then
# linear_one(lo) (xn -> logits); H null: no head
HEAD = ("x", "norm", "xn", "linear_one", "lo")


@dataclass(frozen=True)
class LayerShape:
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_dim: int
    n_ff: int
    eps: float
    neox: bool
    kv: str = "f16"          # KV cache type: "f16" (2-byte halves) | "f32"


def supported(s: LayerShape) -> bool:
    return (s.n_embd % 16 == 0 and s.n_ff % 16 == 0 and s.head_dim % 16 == 0 and s.rope_dim % 2 == 0
            and s.rope_dim <= s.head_dim)


def rms_norm(fn: Fn, x: str, w: str, out: str, n: int, eps: float) -> None:
    """out = x * (1 / sqrt(f32(sum_f64(x*x) / n) + eps)) * w  (ops.rms_norm's roundings)."""
    V8D = vec(8, "double")
    with fn.loop("0", str(n), step=16, stem="ss") as S:
        acc = S.carry(V8D, "zeroinitializer")
        v = fn.load(V16F, fn.gep(x, fn.v(f"shl i64 {S.i}, 2")), 4)
        sq = fn.v(f"fmul {V16F} {v}, {v}")
        d = fn.v(f"fpext {V16F} {sq} to {vec(16, 'double')}")
        lo = fn.v(f"shufflevector {vec(16, 'double')} {d}, {vec(16, 'double')} poison, <8 x i32> "
                  "<i32 0, i32 1, i32 2, i32 3, i32 4, i32 5, i32 6, i32 7>")
        hi = fn.v(f"shufflevector {vec(16, 'double')} {d}, {vec(16, 'double')} poison, <8 x i32> "
                  "<i32 8, i32 9, i32 10, i32 11, i32 12, i32 13, i32 14, i32 15>")
        S.set(acc, fn.v(f"fadd {V8D} {fn.v(f'fadd {V8D} {acc}, {lo}')}, {hi}"))
    tot = fn.call("double", "llvm.vector.reduce.fadd.v8f64", ["double 0.0", f"{V8D} {acc}"], f"double, {V8D}")
    ms = fn.v(f"fptrunc double {fn.v(f'fdiv double {tot}, {float(n)!r}')} to float")
    r = fn.call("float", "llvm.sqrt.f32", [f"float {fn.v(f'fadd float {ms}, {flt(eps)}')}"], "float")
    sc = fn.splat(16, "float", fn.v(f"fdiv float 1.0, {r}"))
    with fn.loop("0", str(n), step=16, stem="sn") as S:
        off = fn.v(f"shl i64 {S.i}, 2")
        y = fn.v(f"fmul {V16F} {fn.load(V16F, fn.gep(x, off), 4)}, {sc}")
        y = fn.v(f"fmul {V16F} {y}, {fn.load(V16F, fn.gep(w, off), 4)}")
        fn.store(V16F, y, fn.gep(out, off), 4)


def rope(fn: Fn, buf: str, cos: str, sin: str, heads: int, s: LayerShape) -> None:
    """ggml_cpu.rotate on each head: pairs (2i, 2i+1), or (i, i + rope_dim/2) with neox."""
    half = s.rope_dim // 2
    with fn.loop("0", str(heads), stem="rh") as H:
        base = fn.gep(buf, fn.v(f"mul i64 {H.i}, {4 * s.head_dim}"))
        with fn.loop("0", str(half), stem="rp") as P:
            if s.neox:
                i0, i1 = P.i, fn.v(f"add i64 {P.i}, {half}")
            else:
                i0 = fn.v(f"shl i64 {P.i}, 1")
                i1 = fn.v(f"add i64 {i0}, 1")
            p0, p1 = fn.gep(base, fn.v(f"shl i64 {i0}, 2")), fn.gep(base, fn.v(f"shl i64 {i1}, 2"))
            x0, x1 = fn.load("float", p0, 4), fn.load("float", p1, 4)
            c = fn.load("float", fn.gep(cos, fn.v(f"shl i64 {P.i}, 2")), 4)
            sn = fn.load("float", fn.gep(sin, fn.v(f"shl i64 {P.i}, 2")), 4)
            ms = fn.v(f"fneg float {fn.v(f'fmul float {x1}, {sn}')}")
            y0 = fn.call("float", "llvm.fma.f32", [f"float {x0}", f"float {c}", f"float {ms}"], "float, float, float")
            y1 = fn.call("float", "llvm.fma.f32", [f"float {x0}", f"float {sn}", f"float {fn.v(f'fmul float {x1}, {c}')}"],
                         "float, float, float")
            fn.store("float", y0, p0, 4)
            fn.store("float", y1, p1, 4)


def kv_store(fn: Fn, src: str, dst: str, n: int, kv: str) -> None:
    """A cache row: src [n] f32 -> dst [n] halves (round to nearest even; vcvtps2ph with F16C,
    emit.float_to_half_v without) or floats."""
    with fn.loop("0", str(n), step=16, stem="hs") as S:
        x = fn.load(V16F, fn.gep(src, fn.v(f"shl i64 {S.i}, 2")), 4)
        if kv == "f16":
            fn.store(vec(16, "i16"), fn.float_to_half_v(x, 16), fn.gep(dst, fn.v(f"shl i64 {S.i}, 1")), 2)
        else:
            fn.store(V16F, x, fn.gep(dst, fn.v(f"shl i64 {S.i}, 2")), 4)


def add_into(fn: Fn, x: str, y: str, n: int) -> None:
    with fn.loop("0", str(n), step=16, stem="ad") as S:
        off = fn.v(f"shl i64 {S.i}, 2")
        px = fn.gep(x, off)
        fn.store(V16F, fn.v(f"fadd {V16F} {fn.load(V16F, px, 4)}, {fn.load(V16F, fn.gep(y, off), 4)}"), px, 4)


def swiglu(fn: Fn, g: str, u: str, out: str, n, limit: float = 0.0) -> None:
    """out = silu(g) * u over n floats (n % 16 == 0; ggml_vec_swiglu_f32); with limit > 1e-6,
    Step-3.5's clamp (models/moe.swiglu): min(silu(g), limit) * clip(u, -limit, limit), NaN
    passing through as numpy's minimum and clip pass it."""
    with fn.loop("0", str(n), step=16, stem="sw") as S:
        off = fn.v(f"shl i64 {S.i}, 2")
        x = fn.load(V16F, fn.gep(g, off), 4)
        e = v_expf(fn, fn.v(f"fsub {V16F} zeroinitializer, {x}"))
        sl = fn.v(f"fdiv {V16F} {x}, {fn.v(f'fadd {V16F} {splatf(1.0)}, {e}')}")
        up = fn.load(V16F, fn.gep(u, off), 4)
        if limit > 1e-6:
            lim, nlim = splatf(limit), splatf(-limit)
            sl = fn.v(f"select <16 x i1> {fn.v(f'fcmp olt {V16F} {lim}, {sl}')}, {V16F} {lim}, {V16F} {sl}")
            up = fn.v(f"select <16 x i1> {fn.v(f'fcmp olt {V16F} {up}, {nlim}')}, {V16F} {nlim}, {V16F} {up}")
            up = fn.v(f"select <16 x i1> {fn.v(f'fcmp olt {V16F} {lim}, {up}')}, {V16F} {lim}, {V16F} {up}")
        fn.store(V16F, fn.v(f"fmul {V16F} {sl}, {up}"), fn.gep(out, off), 4)


@functools.cache
def llama_layer_ir(s: LayerShape, cpu: CpuInfo) -> str:
    """llama_layer(P), plan_head(H) and llama_layers(P, n, H): a whole token."""
    mt = ModuleText(cpu)
    fn = mt.function("define void @llama_layer(ptr noalias %P) nounwind")
    a = {k: fn.load("i64" if k == "attn_chunk" else "ptr", fn.gep("%P", str(8 * i)), 8) for k, i in L.items()}

    def lin(name):
        fn.do(f"call void {a['linear_one']}(ptr {a[name]})")

    kv_dim = s.n_head_kv * s.head_dim
    rms_norm(fn, a["x"], a["attn_norm"], a["h"], s.n_embd, s.eps)
    fn.do(f"call void {a['linear_group']}(ptr {a['job_qkv']})")
    rope(fn, a["q"], a["cos"], a["sin"], s.n_head, s)
    rope(fn, a["k"], a["cos"], a["sin"], s.n_head_kv, s)
    kv_store(fn, a["k"], a["krow"], kv_dim, s.kv)
    kv_store(fn, a["v"], a["vrow"], kv_dim, s.kv)
    fn.do(f"call void {a['run']}(ptr {a['ctx']}, ptr {a['attn_fn']}, ptr {a['attn_p']}, ptr null, ptr {a['att']}, "
          f"i64 {s.n_head}, i64 0, i64 {a['attn_chunk']})")
    lin("lo_o")
    add_into(fn, a["x"], a["o"], s.n_embd)
    rms_norm(fn, a["x"], a["ffn_norm"], a["h"], s.n_embd, s.eps)
    fn.do(f"call void {a['linear_group']}(ptr {a['job_ffn']})")
    lin("lo_down")
    add_into(fn, a["x"], a["down"], s.n_embd)
    fn.do("ret void")
    mt.add(fn)
    head_ir(mt, s.n_embd, s.eps)
    token_ir(mt, "llama_layers", "llama_layer", len(SLOTS))
    return mt.text()


def head_ir(mt: ModuleText, n_embd: int, eps: float) -> None:
    """plan_head(H): the final norm and the output matrix of a decode plan (HEAD slots)."""
    fn = mt.function("define void @plan_head(ptr noalias %H) nounwind")
    a = {k: fn.load("ptr", fn.gep("%H", str(8 * i)), 8) for i, k in enumerate(HEAD)}
    rms_norm(fn, a["x"], a["norm"], a["xn"], n_embd, eps)
    fn.do(f"call void {a['linear_one']}(ptr {a['lo']})")
    fn.do("ret void")
    mt.add(fn)


def token_ir(mt: ModuleText, name: str, layer: str, n_slots: int) -> None:
    """name(P, n, H): the n layers (P advancing by one block each), then the head if H is not null."""
    fn = mt.function(f"define void @{name}(ptr %P, i64 %n, ptr %H) nounwind")
    with fn.loop("0", "%n", stem="ly") as Y:
        fn.do(f"call void @{layer}(ptr {fn.gep('%P', fn.v(f'mul i64 {Y.i}, {8 * n_slots}'))})")
    _head_then_return(mt, fn)


def _head_then_return(mt: ModuleText, fn: Fn) -> None:
    """The end of a token function: plan_head(H) unless H is null."""
    has = fn.v("icmp ne ptr %H, null")
    fn.do(f"br i1 {has}, label %head, label %done")
    fn.label("head")
    fn.do("call void @plan_head(ptr %H)")
    fn.do("br label %done")
    fn.label("done")
    fn.do("ret void")
    mt.add(fn)


@functools.cache
def indirect_token_ir(name: str, n_slots: int, n_embd: int, eps: float, cpu: CpuInfo) -> str:
    """name(P, n, H) for plans whose layers differ in kind: layer il runs the function in its
    block's first slot, then the head (head_ir) if H is not null."""
    mt = ModuleText(cpu)
    head_ir(mt, n_embd, eps)
    fn = mt.function(f"define void @{name}(ptr %P, i64 %n, ptr %H) nounwind")
    with fn.loop("0", "%n", stem="ly") as Y:
        p = fn.gep("%P", fn.v(f"mul i64 {Y.i}, {8 * n_slots}"))
        fn.do(f"call void {fn.load('ptr', p, 8)}(ptr {p})")
    _head_then_return(mt, fn)
    return mt.text()
