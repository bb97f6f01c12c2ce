"""jit/bench.py: the in-cache run of a kernel stays inside the matrix and inside L2."""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from jit import api, repack
from jit.bench import L2_SLICE, in_cache_rate, random_matrix


@pytest.mark.parametrize("name,rows,cols", [("Q4_K", 4096, 8192), ("Q4_K", 64, 8192), ("Q6_K", 12, 512),
                                            ("Q8_0", 8, 256)])
def test_in_cache_rate_runs_whole_groups_inside_the_matrix_and_l2(name, rows, cols):
    qt = T[name]
    w, kern = random_matrix(qt, rows, cols), api.matvec_kernel(qt)
    if repack.applies(qt, rows):
        w, kern, _ = repack.prepare(qt, w, rows, cols)
    calls = []

    def recording(*args):           # the real kernel, its row ranges noted
        calls.append(args[3:])
        return kern(*args)
    xq = api.quantize_activation(np.ones(cols, np.float32), qt)
    rate = in_cache_rate(recording, w, xq, rows, cols, repeat=1)
    per_row = w.nbytes // rows
    used = {r1 for r0, r1, n in calls if r1}
    assert len(used) == 1 and all(r0 == 0 and n == cols for r0, _, n in calls)
    r1, = used
    assert r1 == rows or (r1 % 8 == 0 and r1 * per_row <= max(L2_SLICE, 8 * per_row) and r1 < rows)
    assert rate > 0
    if r1 * per_row >= 64 << 10:                # enough work to stand out from the call's own cost
        assert rate < float("inf")
