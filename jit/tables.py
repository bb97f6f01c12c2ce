"""Process-wide constant tables the kernels read by symbol (LLVM's linker is given their address).

    lectern_f16_f32   float[65536]: the float32 value of every IEEE half bit pattern

A 32-block matvec converts one f16 scale per weight block; as a table lookup that is a scalar
load and a broadcast from memory instead of a gather of halves into a vector, vcvtph2ps and one
shuffle per row to get each back out (~4 vector µops per block and row, the most expensive part
of the Q4_0 loop on Zen 3). The values are exact conversions, so results keep their bits.
"""
from __future__ import annotations

import functools

import llvmlite.binding as llvm
import numpy as np

F16_F32 = "lectern_f16_f32"
_keep: list[np.ndarray] = []    # the tables live as long as the process: compiled code points at them


@functools.cache
def bind() -> None:
    """Give LLVM's linker the tables' addresses (before any kernel object is loaded)."""
    table = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    table.flags.writeable = False
    _keep.append(table)
    llvm.add_symbol(F16_F32, table.ctypes.data)
