"""Batch kernels of the K-quants (Q4_K, Q5_K, Q6_K . Q8_K activations): tokens in groups of
GROUP share each unpacked weight superblock (scales, mins and the 256 weight integers are
unpacked once per group instead of once per token).

    void kmm_<type>(const u8 *w, const i64 *p, float *y, i64 row_begin, i64 row_end, i64 n_cols)
        p as matmul_tiles (tiles.py); rows are walked in steps of p[P_STEP] (their weights stay
        in L1 while every group of the batch uses them), then the leftover tokens one by one.

Each token's float operations are exactly the matvec's sequence (matvec.K_PARTS is the code
both use), so a batch, any row split over threads and decode give identical bits.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from .emit import ModuleText
from .matvec import K_PARTS, _superblocks_many
from .tiles import P_NTOK, P_STEP, P_XQ, P_XSTRIDE, P_YSTRIDE

GROUP = 4
KINDS = tuple(K_PARTS)


def kmm_symbol(name: str) -> str:
    return f"kmm_{name.lower()}"


@functools.cache
def kmm_ir(name: str, cpu: CpuInfo) -> str:
    wbytes, unpack, token = K_PARTS[name]
    mt = ModuleText(cpu)
    fn = mt.function(f"define void @{kmm_symbol(name)}(ptr noalias %w, ptr noalias %p, ptr noalias %y, i64 %r0, "
                     "i64 %r1, i64 %n) nounwind")
    xq = fn.load("ptr", fn.gep("%p", str(8 * P_XQ)), 8)
    ntok, xs, ys, step = (fn.load("i64", fn.gep("%p", str(8 * k)), 8) for k in (P_NTOK, P_XSTRIDE, P_YSTRIDE, P_STEP))
    nb = fn.v("sdiv i64 %n, 256")
    row_bytes = fn.v(f"mul i64 {nb}, {wbytes}")
    span = fn.v("sub i64 %r1, %r0")
    last = fn.v(f"sub i64 {step}, 1")
    nsteps = fn.v(f"sdiv i64 {fn.v(f'add i64 {span}, {last}')}, {step}")
    groups = fn.v(f"sdiv i64 {ntok}, {GROUP}")
    with fn.loop("0", nsteps, stem="rs") as S:
        rb = fn.v(f"add i64 %r0, {fn.v(f'mul i64 {S.i}, {step}')}")
        re_ = fn.call("i64", "llvm.smin.i64", [f"i64 {fn.v(f'add i64 {rb}, {step}')}", "i64 %r1"], "i64, i64")
        for size, lo, hi in ((GROUP, "0", groups), (1, fn.v(f"mul i64 {groups}, {GROUP}"), ntok)):
            with fn.loop(lo, hi, stem="tg") as G:
                t0 = fn.v(f"mul i64 {G.i}, {size}")
                toks = [fn.v(f"add i64 {t0}, {k}") for k in range(size)]
                xqs = [fn.gep(xq, fn.v(f"mul i64 {t}, {xs}")) for t in toks]
                ysb = [fn.gep("%y", fn.v(f"mul i64 {t}, {ys}")) for t in toks]
                with fn.loop(rb, re_, stem="rw") as R:
                    wrow = fn.gep("%w", fn.v(f"mul i64 {R.i}, {row_bytes}"))
                    tot = _superblocks_many(fn, wrow, wbytes, nb, unpack, token, xqs)
                    for yb, v in zip(ysb, tot):
                        fn.store("float", v, fn.gep(yb, fn.v(f"shl i64 {R.i}, 2")), 4)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
