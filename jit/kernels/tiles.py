"""Drivers that run a per-token kernel over a batch of tokens in one native call.

    void matmul_tiles(const u8 *w, const i64 *p, float *y, i64 row_begin, i64 row_end, i64 n_cols)
        p: [matvec fn, xq base, n_tok, xq stride (bytes), y stride (bytes), rows per step]
        for each step of `rows per step` rows in [row_begin, row_end):
            for t in [0, n_tok): matvec(w, xq + t*xq_stride, y + t*y_stride, step_begin, step_end, n_cols)

    void linear_one(const i64 *p)       see LO_FIELDS: quantize x, then run the matvec on the native pool

    void quantize_rows(quantize fn, const float *x, void *out, i64 n, i64 n_tok, i64 x_stride, i64 out_stride)
        for t in [0, n_tok): quantize(x + t*x_stride, out + t*out_stride, n)

Prefill (matmul): a step's weight rows (a few KB) are read from memory once and then served
from L1 for every token of the batch, so a batch of T tokens streams the weights once instead
of T times. The matvec is called through a pointer (never inlined), so each (row, token)
result comes from the very code decode runs: batch, split and decode are bit-identical.
`matmul_tiles` has the matvec signature (its extra arguments travel in `p`), so both thread
pools split it by rows like a matvec.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .emit import ModuleText

MV_TY = "void (ptr, ptr, ptr, i64, i64, i64)"
P_FN, P_XQ, P_NTOK, P_XSTRIDE, P_YSTRIDE, P_STEP = range(6)
# linear_one's i64 slots: quantize x[n] into xq (skipped if quant is null: xq is x), then the
# native pool's run(ctx, kern, w, xq, y, rows, n, chunk)
LO_FIELDS = ("quant", "x", "xq", "n", "run", "ctx", "kern", "w", "y", "rows", "chunk")
LO_PTRS = ("quant", "x", "xq", "run", "ctx", "kern", "w", "y")


@functools.cache
def tiles_ir(cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @matmul_tiles(ptr %w, ptr noalias %p, ptr %y, i64 %r0, i64 %r1, i64 %n) nounwind")
    f = fn.load("ptr", fn.gep("%p", str(8 * P_FN)), 8)
    xq = fn.load("ptr", fn.gep("%p", str(8 * P_XQ)), 8)
    ntok, xs, ys, step = (fn.load("i64", fn.gep("%p", str(8 * k)), 8) for k in (P_NTOK, P_XSTRIDE, P_YSTRIDE, P_STEP))
    # the loop emitter steps by constants: count steps instead
    span = fn.v("sub i64 %r1, %r0")
    last = fn.v(f"sub i64 {step}, 1")
    nsteps = fn.v(f"sdiv i64 {fn.v(f'add i64 {span}, {last}')}, {step}")
    with fn.loop("0", nsteps, stem="rs") as S:
        rb = fn.v(f"add i64 %r0, {fn.v(f'mul i64 {S.i}, {step}')}")
        re_ = fn.call("i64", "llvm.smin.i64", [f"i64 {fn.v(f'add i64 {rb}, {step}')}", "i64 %r1"], "i64, i64")
        with fn.loop("0", ntok, stem="tk") as K:
            xt = fn.gep(xq, fn.v(f"mul i64 {K.i}, {xs}"))
            yt = fn.gep("%y", fn.v(f"mul i64 {K.i}, {ys}"))
            fn.do(f"call void {f}(ptr %w, ptr {xt}, ptr {yt}, i64 {rb}, i64 {re_}, i64 %n) noinline")
    fn.do("ret void")
    mt.add(fn)

    fn = mt.function("define void @quantize_rows(ptr %f, ptr %x, ptr %out, i64 %n, i64 %ntok, i64 %xs, i64 %os) "
                     "nounwind")
    with fn.loop("0", "%ntok", stem="qr") as K:
        xt = fn.gep("%x", fn.v(f"mul i64 {K.i}, %xs"))
        ot = fn.gep("%out", fn.v(f"mul i64 {K.i}, %os"))
        fn.do(f"call void %f(ptr {xt}, ptr {ot}, i64 %n) noinline")
    fn.do("ret void")
    mt.add(fn)

    # linear_one(p): a decode step's whole linear in one call from Python (native pool only)
    fn = mt.function("define void @linear_one(ptr noalias %p) nounwind")
    a = {k: fn.load("ptr" if k in LO_PTRS else "i64", fn.gep("%p", str(8 * i)), 8) for i, k in enumerate(LO_FIELDS)}
    has_q = fn.v(f"icmp ne ptr {a['quant']}, null")
    fn.do(f"br i1 {has_q}, label %quant, label %mul")
    fn.label("quant")
    fn.do(f"call void {a['quant']}(ptr {a['x']}, ptr {a['xq']}, i64 {a['n']})")
    fn.do("br label %mul")
    fn.label("mul")
    fn.do(f"call void {a['run']}(ptr {a['ctx']}, ptr {a['kern']}, ptr {a['w']}, ptr {a['xq']}, ptr {a['y']}, "
          f"i64 {a['rows']}, i64 {a['n']}, i64 {a['chunk']})")
    fn.do("ret void")
    mt.add(fn)
    return mt.text()


def grouped_batch_ir(cpu: CpuInfo, symbol: str, block: int, wbytes: int, group: int, dots) -> str:
    """A batch kernel over rows [r0, r1) of a weight matrix and the tokens of one tile (parameters
    P_*): rows in steps of P_STEP, tokens in groups of `group` (or of each size of a tuple, largest
    first) then one by one; for each row,
    dots(fn, wrow, nb, xqs) returns one float total per token of the group (each unpacked weight
    block is shared by the group). block: weights per block; wbytes: bytes per block."""
    mt = ModuleText(cpu)
    fn = mt.function(f"define void @{symbol}(ptr noalias %w, ptr noalias %p, ptr noalias %y, i64 %r0, "
                     "i64 %r1, i64 %n) nounwind")
    xq = fn.load("ptr", fn.gep("%p", str(8 * P_XQ)), 8)
    ntok, xs, ys, step = (fn.load("i64", fn.gep("%p", str(8 * k)), 8) for k in (P_NTOK, P_XSTRIDE, P_YSTRIDE, P_STEP))
    nb = fn.v(f"sdiv i64 %n, {block}")
    row_bytes = fn.v(f"mul i64 {nb}, {wbytes}")
    span = fn.v("sub i64 %r1, %r0")
    last = fn.v(f"sub i64 {step}, 1")
    nsteps = fn.v(f"sdiv i64 {fn.v(f'add i64 {span}, {last}')}, {step}")
    sizes = sorted({*(group if isinstance(group, tuple) else (group,)), 1}, reverse=True)
    spans, start = [], "0"           # tokens [start, start + n * size) in groups of size, largest first
    for size in sizes:
        n = fn.v(f"sdiv i64 {fn.v(f'sub i64 {ntok}, {start}')}, {size}")
        spans.append((size, start, n))
        start = fn.v(f"add i64 {start}, {fn.v(f'mul i64 {n}, {size}')}")
    with fn.loop("0", nsteps, stem="rs") as S:
        rb = fn.v(f"add i64 %r0, {fn.v(f'mul i64 {S.i}, {step}')}")
        re_ = fn.call("i64", "llvm.smin.i64", [f"i64 {fn.v(f'add i64 {rb}, {step}')}", "i64 %r1"], "i64, i64")
        for size, first, n in spans:
            with fn.loop("0", n, stem="tg") as G:
                t0 = fn.v(f"add i64 {first}, {fn.v(f'mul i64 {G.i}, {size}')}")
                toks = [fn.v(f"add i64 {t0}, {k}") for k in range(size)]
                xqs = [fn.gep(xq, fn.v(f"mul i64 {t}, {xs}")) for t in toks]
                ysb = [fn.gep("%y", fn.v(f"mul i64 {t}, {ys}")) for t in toks]
                with fn.loop(rb, re_, stem="rw") as R:
                    tot = dots(fn, fn.gep("%w", fn.v(f"mul i64 {R.i}, {row_bytes}")), nb, xqs)
                    for yb, v in zip(ysb, tot):
                        fn.store("float", v, fn.gep(yb, fn.v(f"shl i64 {R.i}, 2")), 4)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
