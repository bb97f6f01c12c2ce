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
from .matvec import K_PARTS, _superblocks_many
from .tiles import grouped_batch_ir

GROUP = 8
KINDS = tuple(K_PARTS)


def kmm_symbol(name: str) -> str:
    return f"kmm_{name.lower()}"


@functools.cache
def kmm_ir(name: str, cpu: CpuInfo, group: int = GROUP) -> str:
    wbytes, unpack, token = K_PARTS[name]
    return grouped_batch_ir(cpu, kmm_symbol(name), 256, wbytes, group,
                            lambda fn, wrow, nb, xqs: _superblocks_many(fn, wrow, wbytes, nb, unpack, token, xqs))
