"""Several matvecs that read the same input as ONE native pool job (a decode plan's q/k/v, and
gate/up with their activation), so a layer waits for the pool 5 times instead of 8:

    void linear_group(const i64 *J)        J: GJ_FIELDS below
        for each of the (up to) three quantizations with a non-null fn: quant(x, xq, n)
        run(ctx, driver, table, null, null, rows, 0, chunk)       (the native pool's pool_run)

    void group_rows(const i64 *T, void *, void *, i64 r0, i64 r1, i64 n)       a pool job
        T: [n_parts, then per part GR_FIELDS (kern, w, xq, y, begin, rows, n_in)]; the job's row
        space puts part k at rows [begin, begin + rows) (begins 16-aligned: chunks never share a
        cache line of y); rows [r0, r1) ∩ part k -> kern(w, xq, y, lo - begin, hi - begin, n_in)

    void gate_up_swiglu / gate_up_gelu(const i64 *T, void *, void *, i64 r0, i64 r1, i64 n)
        T: GU_FIELDS (kern_g, w_g, xq_g, gate, kern_u, w_u, xq_u, up, n_in, out, table)
        rows [r0, r1) of gate and of up, then out[r0:r1] = act(gate[r0:r1]) * up[r0:r1]
        (layer.swiglu / gemma_layer.gelu_mul on that range; r0, r1 multiples of 16)

Each row is computed by the same matvec kernel from the same quantized bytes as one linear_one
per weight: the bits do not change, only how many times the threads meet.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .emit import ModuleText

N_QUANT = 3
GJ_FIELDS = tuple(f"{k}{i}" for i in range(N_QUANT) for k in ("quant", "x", "xq", "n")) + (
    "run", "ctx", "driver", "table", "rows", "chunk")
GJ_PTRS = {k for k in GJ_FIELDS if not k.startswith("n") and k not in ("rows", "chunk")}
GR_FIELDS = ("kern", "w", "xq", "y", "begin", "rows", "n")
GU_FIELDS = ("kern_g", "w_g", "xq_g", "gate", "kern_u", "w_u", "xq_u", "up", "n", "out", "table")
DRIVER_SIG = "(ptr noalias %T, ptr %unused0, ptr %unused1, i64 %r0, i64 %r1, i64 %n) nounwind"


def quant_rows(fn, quant: str, x: str, xq: str, rows: int, n: int, xbytes: int) -> None:
    """quant(x + i*n floats, xq + i*xbytes, n) for each of `rows` rows: each row's activation bytes
    for its own part of a group_rows table (xbytes 0: float weights, the parts read x's rows)."""
    if not xbytes:
        return
    with fn.loop("0", str(rows), stem="qr") as R:
        xi = fn.gep(x, fn.v(f"mul i64 {R.i}, {4 * n}"))
        fn.do(f"call void {quant}(ptr {xi}, ptr {fn.gep(xq, fn.v(f'mul i64 {R.i}, {xbytes}'))}, i64 {n})")


def run_rows(fn, a: dict, table: str, rows, chunk: str) -> None:
    """group_rows over a table on the native pool (a["run"], a["ctx"], a["group_rows"])."""
    fn.do(f"call void {a['run']}(ptr {a['ctx']}, ptr {a['group_rows']}, ptr {table}, ptr null, ptr null, "
          f"i64 {rows}, i64 0, i64 {chunk})")


def _load_fields(fn, base: str, fields, ints) -> dict:
    return {k: fn.load("i64" if k in ints else "ptr", fn.gep(base, str(8 * i)), 8) for i, k in enumerate(fields)}


def _linear_group(mt: ModuleText) -> None:
    fn = mt.function("define void @linear_group(ptr noalias %J) nounwind")
    a = _load_fields(fn, "%J", GJ_FIELDS, set(GJ_FIELDS) - GJ_PTRS)
    for i in range(N_QUANT):
        has = fn.v(f"icmp ne ptr {a[f'quant{i}']}, null")
        fn.do(f"br i1 {has}, label %q{i}, label %n{i}")
        fn.label(f"q{i}")
        fn.do(f"call void {a[f'quant{i}']}(ptr {a[f'x{i}']}, ptr {a[f'xq{i}']}, i64 {a[f'n{i}']})")
        fn.do(f"br label %n{i}")
        fn.label(f"n{i}")
    fn.do(f"call void {a['run']}(ptr {a['ctx']}, ptr {a['driver']}, ptr {a['table']}, ptr null, ptr null, "
          f"i64 {a['rows']}, i64 0, i64 {a['chunk']})")
    fn.do("ret void")
    mt.add(fn)


def _group_rows(mt: ModuleText) -> None:
    fn = mt.function(f"define void @group_rows{DRIVER_SIG}")
    nparts = fn.load("i64", "%T", 8)
    with fn.loop("0", nparts, stem="gp") as P:
        part = fn.gep("%T", fn.v(f"add i64 8, {fn.v(f'mul i64 {P.i}, {8 * len(GR_FIELDS)}')}"))
        a = _load_fields(fn, part, GR_FIELDS, {"begin", "rows", "n"})
        end = fn.v(f"add i64 {a['begin']}, {a['rows']}")
        lo = fn.call("i64", "llvm.smax.i64", ["i64 %r0", f"i64 {a['begin']}"], "i64, i64")
        hi = fn.call("i64", "llvm.smin.i64", ["i64 %r1", f"i64 {end}"], "i64, i64")
        some = fn.v(f"icmp slt i64 {lo}, {hi}")
        go, skip = fn.fresh("gpgo"), fn.fresh("gpskip")
        fn.do(f"br i1 {some}, label %{go}, label %{skip}")
        fn.label(go)
        b = a["begin"]
        r0, r1 = fn.v(f"sub i64 {lo}, {b}"), fn.v(f"sub i64 {hi}, {b}")
        fn.do(f"call void {a['kern']}(ptr {a['w']}, ptr {a['xq']}, ptr {a['y']}, i64 {r0}, i64 {r1}, i64 {a['n']})")
        fn.do(f"br label %{skip}")
        fn.label(skip)
    fn.do("ret void")
    mt.add(fn)


def _gate_up(mt: ModuleText, name: str, act) -> None:
    """act(fn, gate, up, out, table, count): the activation over `count` floats at those pointers."""
    fn = mt.function(f"define void @{name}{DRIVER_SIG}")
    a = _load_fields(fn, "%T", GU_FIELDS, {"n"})
    for k, w, xq, y in (("kern_g", "w_g", "xq_g", "gate"), ("kern_u", "w_u", "xq_u", "up")):
        fn.do(f"call void {a[k]}(ptr {a[w]}, ptr {a[xq]}, ptr {a[y]}, i64 %r0, i64 %r1, i64 {a['n']})")
    off = fn.v("shl i64 %r0, 2")
    act(fn, fn.gep(a["gate"], off), fn.gep(a["up"], off), fn.gep(a["out"], off), a["table"],
        fn.v("sub i64 %r1, %r0"))
    fn.do("ret void")
    mt.add(fn)


@functools.cache
def group_ir(cpu: CpuInfo) -> str:
    from .gemma_layer import gelu_mul
    from .layer import swiglu

    mt = ModuleText(cpu)
    _linear_group(mt)
    _group_rows(mt)
    _gate_up(mt, "gate_up_swiglu", lambda fn, g, u, o, _t, n: swiglu(fn, g, u, o, n))
    _gate_up(mt, "gate_up_gelu", gelu_mul)
    return mt.text()
