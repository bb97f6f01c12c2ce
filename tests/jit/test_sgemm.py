"""jit.sgemm: C = A B and C += A B agree with float64 products to float32 rounding on odd
shapes (rows not a multiple of the register tile, several row blocks and k blocks, 16-column panels
after the wide ones), strided rows, any thread count, and give the same bits for any thread count."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jit import sgemm
from jit.pool import Pool
from tests.jit.conftest import CPU_PRESETS, cpu_of

PRESETS = [p for p in CPU_PRESETS if cpu_of(p).has_fma]


def close(got, want, k):
    bound = 2 * (k + 2) * np.finfo(np.float32).eps * np.abs(want).max() + 1e-30
    return np.abs(got - want).max() <= bound


@pytest.mark.parametrize("preset", PRESETS)
@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 400), k=st.integers(1, 600), n16=st.integers(1, 7), threads=st.integers(1, 3),
       pad=st.integers(0, 5), accumulate=st.booleans(), seed=st.integers(0, 1000))
def test_matches_float64(preset, m, k, n16, threads, pad, accumulate, seed):
    rng = np.random.default_rng(seed)
    n = 16 * n16
    a = rng.standard_normal((m, k + pad)).astype(np.float32)[:, :k]          # strided rows
    b = rng.standard_normal((k, n + 16 * pad)).astype(np.float32)[:, :n]
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    out = c0.copy()
    got = sgemm.matmul(a, b, out=out, accumulate=accumulate, pool=Pool(threads, align=1), cpu=cpu_of(preset))
    want = a.astype(np.float64) @ b + (c0 if accumulate else 0)
    assert got is out and close(got, want, k)
    one = sgemm.matmul(a, b, out=c0.copy(), accumulate=accumulate, pool=Pool(1), cpu=cpu_of(preset))
    assert np.array_equal(one, got)


def test_rejects_what_it_cannot_multiply():
    a, b = np.ones((4, 8), np.float32), np.ones((8, 20), np.float32)
    with pytest.raises(ValueError, match="multiple of 16"):
        sgemm.matmul(a, b)
    with pytest.raises(ValueError, match="contiguous rows"):
        sgemm.matmul(a, np.ones((8, 32), np.float64))
    with pytest.raises(ValueError, match="accumulate needs out"):
        sgemm.matmul(a, np.ones((8, 32), np.float32), accumulate=True)
    with pytest.raises(ValueError, match="do not fit"):
        sgemm.matmul(a, np.ones((9, 32), np.float32))
