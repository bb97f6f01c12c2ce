"""A decode step's MoE FFN (router, routed experts, shared expert) as ONE native call:

    void moe_ffn(const i64 *M)               M: MB_FIELDS below

    logits = linear_one(lo_router)                          h -> [n_exp] (the F32 router matrix)
    p      = 1 / (1 + ggml_v_expf(-logits))                 sigmoid gating (ops.sigmoid_ggml)
    sel    = the k largest p + bias, ties to the lower expert  (moe.route's stable argsort)
    w      = p[sel] / max(float(sum_double(p[sel])), floor) * scale     (in selection order)
    for the selected experts in ascending order j = 0..k-1 (moe._experts_one's order):
        patch the gate/up job's parts j and k + j and the down table's part j with expert e's
        matrices (kern_*/w_* tables: one entry per expert, each expert's own prepared LinearOp;
        an expert never chosen before has null entries, and prepare(e), a Python callback, fills them)
    gate/up = linear_group(job_gu)                          h quantized once, 2k matvecs, one pool job
    a[j]   = swiglu(gate[j], up[j]) (clamped with limit)    [k, n_ff]
    z[j]   = W_down_e a[j]                                  each row quantized, k matvecs, one pool job
    out    = (0 + z[0] w[0]) + z[1] w[1] + ...              ascending experts
    out   += W_sh_down swiglu(W_sh_gate h, W_sh_up h)       if the layer has a shared expert

The float32 operations of inference/models/moe.py's decode path (tested for equal bits).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ..cpu import CpuInfo
from .attention import V16F, flt, splatf, v_expf
from .emit import Fn, ModuleText
from .group import GR_FIELDS, quant_rows, run_rows
from .layer import swiglu

MB_FIELDS = ("h", "out", "prepare", "lo_router", "logits", "probs", "bias", "taken", "wslot", "wasc",
             "job_gu", "gu_table", "kern_g", "w_g", "kern_u", "w_u", "kern_d", "w_d", "gu", "act",
             "quant_d", "xq_d", "d_table", "run", "ctx", "group_rows", "d_chunk", "z",
             "job_sh", "sh_g", "sh_u", "sh_act", "lo_sh_down", "sh", "linear_one", "linear_group")
MB = {k: i for i, k in enumerate(MB_FIELDS)}
MB_INTS = {"d_chunk"}
NORM_FLOOR = 6.103515625e-5
CLAMP_EPS = 1e-6


@dataclass(frozen=True)
class MoeShape:
    n_embd: int
    n_exp: int
    k: int              # experts used per token
    n_ff: int           # expert hidden size
    n_ff_sh: int        # shared expert hidden size, 0: none
    has_bias: bool      # exp_probs_b (selection bias)
    norm_w: bool
    scale: float        # applied unless 0 or 1
    limit: float        # routed experts' SwiGLU clamp (<= 1e-6: none)
    limit_sh: float     # the shared expert's
    xbytes_d: int       # one quantized activation row of the down matrices (0: F32, rows read as floats)


def supported(s: MoeShape) -> bool:
    return s.n_embd % 16 == 0 and s.n_ff % 16 == 0 and s.n_ff_sh % 16 == 0 and 1 <= s.k <= s.n_exp


def padded(n: int) -> int:
    return -(-n // 16) * 16


def sigmoid_into(fn: Fn, x: str, out: str, n: int) -> None:
    """out = 1 / (1 + ggml_v_expf(-x)) over n rounded up to 16 (the buffers are padded)."""
    with fn.loop("0", str(padded(n)), step=16, stem="sm") as S:
        off = fn.v(f"shl i64 {S.i}, 2")
        v = fn.load(V16F, fn.gep(x, off), 4)
        e = v_expf(fn, fn.v(f"fsub {V16F} zeroinitializer, {v}"))
        fn.store(V16F, fn.v(f"fdiv {V16F} {splatf(1.0)}, {fn.v(f'fadd {V16F} {splatf(1.0)}, {e}')}"),
                 fn.gep(out, off), 4)


def _select(fn: Fn, a: dict, s: MoeShape) -> None:
    """taken[e] = slot + 1 for the k selected experts (0: not selected); wslot[slot] = its weight."""
    with fn.loop("0", str(s.n_exp), stem="tz") as Z:
        fn.store("i64", "0", fn.gep(a["taken"], fn.v(f"shl i64 {Z.i}, 3")), 8)
    with fn.loop("0", str(s.k), stem="ts") as T:
        tot = T.carry("double", "0.0")
        with fn.loop("0", str(s.n_exp), stem="te") as E:
            best, bv = E.carry("i64", "-1"), E.carry("float", "0.0")
            free = fn.v(f"icmp eq i64 {fn.load('i64', fn.gep(a['taken'], fn.v(f'shl i64 {E.i}, 3')), 8)}, 0")
            v = fn.load("float", fn.gep(a["probs"], fn.v(f"shl i64 {E.i}, 2")), 4)
            if s.has_bias:
                v = fn.v(f"fadd float {v}, {fn.load('float', fn.gep(a['bias'], fn.v(f'shl i64 {E.i}, 2')), 4)}")
            better = fn.v(f"or i1 {fn.v(f'icmp slt i64 {best}, 0')}, {fn.v(f'fcmp ogt float {v}, {bv}')}")
            take = fn.v(f"and i1 {free}, {better}")
            E.set(best, fn.v(f"select i1 {take}, i64 {E.i}, i64 {best}"))
            E.set(bv, fn.v(f"select i1 {take}, float {v}, float {bv}"))
        fn.store("i64", fn.v(f"add i64 {T.i}, 1"), fn.gep(a["taken"], fn.v(f"shl i64 {best}, 3")), 8)
        p = fn.load("float", fn.gep(a["probs"], fn.v(f"shl i64 {best}, 2")), 4)
        fn.store("float", p, fn.gep(a["wslot"], fn.v(f"shl i64 {T.i}, 2")), 4)
        T.set(tot, fn.v(f"fadd double {fn.v(f'fpext float {p} to double')}, {tot}"))
    total = fn.v(f"fptrunc double {tot} to float")
    low = fn.v(f"fcmp olt float {total}, {flt(NORM_FLOOR)}")
    den = fn.v(f"select i1 {low}, float {flt(NORM_FLOOR)}, float {total}")
    with fn.loop("0", str(s.k), stem="tw") as T:
        ptr = fn.gep(a["wslot"], fn.v(f"shl i64 {T.i}, 2"))
        w = fn.load("float", ptr, 4)
        if s.norm_w:
            w = fn.v(f"fdiv float {w}, {den}")
        if s.scale not in (0.0, 1.0):
            w = fn.v(f"fmul float {w}, {flt(s.scale)}")
        fn.store("float", w, ptr, 4)


def _patch(fn: Fn, table: str, part: str, kern: str, w: str) -> None:
    """Part `part` of a group_rows table (T: [n, parts of GR_FIELDS]) gets matrix kern / w."""
    base = fn.gep(table, fn.v(f"add i64 8, {fn.v(f'mul i64 {part}, {8 * len(GR_FIELDS)}')}"))
    fn.store("ptr", kern, fn.gep(base, str(8 * GR_FIELDS.index("kern"))), 8)
    fn.store("ptr", w, fn.gep(base, str(8 * GR_FIELDS.index("w"))), 8)


def _ascending(fn: Fn, a: dict, s: MoeShape) -> None:
    """Selected experts in ascending order: their matrices into the job tables, their weights into wasc."""
    with fn.loop("0", str(s.n_exp), stem="ta") as E:
        j = E.carry("i64", "0")
        slot1 = fn.load("i64", fn.gep(a["taken"], fn.v(f"shl i64 {E.i}, 3")), 8)
        sel = fn.v(f"icmp ne i64 {slot1}, 0")
        yes, no = fn.fresh("tay"), fn.fresh("tan")
        fn.do(f"br i1 {sel}, label %{yes}, label %{no}")
        fn.label(yes)
        at = fn.v(f"shl i64 {E.i}, 3")
        missing = fn.v(f"icmp eq ptr {fn.load('ptr', fn.gep(a['kern_g'], at), 8)}, null")
        prep, ready = fn.fresh("tap"), fn.fresh("tar")
        fn.do(f"br i1 {missing}, label %{prep}, label %{ready}")
        fn.label(prep)                      # the first time expert e is chosen: prepare(e) fills its entries
        fn.do(f"call void {a['prepare']}(i64 {E.i})")
        fn.do(f"br label %{ready}")
        fn.label(ready)
        ent = {k: fn.load("ptr", fn.gep(a[k], at), 8) for k in ("kern_g", "w_g", "kern_u", "w_u", "kern_d", "w_d")}
        _patch(fn, a["gu_table"], j, ent["kern_g"], ent["w_g"])
        _patch(fn, a["gu_table"], fn.v(f"add i64 {j}, {s.k}"), ent["kern_u"], ent["w_u"])
        _patch(fn, a["d_table"], j, ent["kern_d"], ent["w_d"])
        wv = fn.load("float", fn.gep(a["wslot"], fn.v(f"shl i64 {fn.v(f'sub i64 {slot1}, 1')}, 2")), 4)
        fn.store("float", wv, fn.gep(a["wasc"], fn.v(f"shl i64 {j}, 2")), 4)
        fn.do(f"br label %{no}")
        fn.label(no)
        E.set(j, fn.v(f"add i64 {j}, {fn.v(f'zext i1 {sel} to i64')}"))


def _weighted_sum(fn: Fn, a: dict, s: MoeShape) -> None:
    """out = 0; out += z[j] * wasc[j] for j in order (two roundings per term, as numpy's)."""
    E = s.n_embd
    with fn.loop("0", str(E), step=16, stem="ws") as S:
        off = fn.v(f"shl i64 {S.i}, 2")
        accv = "zeroinitializer"
        for j in range(s.k):
            wj = fn.splat(16, "float", fn.load("float", fn.gep(a["wasc"], str(4 * j)), 4))
            zj = fn.load(V16F, fn.gep(a["z"], fn.v(f"add i64 {off}, {4 * j * E}")), 4)
            accv = fn.v(f"fadd {V16F} {accv}, {fn.v(f'fmul {V16F} {zj}, {wj}')}")
        fn.store(V16F, accv, fn.gep(a["out"], off), 4)


def _shared(fn: Fn, a: dict, s: MoeShape) -> None:
    fn.do(f"call void {a['linear_group']}(ptr {a['job_sh']})")
    swiglu(fn, a["sh_g"], a["sh_u"], a["sh_act"], s.n_ff_sh, s.limit_sh)
    fn.do(f"call void {a['linear_one']}(ptr {a['lo_sh_down']})")
    with fn.loop("0", str(s.n_embd), step=16, stem="sa") as S:
        off = fn.v(f"shl i64 {S.i}, 2")
        p = fn.gep(a["out"], off)
        fn.store(V16F, fn.v(f"fadd {V16F} {fn.load(V16F, p, 4)}, {fn.load(V16F, fn.gep(a['sh'], off), 4)}"), p, 4)


def moe_body(fn: Fn, a: dict, s: MoeShape) -> None:
    fn.do(f"call void {a['linear_one']}(ptr {a['lo_router']})")
    sigmoid_into(fn, a["logits"], a["probs"], s.n_exp)
    _select(fn, a, s)
    _ascending(fn, a, s)
    fn.do(f"call void {a['linear_group']}(ptr {a['job_gu']})")
    swiglu(fn, a["gu"], fn.gep(a["gu"], str(4 * s.k * s.n_ff)), a["act"], s.k * s.n_ff, s.limit)
    quant_rows(fn, a["quant_d"], a["act"], a["xq_d"], s.k, s.n_ff, s.xbytes_d)   # float downs read act's rows
    run_rows(fn, a, a["d_table"], s.k * s.n_embd, a["d_chunk"])
    _weighted_sum(fn, a, s)
    if s.n_ff_sh:
        _shared(fn, a, s)


def load_fields(fn: Fn, base: str) -> dict:
    return {k: fn.load("i64" if k in MB_INTS else "ptr", fn.gep(base, str(8 * i)), 8) for i, k in enumerate(MB_FIELDS)}


@functools.cache
def moe_ir(s: MoeShape, cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @moe_ffn(ptr noalias %M) nounwind")
    moe_body(fn, load_fields(fn, "%M"), s)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
