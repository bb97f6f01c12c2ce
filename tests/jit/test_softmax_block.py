"""jit.softmax_block: the online-softmax block kernel against its numpy twin (rows of any width,
any visible counts including none, running max -inf or finite, any thread count), and a row
split into blocks against one softmax over the whole row."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jit import softmax_block as sb
from jit.pool import Pool

pytestmark = pytest.mark.skipif(not sb.usable(), reason="the softmax block kernel needs FMA")


def state(rng, rows, ld, scale_s):
    sc = (rng.standard_normal((rows, ld)) * scale_s).astype(np.float32)
    m = np.where(rng.random(rows) < 0.4, -np.inf, rng.standard_normal(rows) * scale_s).astype(np.float32)
    l = np.where(np.isinf(m), 0, rng.random(rows) * 3).astype(np.float32)
    return sc, m, l


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), tiles=st.integers(1, 20), threads=st.integers(1, 3),
       scale_s=st.sampled_from([0.1, 1.0, 30.0]), seed=st.integers(0, 10_000))
def test_kernel_matches_the_twin(rows, tiles, threads, scale_s, seed):
    rng = np.random.default_rng(seed)
    ld = 16 * tiles
    sc, m, l = state(rng, rows, ld, scale_s)
    vis = rng.integers(0, ld + 1, rows).astype(np.int64)
    vis[0] = 0                                                 # a row that sees nothing
    mine = [sc.copy(), m.copy(), l.copy()]
    twin = [sc.copy(), m.copy(), l.copy()]
    a_mine = sb.update(*mine, vis, 0.7, pool=Pool(threads, align=1))
    a_twin = sb.update_twin(*twin, vis, 0.7)
    assert a_mine[0] == 1.0 and np.all(mine[0][0] == 0)
    assert np.all(mine[0][np.arange(ld)[None, :] >= vis[:, None]] == 0)
    for got, want in zip(mine + [a_mine], twin + [a_twin]):
        np.testing.assert_allclose(got, want, rtol=3e-6, atol=1e-37)


def test_any_thread_count_gives_the_same_bits():
    rng = np.random.default_rng(5)
    sc, m, l = state(rng, 37, 96, 4.0)
    vis = rng.integers(0, 97, 37).astype(np.int64)
    outs = []
    for threads in (1, 2, 3):
        s = [sc.copy(), m.copy(), l.copy()]
        outs.append((sb.update(*s, vis, 0.5, pool=Pool(threads, align=1)), *s))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("use_jit", [False, True])
def test_blocks_compose_to_one_softmax(use_jit):
    """A row fed block by block (acc = alpha acc + p v) equals softmax over the visible columns."""
    rng = np.random.default_rng(7)
    rows, S, dv = 6, 200, 5
    scores = (rng.standard_normal((rows, S)) * 3).astype(np.float32)
    v = rng.standard_normal((S, dv)).astype(np.float32)
    vis_total = np.array([1, 15, 16, 17, 120, 200])
    update = sb.update if use_jit else sb.update_twin
    m = np.full(rows, -np.inf, np.float32)
    l = np.zeros(rows, np.float32)
    acc = np.zeros((rows, dv), np.float32)
    for k0 in range(0, S, 48):
        k1 = min(S, k0 + 48)
        blk = np.zeros((rows, 48), np.float32)
        blk[:, :k1 - k0] = scores[:, k0:k1]
        vb = np.zeros((48, dv), np.float32)
        vb[:k1 - k0] = v[k0:k1]
        alpha = update(blk, m, l, np.clip(vis_total - k0, 0, k1 - k0).astype(np.int64), 0.9)
        acc = acc * alpha[:, None] + blk @ vb
    for i, n in enumerate(vis_total):
        s = scores[i, :n].astype(np.float64) * 0.9
        p = np.exp(s - s.max())
        np.testing.assert_allclose(acc[i] / l[i], (p / p.sum()) @ v[:n], rtol=1e-5, atol=1e-6)


def test_bad_shapes_are_refused():
    sc = np.zeros((3, 20), np.float32)
    with pytest.raises(ValueError, match="multiple of 16"):
        sb.update(sc, np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.int64), 1.0)
    sc = np.zeros((3, 16), np.float32)
    with pytest.raises(ValueError, match="visible"):
        sb.update(sc, np.zeros(3, np.float32), np.zeros(3, np.float32), np.full(3, 17, np.int64), 1.0)
    with pytest.raises(ValueError, match="positive"):
        sb.update(sc, np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.int64), 0.0)
    with pytest.raises(ValueError, match="vis"):
        sb.update(sc, np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(2, np.int64), 1.0)
