"""One decode step of a Step-3.5 block as ONE native call (see layer.py for the llama block):

    void step35_layer(const i64 *P)

    h = rms_norm(x) * attn_norm
    q, k, v, g = linear_group(job_qkv)                     (g: the head gate's logits [Hq])
    q, k = rms_norm(q_head) * q_norm, rms_norm(k_head) * k_norm          (per head)
    q, k = rope_neox over the first rope_dim dims          (this layer kind's cos/sin)
    cache[slot], vcache[slot] = k, v                       (F16 halves; slot = pos, or pos % ring)
    a = attention kernel on the pool (window on sliding layers: its param block)
    a[h] *= 1 / (1 + ggml_v_expf(-g[h]))                   (ops.sigmoid_ggml)
    x += linear_one(lo_o)
    h = rms_norm(x) * ffn_norm
    dense:  x += linear_one(lo_down) of swiglu(gate, up) (clamped with limit), gate/up one job
    MoE:    x += moe_fn(moe_p)                              (kernels/moe_block.py: reads h, writes mo)
    step35_layers(P, n, H) (layer.indirect_token_ir): each layer through its kind's function, then the head

The float32 operations of inference/models/step35.py's per-op decode (tested for equal bits).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ..cpu import CpuInfo
from .attention import V16F
from .emit import Fn, ModuleText
from .gemma_layer import per_head_norm
from .layer import LayerShape, add_into, kv_store, rms_norm, rope, swiglu
from .moe_block import sigmoid_into

SLOTS = ("layer", "x", "attn_norm", "q_norm", "k_norm", "ffn_norm", "h", "job_qkv", "q", "k", "v", "g",
         "cos", "sin", "krow", "vrow", "attn_p", "attn_fn", "run", "ctx", "att", "attn_chunk", "lo_o", "o",
         "job_ffn", "f_gate", "f_up", "f_act", "lo_down", "down", "moe_fn", "moe_p", "linear_one", "linear_group")
S = {name: i for i, name in enumerate(SLOTS)}
INTS = {"attn_chunk"}


@dataclass(frozen=True)
class Step35Shape:
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_dim: int        # rotated dims (NEOX pairs (i, i + rope_dim/2)); the rest pass through
    eps: float
    n_ff: int            # dense FFN hidden size; 0: an MoE layer (moe_fn)
    limit: float         # the dense FFN's SwiGLU clamp (0: none)
    kv: str = "f16"


def supported(s: Step35Shape) -> bool:
    return (s.n_embd % 16 == 0 and s.n_ff % 16 == 0 and s.head_dim % 16 == 0 and s.rope_dim % 2 == 0
            and 0 < s.rope_dim <= s.head_dim and s.kv == "f16")


def _head_gate(fn: Fn, att: str, g: str, s: Step35Shape) -> None:
    """att[h, :] *= sigmoid(g[h]); g is padded to 16 (its extra lanes are never used)."""
    sigmoid_into(fn, g, g, s.n_head)
    with fn.loop("0", str(s.n_head), stem="gh") as H:
        sg = fn.splat(16, "float", fn.load("float", fn.gep(g, fn.v(f"shl i64 {H.i}, 2")), 4))
        row = fn.gep(att, fn.v(f"mul i64 {H.i}, {4 * s.head_dim}"))
        with fn.loop("0", str(s.head_dim), step=16, stem="gm") as D:
            p = fn.gep(row, fn.v(f"shl i64 {D.i}, 2"))
            fn.store(V16F, fn.v(f"fmul {V16F} {fn.load(V16F, p, 4)}, {sg}"), p, 4)


@functools.cache
def step35_layer_ir(s: Step35Shape, cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @step35_layer(ptr noalias %P) nounwind")
    a = {k: fn.load("i64" if k in INTS else "ptr", fn.gep("%P", str(8 * i)), 8) for k, i in S.items()}
    rs = LayerShape(0, 0, 0, s.head_dim, s.rope_dim, 0, s.eps, True)
    rms_norm(fn, a["x"], a["attn_norm"], a["h"], s.n_embd, s.eps)
    fn.do(f"call void {a['linear_group']}(ptr {a['job_qkv']})")
    per_head_norm(fn, a["q"], a["q_norm"], s.n_head, s)
    per_head_norm(fn, a["k"], a["k_norm"], s.n_head_kv, s)
    rope(fn, a["q"], a["cos"], a["sin"], s.n_head, rs)
    rope(fn, a["k"], a["cos"], a["sin"], s.n_head_kv, rs)
    kv_store(fn, a["k"], a["krow"], s.n_head_kv * s.head_dim, s.kv)
    kv_store(fn, a["v"], a["vrow"], s.n_head_kv * s.head_dim, s.kv)
    fn.do(f"call void {a['run']}(ptr {a['ctx']}, ptr {a['attn_fn']}, ptr {a['attn_p']}, ptr null, ptr {a['att']}, "
          f"i64 {s.n_head}, i64 0, i64 {a['attn_chunk']})")
    _head_gate(fn, a["att"], a["g"], s)
    fn.do(f"call void {a['linear_one']}(ptr {a['lo_o']})")
    add_into(fn, a["x"], a["o"], s.n_embd)
    rms_norm(fn, a["x"], a["ffn_norm"], a["h"], s.n_embd, s.eps)
    if s.n_ff:
        fn.do(f"call void {a['linear_group']}(ptr {a['job_ffn']})")
        swiglu(fn, a["f_gate"], a["f_up"], a["f_act"], s.n_ff, s.limit)
        fn.do(f"call void {a['linear_one']}(ptr {a['lo_down']})")
    else:
        fn.do(f"call void {a['moe_fn']}(ptr {a['moe_p']})")
    add_into(fn, a["x"], a["down"], s.n_embd)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
