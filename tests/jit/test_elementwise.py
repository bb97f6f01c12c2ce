"""jit.elementwise: the fused SwiGLU kernel gives exactly ggml_cpu.silu(g) * u (llama.cpp's
ggml_vec_swiglu_f32), including exp underflow/overflow, zeros and huge values."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import ggml_cpu, ops
from jit import elementwise as je

pytestmark = pytest.mark.skipif(not je.usable(16), reason="the elementwise kernels need F16C and FMA")


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 5), n16=st.integers(1, 130), scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
       seed=st.integers(0, 10_000))
def test_swiglu_same_bits_as_ggml_twin(rows, n16, scale, seed):
    rng = np.random.default_rng(seed)
    g = (rng.standard_normal((rows, 16 * n16)) * scale).astype(np.float32)
    u = rng.standard_normal((rows, 16 * n16)).astype(np.float32)
    g.reshape(-1)[:6] = [0.0, -0.0, 88.0, -88.0, 104.0, -104.0][:g.size]
    assert np.array_equal(je.swiglu(g, u), ggml_cpu.silu(g) * u)


def test_ops_swiglu_on_both_paths(monkeypatch):
    rng = np.random.default_rng(3)
    g, u = rng.standard_normal((2, 3, 64)).astype(np.float32)
    odd_g, odd_u = rng.standard_normal((2, 3, 40)).astype(np.float32)   # not 16-wide: numpy
    out = {}
    for path in ("jit", "numpy"):
        monkeypatch.setenv("LECTERN_KERNELS", path)
        out[path] = (ops.swiglu_ggml(g, u), ops.swiglu_ggml(odd_g, odd_u))
    assert np.array_equal(out["jit"][0], out["numpy"][0])
    assert np.array_equal(out["jit"][1], ggml_cpu.silu(odd_g) * odd_u)


def test_swiglu_refuses_mismatched_shapes():
    with pytest.raises(ValueError):
        je.swiglu(np.zeros(32, np.float32), np.zeros(16, np.float32))
    with pytest.raises(ValueError):
        je.swiglu(np.zeros(24, np.float32), np.zeros(24, np.float32))


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 4), n16=st.integers(1, 100), scale=st.sampled_from([1e-3, 1.0, 6.0, 1e3]),
       seed=st.integers(0, 10_000))
def test_gelu_mul_same_bits_as_the_numpy_gelu(rows, n16, scale, seed):
    rng = np.random.default_rng(seed)
    g = (rng.standard_normal((rows, 16 * n16)) * scale).astype(np.float32)
    u = rng.standard_normal((rows, 16 * n16)).astype(np.float32)
    g.reshape(-1)[:6] = [0.0, -0.0, 10.0, -10.0, 9.999, -9.999][:g.size]
    assert np.array_equal(je.gelu_mul(g, u), ggml_cpu.geglu(g, u))


def test_ops_gelu_f16_mul_on_both_paths(monkeypatch):
    rng = np.random.default_rng(4)
    g, u = (rng.standard_normal((2, 5, 48)) * 3).astype(np.float32)
    out = {}
    for path in ("jit", "numpy"):
        monkeypatch.setenv("LECTERN_KERNELS", path)
        out[path] = ops.gelu_f16_mul(g, u)
    assert np.array_equal(out["jit"], out["numpy"])


def _both(monkeypatch, f):
    out = {}
    for path in ("jit", "numpy"):
        monkeypatch.setenv("LECTERN_KERNELS", path)
        out[path] = f()
    return out["jit"], out["numpy"]


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), n16=st.sampled_from([1, 2, 4, 16, 36, 40]), scale=st.sampled_from([1e-4, 1.0, 1e4]),
       eps=st.sampled_from([1e-6, 1e-5]), seed=st.integers(0, 10_000))
def test_rms_norm_same_bits_on_both_paths(rows, n16, scale, eps, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, 16 * n16)) * scale).astype(np.float32)
    w = rng.standard_normal(16 * n16).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        a, b = _both(mp, lambda: ops.rms_norm(x, w, eps))
    assert np.array_equal(a, b)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 30), H=st.integers(1, 5), half=st.integers(1, 40), extra=st.integers(0, 9),
       p0=st.integers(0, 5000), neox=st.booleans(), seed=st.integers(0, 10_000))
def test_rope_same_bits_on_both_paths(T, H, half, extra, p0, neox, seed):
    rng = np.random.default_rng(seed)
    D = 2 * half + extra                        # dims past rope_dim pass unchanged
    x = rng.standard_normal((T, H, D)).astype(np.float32)
    pos = np.arange(p0, p0 + T)
    f = ops.rope_neox if neox else ops.rope_norm
    with pytest.MonkeyPatch.context() as mp:
        a, b = _both(mp, lambda: f(x, pos, 2 * half, 10000.0, 0.5))
    assert np.array_equal(a, b)
