"""The fused KDA decode step (jit/kernels/kda.py) against its numpy twin, which is built from
the reference mixer's own functions (conv, silu, L2 norm, softplus gate, delta rule, output
norm and gate): outputs, conv states and delta-rule states over several carried steps."""
from __future__ import annotations

import numpy as np
import pytest

from jit import kda as jk


def inputs(rng, H, d, K, f_scale=1.0):
    D = H * d
    u = tuple(rng.standard_normal(D).astype(np.float32) for _ in range(3))
    conv = tuple(rng.standard_normal((K - 1, D)).astype(np.float32) for _ in range(3))
    cw = tuple((0.5 * rng.standard_normal((D, K))).astype(np.float32) for _ in range(3))
    f = (f_scale * rng.standard_normal(D)).astype(np.float32)
    dt = rng.standard_normal(D).astype(np.float32)
    a = -rng.uniform(1, 16, H).astype(np.float32)
    bl = rng.standard_normal(H).astype(np.float32)
    gate = rng.standard_normal(D).astype(np.float32)
    nw = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
    S = rng.standard_normal((H, d, d)).astype(np.float32)
    return u, conv, cw, f, dt, a, bl, gate, nw, S


def copy(args):
    return tuple(tuple(x.copy() for x in a) if isinstance(a, tuple) else a.copy() for a in args)


@pytest.mark.parametrize("H, d, K", [(1, 8, 4), (4, 16, 4), (3, 64, 2), (2, 128, 5), (32, 128, 4)])
@pytest.mark.parametrize("f_scale", [1.0, 30.0])     # 30: softplus's x > 20 branch too
def test_steps_equal_the_twin(H, d, K, f_scale):
    rng = np.random.default_rng(H * 1000 + d + K)
    A = inputs(rng, H, d, K, f_scale)
    B = copy(A)
    for t in range(4):                                 # state carried across steps
        new_u = tuple(rng.standard_normal(H * d).astype(np.float32) for _ in range(3))
        A = (new_u,) + A[1:]
        B = (tuple(x.copy() for x in new_u),) + B[1:]
        oj = jk.step(*A, 1e-5)
        on = jk.step_numpy(*B, 1e-5)
        assert np.isfinite(oj).all()
        np.testing.assert_allclose(oj, on, rtol=1e-4, atol=1e-5)
        for cj, cn in zip(A[1], B[1]):
            np.testing.assert_array_equal(cj, cn)      # the conv state is a plain shift
        np.testing.assert_allclose(A[-1], B[-1], rtol=1e-4, atol=1e-5)


def test_bad_shapes_are_refused():
    rng = np.random.default_rng(0)
    u, conv, cw, f, dt, a, bl, gate, nw, S = inputs(rng, 2, 12, 4)     # d = 12: not a multiple of 8
    with pytest.raises(ValueError, match="multiple of 8"):
        jk.step(u, conv, cw, f, dt, a, bl, gate, nw, S, 1e-5)
    u, conv, cw, f, dt, a, bl, gate, nw, S = inputs(rng, 2, 16, 4)
    with pytest.raises(ValueError, match="in place"):
        jk.step(u, conv, cw, f, dt, a, bl, gate, nw, S.astype(np.float64), 1e-5)


@pytest.mark.parametrize("H", [1, 3, 32])
def test_any_thread_count_gives_the_same_bits(H, monkeypatch):
    """The step runs its heads as a pool job: 1, 2 or 3 threads (uneven head splits) agree exactly."""
    rng = np.random.default_rng(H)
    base = inputs(rng, H, 16, 4)
    results = []
    for n in ("1", "2", "3"):
        monkeypatch.setenv("LECTERN_THREADS", n)
        args = copy(base)
        out = jk.step(*args, 1e-5)
        results.append((out, args[-1], args[1]))
    for out, S, conv in results[1:]:
        np.testing.assert_array_equal(out, results[0][0])
        np.testing.assert_array_equal(S, results[0][1])
        for c, c0 in zip(conv, results[0][2]):
            np.testing.assert_array_equal(c, c0)
