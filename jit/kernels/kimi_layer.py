"""One decode step of a kimi-linear block as ONE native call (see layer.py for the llama block):

    void kimi_kda(const i64 *P)      a KDA layer                void kimi_mla(const i64 *P)   an MLA layer

    h = rms_norm(x) * attn_norm
    KDA: u_q, u_k, u_v, f_a, beta, g_a = linear_group(job_proj);  f = W_fb f_a;  gate = W_gb g_a
         out = kda_heads(kda_p) on the pool                      (kernels/kda.py: conv, norms, delta rule)
         x += linear_one(lo_o)                                   (W_o out)
    MLA: q, [c | k_pe] = linear_group(job_proj);  c = rms_norm(c) * kv_a_norm
         cache[pos] = [c | k_pe]                                 (F16 halves or floats)
         Q_h = [k_b[h] q_nope_h | q_pe_h], rounded to F16 with an F16 cache   (H rows, one pool job)
         blocks of keys on the pool (kernels/mla_attention.py), merged in block order -> lat [H, R]
         x += W_o concat_h v_b[h] lat_h                          (H rows, one pool job; then linear_one)
    h = rms_norm(x) * ffn_norm
    dense: x += linear_one(lo_down) of linear_group(job_ffn) (gate/up with swiglu)
    MoE:   x += moe_fn(moe_p)                                    (kernels/moe_block.py)
    kimi_layers(P, n, H) (layer.indirect_token_ir): each layer through its kind's function, then the head

The float32 operations of inference/models/{kimi_linear,kda,mla}.py's decode and
jit.mla_attention.merge (tested for equal bits).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ..cpu import CpuInfo
from .attention import V16F, v_expf
from .emit import Fn, ModuleText
from .layer import add_into, kv_store, rms_norm
from .group import quant_rows, run_rows
from .moe_block import padded

SLOTS = ("layer", "x", "attn_norm", "ffn_norm", "h", "o", "lo_o", "linear_one", "linear_group", "run", "ctx",
         "job_ffn", "lo_down", "down", "moe_fn", "moe_p", "job_proj",
         # KDA
         "lo_fb", "lo_gb", "kda_fn", "kda_p", "kda_chunk",
         # MLA
         "qf", "ckp", "kv_norm", "c", "crow", "qn", "Q", "quant_kb", "xq_kb", "kb_table", "kb_chunk", "group_rows",
         "mla_fn", "mla_p", "nb", "m", "l", "w", "tot", "acc", "lat", "quant_vb", "xq_vb", "vb_table", "vb_chunk")
K = {name: i for i, name in enumerate(SLOTS)}
INTS = {"kda_chunk", "kb_chunk", "nb", "vb_chunk"}


@dataclass(frozen=True)
class KimiShape:
    kind: str            # "kda" | "mla"
    n_embd: int
    eps: float
    moe: bool            # the FFN: MoE block (moe_fn) or dense gate/up/down
    n_head: int = 0
    # MLA
    n_nope: int = 0      # key_length_mla - rope dims
    n_rope: int = 0
    rank: int = 0        # kv_lora_rank R
    dv: int = 0          # value_length_mla
    kv: str = "f16"
    xbytes_kb: int = 0   # one quantized q_nope row for k_b (0: float rows)
    xbytes_vb: int = 0   # one quantized latent row for v_b


def supported(s: KimiShape) -> bool:
    if s.n_embd % 16:
        return False
    if s.kind == "kda":
        return True
    return s.kind == "mla" and all(v % 16 == 0 for v in (s.n_nope, s.n_rope, s.rank, s.dv))


def _copy(fn: Fn, src: str, dst: str, n: int) -> None:
    with fn.loop("0", str(n), step=16, stem="cp") as C:
        off = fn.v(f"shl i64 {C.i}, 2")
        fn.store(V16F, fn.load(V16F, fn.gep(src, off), 4), fn.gep(dst, off), 4)


def _merge(fn: Fn, a: dict, s: KimiShape) -> None:
    """jit.mla_attention.merge: top = max_b m[b]; w[b] = v_expf(m[b] - top) (rows of Hp lanes);
    tot = sum_b w[b] l[b] and lat = (sum_b acc[b] w[b]) / tot, block after block. m and l are
    [nb, H] with 16 floats of slack: lanes past H read the next row (never used)."""
    H, R, Hp = s.n_head, s.rank, padded(s.n_head)
    nb = a["nb"]
    with fn.loop("0", str(Hp), step=16, stem="mt") as G:
        hoff = fn.v(f"shl i64 {G.i}, 2")
        top = fn.load(V16F, fn.gep(a["m"], hoff), 4)
        with fn.loop("1", nb, stem="mx") as B:
            cur = B.carry(V16F, top)
            v = fn.load(V16F, fn.gep(a["m"], fn.v(f"add i64 {hoff}, {fn.v(f'mul i64 {B.i}, {4 * H}')}")), 4)
            B.set(cur, fn.v(f"select <16 x i1> {fn.v(f'fcmp ogt {V16F} {v}, {cur}')}, {V16F} {v}, {V16F} {cur}"))
        with fn.loop("0", nb, stem="me") as B:
            tot = B.carry(V16F, "zeroinitializer")
            src = fn.v(f"add i64 {hoff}, {fn.v(f'mul i64 {B.i}, {4 * H}')}")
            w = v_expf(fn, fn.v(f"fsub {V16F} {fn.load(V16F, fn.gep(a['m'], src), 4)}, {cur}"))
            fn.store(V16F, w, fn.gep(a["w"], fn.v(f"add i64 {hoff}, {fn.v(f'mul i64 {B.i}, {4 * Hp}')}")), 4)
            p = fn.v(f"fmul {V16F} {w}, {fn.load(V16F, fn.gep(a['l'], src), 4)}")
            first = fn.v(f"icmp eq i64 {B.i}, 0")
            B.set(tot, fn.v(f"select i1 {first}, {V16F} {p}, {V16F} {fn.v(f'fadd {V16F} {tot}, {p}')}"))
        fn.store(V16F, tot, fn.gep(a["tot"], hoff), 4)
    with fn.loop("0", str(H), stem="mh") as Hd:
        wrow = fn.gep(a["w"], fn.v(f"shl i64 {Hd.i}, 2"))
        tot = fn.splat(16, "float", fn.load("float", fn.gep(a["tot"], fn.v(f"shl i64 {Hd.i}, 2")), 4))
        with fn.loop("0", str(R), step=16, stem="mr") as C:
            hr = fn.v(f"mul i64 {Hd.i}, {R}")
            off = fn.v(f"shl i64 {fn.v(f'add i64 {hr}, {C.i}')}, 2")
            with fn.loop("0", nb, stem="mb") as B:
                acc = B.carry(V16F, "zeroinitializer")
                wb = fn.splat(16, "float", fn.load("float", fn.gep(wrow, fn.v(f"mul i64 {B.i}, {4 * Hp}")), 4))
                v = fn.load(V16F, fn.gep(a["acc"], fn.v(f"add i64 {off}, {fn.v(f'mul i64 {B.i}, {4 * H * R}')}")), 4)
                p = fn.v(f"fmul {V16F} {v}, {wb}")
                first = fn.v(f"icmp eq i64 {B.i}, 0")
                B.set(acc, fn.v(f"select i1 {first}, {V16F} {p}, {V16F} {fn.v(f'fadd {V16F} {acc}, {p}')}"))
            fn.store(V16F, fn.v(f"fdiv {V16F} {acc}, {tot}"), fn.gep(a["lat"], off), 4)


def _mla(fn: Fn, a: dict, s: KimiShape) -> None:
    H, n, r, R = s.n_head, s.n_nope, s.n_rope, s.rank
    fn.do(f"call void {a['linear_group']}(ptr {a['job_proj']})")
    rms_norm(fn, a["ckp"], a["kv_norm"], a["c"], R, s.eps)
    esz = 2 if s.kv == "f16" else 4
    kv_store(fn, a["c"], a["crow"], R, s.kv)
    kv_store(fn, fn.gep(a["ckp"], str(4 * R)), fn.gep(a["crow"], str(esz * R)), r, s.kv)
    with fn.loop("0", str(H), stem="qh") as Hd:
        src = fn.gep(a["qf"], fn.v(f"mul i64 {Hd.i}, {4 * (n + r)}"))
        _copy(fn, src, fn.gep(a["qn"], fn.v(f"mul i64 {Hd.i}, {4 * n}")), n)
        qrow = fn.v(f"mul i64 {Hd.i}, {4 * (R + r)}")
        _copy(fn, fn.gep(src, str(4 * n)), fn.gep(a["Q"], fn.v(f"add i64 {qrow}, {4 * R}")), r)
    quant_rows(fn, a["quant_kb"], a["qn"], a["xq_kb"], H, n, s.xbytes_kb)
    run_rows(fn, a, a["kb_table"], H * R, a["kb_chunk"])
    if s.kv == "f16":                                     # the query as the F16 cache's attention reads it
        with fn.loop("0", str(H * (R + r)), step=16, stem="qr16") as C:
            p = fn.gep(a["Q"], fn.v(f"shl i64 {C.i}, 2"))
            fn.store(V16F, fn.round_to_half_v(fn.load(V16F, p, 4)), p, 4)
    fn.do(f"call void {a['run']}(ptr {a['ctx']}, ptr {a['mla_fn']}, ptr {a['mla_p']}, ptr null, ptr {a['acc']}, "
          f"i64 {a['nb']}, i64 0, i64 1)")
    _merge(fn, a, s)
    quant_rows(fn, a["quant_vb"], a["lat"], a["xq_vb"], H, R, s.xbytes_vb)
    run_rows(fn, a, a["vb_table"], H * s.dv, a["vb_chunk"])


def _kda(fn: Fn, a: dict, s: KimiShape) -> None:
    fn.do(f"call void {a['linear_group']}(ptr {a['job_proj']})")
    fn.do(f"call void {a['linear_one']}(ptr {a['lo_fb']})")
    fn.do(f"call void {a['linear_one']}(ptr {a['lo_gb']})")
    fn.do(f"call void {a['run']}(ptr {a['ctx']}, ptr {a['kda_fn']}, ptr {a['kda_p']}, ptr null, ptr null, "
          f"i64 {s.n_head}, i64 0, i64 {a['kda_chunk']})")


@functools.cache
def kimi_layer_ir(s: KimiShape, cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @kimi_layer(ptr noalias %P) nounwind")
    a = {k: fn.load("i64" if k in INTS else "ptr", fn.gep("%P", str(8 * i)), 8) for k, i in K.items()}
    rms_norm(fn, a["x"], a["attn_norm"], a["h"], s.n_embd, s.eps)
    if s.kind == "kda":
        _kda(fn, a, s)
    else:
        _mla(fn, a, s)
    fn.do(f"call void {a['linear_one']}(ptr {a['lo_o']})")
    add_into(fn, a["x"], a["o"], s.n_embd)
    rms_norm(fn, a["x"], a["ffn_norm"], a["h"], s.n_embd, s.eps)
    if s.moe:
        fn.do(f"call void {a['moe_fn']}(ptr {a['moe_p']})")
    else:
        fn.do(f"call void {a['linear_group']}(ptr {a['job_ffn']})")
        fn.do(f"call void {a['linear_one']}(ptr {a['lo_down']})")
    add_into(fn, a["x"], a["down"], s.n_embd)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
