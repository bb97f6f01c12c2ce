"""jit.group: several matvecs reading one vector as one native pool job give every row the bits of
its own linear (mixed weight types, so several activation formats; odd row counts; any thread
count), and gate/up jobs end each chunk with exactly the elementwise activation."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from jit import elementwise as je
from jit import group as jg
from jit import linear as jl
from jit.native_pool import NativePool, supported
from tests.jit.test_linear import tensor

pytestmark = pytest.mark.skipif(not supported(), reason="the native pool is Linux x86-64/aarch64 only")


def run_job(block: int) -> None:
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(jg.kernels()["linear_group"])(block)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("types, rows", [((T.Q4_1, T.Q4_1, T.Q4_1), (576, 192, 192)),
                                         ((T.Q4_K, T.Q8_0, T.F16), (37, 256, 90)),
                                         ((T.Q6_K, T.Q4_0, T.Q4_1), (16, 1, 300))])
def test_rows_job_gives_each_linear_its_bits(threads, types, rows):
    n_in = 256
    pool = NativePool(threads)
    ws = [tensor(t, r, n_in, seed=i) for i, (t, r) in enumerate(zip(types, rows))]
    ops = [jl.LinearOp(w, pool=pool) for w in ws]
    x = np.random.default_rng(1).standard_normal(n_in).astype(np.float32)
    ys = [np.full(r, np.nan, np.float32) for r in rows]
    jobs = jg.Jobs(pool)
    blk = jobs.rows([(op, y.ctypes.data) for op, y in zip(ops, ys)], x.ctypes.data)
    for _ in range(3):                      # buffers and counters are reused
        run_job(blk)
        for op, y in zip(ops, ys):
            assert np.array_equal(y.view(np.uint32), op(x).view(np.uint32))
    pool.close()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("act", ["swiglu", "gelu"])
@pytest.mark.parametrize("qg, qu", [(T.Q4_1, T.Q4_1), (T.Q4_K, T.Q6_K)])
def test_gate_up_job_equals_two_linears_and_the_activation(threads, act, qg, qu):
    n_in, n_ff = 512, 1536 + 48
    pool = NativePool(threads)
    og, ou = jl.LinearOp(tensor(qg, n_ff, n_in, 3), pool=pool), jl.LinearOp(tensor(qu, n_ff, n_in, 4), pool=pool)
    x = np.random.default_rng(2).standard_normal(n_in).astype(np.float32) * 3
    gate, up, out = (np.zeros(n_ff, np.float32) for _ in range(3))
    from jit.plan_gemma import gelu_table

    table = gelu_table()
    jobs = jg.Jobs(pool)
    blk = jobs.gate_up(og, ou, x.ctypes.data, gate.ctypes.data, up.ctypes.data, out.ctypes.data, act,
                       table.ctypes.data)
    run_job(blk)
    g, u = og(x), ou(x)
    assert np.array_equal(gate, g) and np.array_equal(up, u)
    want = je.swiglu(g, u) if act == "swiglu" else je.gelu_mul(g, u)
    assert np.array_equal(out.view(np.uint32), want.view(np.uint32))
    pool.close()


def test_wake_is_harmless_at_any_time():
    """wake() with workers spinning, asleep (spin 0) or stopped: jobs before and after are right."""
    from jit.pool import Pool

    rng = np.random.default_rng(3)
    w = tensor(T.Q8_0, 100, 64)
    x = rng.standard_normal(64).astype(np.float32)
    for spin in (0, 20000):
        pool = NativePool(2, spin=spin)
        op = jl.LinearOp(w, pool=pool)
        want = jl.LinearOp(w, pool=Pool(1))(x)
        for _ in range(20):
            pool.wake()
            assert np.array_equal(op(x), want)
        pool.close()
        pool.wake()                         # closed: nothing to wake
