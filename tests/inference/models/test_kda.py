"""The chunked WY delta rule against the plain sequential loop (llama.cpp's fused op, per token).

Random inputs of 1..1000 tokens, every chunk boundary, calls split anywhere with the state
carried across them: outputs and final state agree to 1e-4 relative. The reference here is a
deliberately plain per-head, per-token float64 loop written from the spec (section 1.3 step 7).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.models import kda


def plain_loop(q, k, v, g, beta, S):
    """S <- diag(e^g) S; S += k (beta (v - S^T k))^T; o = S^T q / sqrt(dv); per head, per token."""
    T, H, dv = v.shape
    S = S.astype(np.float64).copy()
    o = np.zeros((T, H, dv))
    for t in range(T):
        for h in range(H):
            S[h] *= np.exp(g[t, h].astype(np.float64))[:, None]
            delta = beta[t, h] * (v[t, h] - S[h].T @ k[t, h])
            S[h] += np.outer(k[t, h], delta)
            o[t, h] = S[h].T @ q[t, h] / np.sqrt(dv)
    return o, S


def inputs(seed, T, H=2, d=16, g_scale=0.3):
    rng = np.random.default_rng(seed)
    q = kda.l2_norm(rng.standard_normal((T, H, d)).astype(np.float32), 1e-5)
    k = kda.l2_norm(rng.standard_normal((T, H, d)).astype(np.float32), 1e-5)
    v = rng.standard_normal((T, H, d)).astype(np.float32)
    g = (-g_scale * rng.exponential(1.0, (T, H, d))).astype(np.float32)
    beta = rng.uniform(0, 1, (T, H)).astype(np.float32)
    S0 = (0.5 * rng.standard_normal((H, d, d))).astype(np.float32)
    return q, k, v, g, beta, S0


def run_split(fn, args, S, cuts, **kw):
    q, k, v, g, beta = args
    bounds = [0, *sorted(set(cuts)), len(q)]
    outs = [fn(q[a:b], k[a:b], v[a:b], g[a:b], beta[a:b], S, **kw) for a, b in zip(bounds, bounds[1:]) if b > a]
    return np.concatenate(outs)


def assert_rel(got, want, rel=1e-4):
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=rel, atol=rel * scale)


@pytest.mark.parametrize("chunk", [16, 64])
@pytest.mark.parametrize("mult", [1, 2, 3])
@pytest.mark.parametrize("off", [-1, 0, 1])
def test_every_chunk_boundary(chunk, mult, off):
    T = chunk * mult + off
    q, k, v, g, beta, S0 = inputs(T * 7 + chunk, T)
    o_ref, S_ref = plain_loop(q, k, v, g, beta, S0)
    S = S0.copy()
    o = kda.gated_delta_chunked(q, k, v, g, beta, S, chunk)
    assert_rel(o, o_ref)
    assert_rel(S, S_ref)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 1000), seed=st.integers(0, 2 ** 31), g_scale=st.sampled_from([0.01, 0.3, 2.0]),
       cuts=st.lists(st.integers(0, 1000), max_size=4), chunk=st.sampled_from([16, 64]))
def test_chunked_calls_equal_the_sequential_loop(T, seed, g_scale, cuts, chunk):
    """Any length, any split into calls (the state carried), against the whole-sequence loop."""
    q, k, v, g, beta, S0 = inputs(seed, T, g_scale=g_scale)
    S_rec = S0.copy()
    o_ref = kda.gated_delta_rule(q, k, v, g, beta, S_rec)
    S = S0.copy()
    o = run_split(kda.gated_delta_chunked, (q, k, v, g, beta), S, [c for c in cuts if c < T], chunk=chunk)
    assert_rel(o, o_ref)
    assert_rel(S, S_rec)


@pytest.mark.parametrize("T", [1, 255, 256, 1000])
def test_dispatch_equals_plain_loop_on_long_inputs(T):
    """kda.gated_delta (what the mixer calls) against the float64 plain loop, 1000 tokens too."""
    q, k, v, g, beta, S0 = inputs(T, T, H=2, d=8)
    o_ref, S_ref = plain_loop(q, k, v, g, beta, S0)
    S = S0.copy()
    assert_rel(kda.gated_delta(q, k, v, g, beta, S), o_ref)
    assert_rel(S, S_ref)


@pytest.mark.parametrize("g_scale", [40.0, 2000.0])
def test_extreme_decay_stays_exact(g_scale):
    """Cumulative log decay beyond float64's e^x range inside a chunk (and even in one step, and
    beyond float32's inside one sub-block): still exact and finite."""
    q, k, v, g, beta, S0 = inputs(3, 70, g_scale=g_scale)
    assert -np.cumsum(g[:64], axis=0).min() > 710.0
    o_ref, S_ref = plain_loop(q, k, v, g, beta, S0)
    S = S0.copy()
    o = kda.gated_delta_chunked(q, k, v, g, beta, S, 64)
    assert np.isfinite(o).all()
    assert_rel(o, o_ref)
    assert_rel(S, S_ref)


@pytest.mark.parametrize("heads", [1, 2])
def test_heads_in_groups(monkeypatch, heads):
    """Heads go kda.HEADS at a time (a last, smaller group too): the same as all at once."""
    q, k, v, g, beta, S0 = inputs(11, 77, H=5)
    o_ref, S_ref = plain_loop(q, k, v, g, beta, S0)
    monkeypatch.setattr(kda, "HEADS", heads)
    S = S0.copy()
    assert_rel(kda.gated_delta_chunked(q, k, v, g, beta, S, 16), o_ref)
    assert_rel(S, S_ref)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 64, 67, 150])
def test_causal_conv_in_row_blocks_is_the_plain_sum(T):
    """The conv in blocks of kda.CONV_ROWS rows: the same bits as sum_{i=0..3} w_i x[t+i] summed
    from i = 0 (as the decode kernel's twin does), and the state carried across split calls."""
    rng = np.random.default_rng(T)
    u = rng.standard_normal((T, 40)).astype(np.float32)
    w = rng.standard_normal((40, 4)).astype(np.float32)
    st0 = rng.standard_normal((3, 40)).astype(np.float32)
    x = np.concatenate([st0, u])
    want = np.zeros_like(u)
    for i in range(4):
        want += x[i:i + T] * w[:, i]
    st = st0.copy()
    np.testing.assert_array_equal(kda.causal_conv(u, st, w), want)
    np.testing.assert_array_equal(st, x[-3:])
    st = st0.copy()
    cuts = [0, min(1, T), min(3, T), T]
    parts = [kda.causal_conv(u[a:b], st, w) for a, b in zip(cuts, cuts[1:]) if b > a]
    np.testing.assert_array_equal(np.concatenate(parts), want)
