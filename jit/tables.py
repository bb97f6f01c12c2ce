"""Process-wide constant tables the kernels read by symbol (LLVM's linker is given their address).

    lectern_f16_f32   float[65536]: the float32 value of every IEEE half bit pattern
    lectern_word_splats  u8[8][32]: vpshufb masks, mask j = [j, 0x80] x 16 (byte j of each
                      128-bit lane, zero-extended into all 16 words)
    lectern_dword_word_splats  u8[4][32]: vpshufb masks, mask j: dword d of a 128-bit lane gets
                      [4d + j, 0x80] x 2 (byte j of each dword, zero-extended into both its words)

A 32-block kernel converts one f16 scale per weight block; as a table lookup that is two scalar
loads (the second folded into the vmulss by d_a) instead of a gather of halves into a vector,
vcvtph2ps and one shuffle per row to get each back out (~4 vector µops per block and row, the
most expensive part of the Q4_0 matvec loop on Zen 3). The values are exact conversions, so
results keep their bits.
The shuffle masks are data LLVM cannot see: with a constant mask it rewrites a vpshufb into a
broadcast of a shifted or extracted word, two µops instead of one per Q4_K sub-block scale.
"""
from __future__ import annotations

import functools

import llvmlite.binding as llvm
import numpy as np

F16_F32 = "lectern_f16_f32"
WORD_SPLATS = "lectern_word_splats"
DWORD_WORD_SPLATS = "lectern_dword_word_splats"
_keep: list[np.ndarray] = []    # the tables live as long as the process: compiled code points at them


@functools.cache
def bind() -> None:
    """Give LLVM's linker the tables' addresses (before any kernel object is loaded)."""
    table = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    table.flags.writeable = False
    _keep.append(table)
    llvm.add_symbol(F16_F32, table.ctypes.data)
    splats = np.zeros((8, 32), np.uint8)
    splats[:, 0::2] = np.arange(8)[:, None]
    splats[:, 1::2] = 0x80
    splats.flags.writeable = False
    _keep.append(splats)
    llvm.add_symbol(WORD_SPLATS, splats.ctypes.data)
    per_dword = np.full((4, 32), 0x80, np.uint8)
    for j in range(4):
        per_dword[j, 0::2] = (4 * (np.arange(16) // 2) + j) % 16
    per_dword.flags.writeable = False
    _keep.append(per_dword)
    llvm.add_symbol(DWORD_WORD_SPLATS, per_dword.ctypes.data)
