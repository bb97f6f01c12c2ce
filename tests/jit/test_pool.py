"""Thread pools: ranges cover every row once, results never depend on the thread count or pool."""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from hypothesis import given
from hypothesis import strategies as st

from jit import api
from jit.native_pool import NativePool, supported
from jit.pool import Pool, default_threads, split

from .conftest import random_weights


@given(rows=st.integers(1, 5000), n=st.integers(1, 8), align=st.sampled_from([1, 16]))
def test_split_covers_each_row_once(rows, n, align):
    ranges = split(rows, n, align)
    assert 1 <= len(ranges) <= n
    assert ranges[0][0] == 0 and ranges[-1][1] == rows
    for (a0, a1), (b0, b1) in zip(ranges, ranges[1:]):
        assert a1 == b0
    assert all(r0 < r1 and r0 % align == 0 for r0, r1 in ranges)


def test_lectern_threads(monkeypatch):
    monkeypatch.setenv("LECTERN_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("LECTERN_THREADS", "zero")
    with pytest.raises(ValueError, match="LECTERN_THREADS"):
        default_threads()


def test_python_pool_reports_kernel_errors():
    pool = Pool(2, align=1)

    def bad(a, r0, r1, b):
        if r0 > 0:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pool.run(bad, (0,), 10, (0,))
    pool.close()


@pytest.mark.skipif(not supported(), reason="the native pool is Linux x86-64/aarch64 only")
@pytest.mark.parametrize("spin", [20000, 0])   # 0: workers always sleep on the futex
def test_native_pool_bit_identical(spin):
    rng = np.random.default_rng(5)
    rows, n_cols = 1000, 512
    w = random_weights(rng, T.Q4_K, rows, n_cols)
    ref = api.matvec_raw(w, T.Q4_K, rows, n_cols, np.ones(n_cols, np.float32), pool=Pool(1))
    for n in (1, 2, 3):
        pool = NativePool(n, spin=spin, chunks_per_thread=3)
        for k in range(60):   # many calls: generations, chunk counters and wake-ups are reused
            x = rng.standard_normal(n_cols).astype(np.float32) if k else np.ones(n_cols, np.float32)
            y = api.matvec_raw(w, T.Q4_K, rows, n_cols, x, pool=pool)
            want = ref if k == 0 else api.matvec_raw(w, T.Q4_K, rows, n_cols, x, pool=Pool(1))
            assert np.array_equal(y.view(np.uint32), want.view(np.uint32))
        for r in (1, 15, 17, 33):   # fewer rows than threads * chunk
            y = api.matvec_raw(w[: r * n_cols // 256 * 144], T.Q4_K, r, n_cols, x, pool=pool)
            assert np.array_equal(y, api.matvec_raw(w[: r * n_cols // 256 * 144], T.Q4_K, r, n_cols, x, pool=Pool(1)))
        pool.close()
        pool.close()   # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            pool.run(None, (0, 0, 0), 1, (0,))


@pytest.mark.timeout(60)
@pytest.mark.skipif(not supported(), reason="the native pool is Linux x86-64/aarch64 only")
def test_native_pool_closes_with_late_workers(monkeypatch):
    """A worker thread that only starts after close() must still see the stop and exit."""
    import threading
    import time

    import jit.native_pool as npool

    class LateThread(threading.Thread):
        def run(self):
            time.sleep(0.3)
            super().run()

    monkeypatch.setattr(npool.threading, "Thread", LateThread)
    pool = NativePool(3)
    t0 = time.perf_counter()
    pool.close()   # would wait forever if a late worker slept on the final generation
    assert time.perf_counter() - t0 < 30


@pytest.mark.timeout(60)
@pytest.mark.skipif(not supported(), reason="the native pool is Linux x86-64/aarch64 only")
def test_native_pool_dropped_without_close_stops_its_workers():
    import gc
    import threading

    before = threading.active_count()
    pool = NativePool(3)
    assert threading.active_count() == before + 2
    del pool
    gc.collect()
    assert threading.active_count() == before


@pytest.mark.skipif(not supported(), reason="the native pool is Linux x86-64/aarch64 only")
def test_native_pool_back_to_back_jobs_never_mix():
    """Jobs published right after each other (as the decode plan does, with no Python between
    them), on more threads than cores: a worker that is late for one job must never claim a chunk
    of the next with the old job's arguments (chunks are tagged with the job's generation)."""
    rng = np.random.default_rng(8)
    n_cols = 256
    mats = [(random_weights(rng, T.Q8_0, rows, n_cols), rows) for rows in (96, 40)]
    xs = [rng.standard_normal(n_cols).astype(np.float32) for _ in range(4)]
    want = {(m, i): api.matvec_raw(mats[m][0], T.Q8_0, mats[m][1], n_cols, xs[i], pool=Pool(1))
            for m in range(2) for i in range(4)}
    pool = NativePool(3, chunks_per_thread=8)
    try:
        for k in range(1500):
            m, i = k % 2, (k // 2) % 4
            y = api.matvec_raw(mats[m][0], T.Q8_0, mats[m][1], n_cols, xs[i], pool=pool)
            assert np.array_equal(y, want[(m, i)]), f"job {k}"
    finally:
        pool.close()
