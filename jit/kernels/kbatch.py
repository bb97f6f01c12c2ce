"""Batch kernels of the K-quants (Q4_K, Q5_K, Q6_K . Q8_K activations): tokens in groups of
GROUP share each unpacked weight superblock (scales, mins and the 256 weight integers are
unpacked once per group instead of once per token).

    void kmm_<type>_<mode>(const u8 *w, const i64 *p, float *y, i64 row_begin, i64 row_end, i64 n_cols)
        p as matmul_tiles (tiles.py); rows are walked in steps of p[P_STEP] (their weights stay
        in L1 while every group of the batch uses them), then the leftover tokens one by one.

One kernel per summation order (kquants.py: llama.cpp's gemm/gemv for Q4_K, tiled/vec_dot for
Q6_K; Q4_K, Q5_K and Q6_K's tiled mode read interleaved activations and run a group's float work
across tokens, kquants_il.py); kquants.batch_modes says which tokens of a batch take which, as llama.cpp decides. Each
token's float operations depend on its mode alone, so any row split, row step and grouping give
the same bits, and a batch in a decode mode gives the matvec's bits.
"""
from __future__ import annotations

import functools

from ..cpu import CpuInfo
from . import kquants_il
from .kquants import STEPS, UNPACK, row_dots
from .matvec import prefetch
from .tiles import grouped_batch_ir

GROUP = 8
IL_GROUPS = (16, 8)   # kquants_il: tokens in lanes of 8; 16 share each unpacked, transposed superblock
KINDS = tuple(UNPACK)


def kmm_symbol(name: str, mode: str) -> str:
    return f"kmm_{name.lower()}_{mode}"


def activation_format(name: str, mode: str) -> str:
    """The activations a K-quant batch kernel reads: Q8_K, or Q8_K_il for the modes kquants_il.py runs."""
    return "q8_K_il" if (name, mode) in kquants_il.STEPS_IL else "q8_K"


@functools.cache
def kmm_ir(name: str, mode: str, cpu: CpuInfo, group: int | tuple | None = None) -> str:
    if activation_format(name, mode) == "q8_K_il":
        dots = lambda fn, wrow, nb, xqs: kquants_il.row_dots_il(fn, wrow, nb, name, mode, xqs, prefetch)  # noqa: E731
        group = group or IL_GROUPS
    else:
        dots = lambda fn, wrow, nb, xqs: row_dots(fn, wrow, nb, UNPACK[name], STEPS[name, mode], xqs, prefetch)  # noqa: E731
    return grouped_batch_ir(cpu, kmm_symbol(name, mode), 256, UNPACK[name][0], group or GROUP, dots)
