"""moe.py (shared by kimi-linear and step35) against a per-token transcription of llama.cpp's
build_moe_ffn (llama-graph.cpp): gate function, biased selection, renormalisation floor, scale,
SwiGLU clamp, and the grouped-by-expert evaluation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from gguf import GGMLQuantizationType

from inference import ops
from inference.errors import UnsupportedModelError
from inference.gguf_file import Tensor
from inference.models import moe


def f32_tensor(name: str, a: np.ndarray) -> Tensor:
    """A float32 numpy array (numpy shape) as a GGUF-style tensor (ne = reversed shape)."""
    a = np.ascontiguousarray(a, np.float32)
    return Tensor(name, GGMLQuantizationType.F32, tuple(reversed(a.shape)), a.view(np.uint8).reshape(-1))


def route_one(logit: np.ndarray, k: int, gating: int, bias, norm_w: bool, scale: float):
    """One token, written out step by step as llama.cpp orders it (float64)."""
    x = logit.astype(np.float64)
    if gating == 1:
        p = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    elif gating == 2:
        p = 1 / (1 + np.exp(-x))
    elif gating == 3:
        p = x
    else:
        p = np.sqrt(np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))))
    score = p + (bias if bias is not None else 0)
    sel = sorted(range(len(x)), key=lambda e: -score[e])[:k]
    w = p[sel]
    if gating == 3:
        w = np.exp(w - w.max()) / np.exp(w - w.max()).sum()
    if norm_w:
        w = w / max(w.sum(), 6.103515625e-5)
    if scale not in (0.0, 1.0):
        w = w * scale
    return sel, w


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), gating=st.sampled_from([1, 2, 3, 4]), k=st.integers(1, 4),
       with_bias=st.booleans(), norm_w=st.booleans(), scale=st.sampled_from([0.0, 1.0, 2.446, 3.0]))
def test_route_matches_per_token_reference(seed, gating, k, with_bias, norm_w, scale):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((7, 8)) * 3).astype(np.float32)
    bias = (rng.standard_normal(8) * 0.5).astype(np.float32) if with_bias else None
    sel, w = moe.route(logits, k, gating, bias, norm_w, scale)
    for t in range(7):
        want_sel, want_w = route_one(logits[t], k, gating, bias, norm_w, scale)
        assert list(sel[t]) == want_sel
        np.testing.assert_allclose(w[t], want_w, rtol=1e-5, atol=1e-6)


def test_selection_bias_selects_but_does_not_weight():
    logits = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    bias = np.array([10.0, 0.0, 0.0, 0.0], np.float32)          # pushes expert 0 into the top 2
    sel, w = moe.route(logits, 2, moe.GATING_SIGMOID, bias, norm_w=False)
    assert list(sel[0]) == [0, 3]
    np.testing.assert_allclose(w[0], [0.5, 1 / (1 + np.exp(-3.0))], rtol=1e-6)


def test_renormalisation_floor():
    logits = np.full((1, 4), -30.0, np.float32)                  # sigmoid ~ 1e-13: sum under the floor
    _, w = moe.route(logits, 2, moe.GATING_SIGMOID, norm_w=True)
    np.testing.assert_allclose(w[0], 1 / (1 + np.exp(30.0)) / 6.103515625e-5, rtol=1e-5)


def test_swiglu_clamp():
    gate = np.array([-50.0, 0.0, 3.0, 50.0], np.float32)
    up = np.array([100.0, 1.0, -100.0, 2.0], np.float32)
    np.testing.assert_allclose(moe.swiglu(gate, up), ops.silu(gate) * up)
    L = 7.0
    want = np.minimum(ops.silu(gate), L) * np.clip(up, -L, L)
    np.testing.assert_allclose(moe.swiglu(gate, up, L), want)
    np.testing.assert_allclose(moe.swiglu(gate, up, 1e-7), ops.silu(gate) * up)   # <= 1e-6: off


@pytest.mark.parametrize("limit", [0.0, 0.5])
def test_grouped_experts_equal_per_token_sum(limit, monkeypatch):
    monkeypatch.setattr(ops, "ROUND_ACTIVATIONS", False, raising=False)
    rng = np.random.default_rng(3)
    T, E, F, n_exp, k = 9, 16, 12, 5, 2
    gate = rng.standard_normal((n_exp, F, E)).astype(np.float32)   # numpy (n_exp, n_ff, E)
    up = rng.standard_normal((n_exp, F, E)).astype(np.float32)
    down = rng.standard_normal((n_exp, E, F)).astype(np.float32)
    router = rng.standard_normal((n_exp, E)).astype(np.float32)
    bias = rng.standard_normal(n_exp).astype(np.float32)
    y = rng.standard_normal((T, E)).astype(np.float32)
    out = moe.moe_ffn(y, f32_tensor("r", router), f32_tensor("g", gate), f32_tensor("u", up),
                      f32_tensor("d", down), k, moe.GATING_SIGMOID, bias, True, 2.446, limit)
    sel, w = moe.route(y @ router.T, k, moe.GATING_SIGMOID, bias, True, 2.446)
    for t in range(T):
        want = sum(w[t, j] * (down[e] @ moe.swiglu(gate[e] @ y[t], up[e] @ y[t], limit))
                   for j, e in enumerate(sel[t]))
        np.testing.assert_allclose(out[t], want, rtol=1e-4, atol=1e-4)


def test_unknown_gating_refused():
    with pytest.raises(UnsupportedModelError, match="expert_gating_func 7"):
        moe.check_gating(7, "model.gguf")
    assert moe.check_gating(2, "model.gguf") == moe.GATING_SIGMOID


def test_grouped_experts_equal_the_per_token_loop():
    """experts() groups a chunk's tokens by expert (each expert's weights read once per call);
    the result must be the plain per-token, per-slot sum of the chosen experts (Q8_0 weights)."""
    from inference.synthetic_blocks import random_tensor

    rng = np.random.default_rng(5)
    E, F, X, k, T = 64, 96, 6, 3, 40

    def stack(n_in, n_out, name):
        data = random_tensor(GGMLQuantizationType.Q8_0, n_in * n_out * X, n_in ** -0.5, rng)
        return Tensor(name, GGMLQuantizationType.Q8_0, (n_in, n_out, X), data)

    gate, up, down = stack(E, F, "g"), stack(E, F, "u"), stack(F, E, "d")
    y = rng.standard_normal((T, E)).astype(np.float32)
    sel = np.stack([rng.choice(X, k, replace=False) for _ in range(T)])
    w = rng.uniform(0.1, 1, (T, k)).astype(np.float32)
    got = moe.experts(y, sel, w, gate, up, down, limit=0.0)
    want = np.zeros((T, E), np.float32)
    for t in range(T):
        for s in range(k):
            e = int(sel[t, s])
            h = moe.swiglu(ops.linear(ops.expert(gate, e), y[t:t + 1]), ops.linear(ops.expert(up, e), y[t:t + 1]))
            want[t] += w[t, s] * ops.linear(ops.expert(down, e), h)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("qtype", [GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_K, GGMLQuantizationType.F16])
def test_one_token_takes_the_batch_path_bits(qtype):
    """Decode (T == 1) runs every selected expert's gate/up as one job and the downs as another
    (ops.linear_each); the result is the bits of the grouped path for that token (the token twice
    in one batch: two tokens sum in the decode order for every weight type)."""
    from inference.synthetic_blocks import random_tensor

    rng = np.random.default_rng(7)
    E, F, X, k = 256, 512, 6, 3

    def stack(n_in, n_out, name):
        data = random_tensor(qtype, n_in * n_out * X, n_in ** -0.5, rng)
        return Tensor(name, qtype, (n_in, n_out, X), data)

    gate, up, down = stack(E, F, "g"), stack(E, F, "u"), stack(F, E, "d")
    y = rng.standard_normal((1, E)).astype(np.float32)
    sel = rng.choice(X, (1, k), replace=False)
    w = rng.uniform(0.1, 1, (1, k)).astype(np.float32)
    one = moe.experts(y, sel, w, gate, up, down, limit=0.7)
    two = moe.experts(np.repeat(y, 2, 0), np.repeat(sel, 2, 0), np.repeat(w, 2, 0), gate, up, down, limit=0.7)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[0], two[1])
