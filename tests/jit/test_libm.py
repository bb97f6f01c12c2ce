"""jit.libm: the C library's cosf/sinf and tanhf from one native loop give the bits of the per-value
ctypes calls (what llama.cpp's RoPE cache and GELU table use), including huge, tiny and special
values."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inference import ggml_cpu
from jit import libm

pytestmark = pytest.mark.skipif(ggml_cpu._LIBM is None, reason="no C math library found by ctypes")


def per_value(t: np.ndarray):
    lib = ggml_cpu._LIBM
    return (np.array([lib.cosf(float(v)) for v in t], np.float32),
            np.array([lib.sinf(float(v)) for v in t], np.float32))


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.integers(0, 300), elements=st.floats(width=32, allow_nan=False)))
def test_native_loop_gives_the_per_value_bits(t):
    got, want = libm.cosf_sinf(ggml_cpu._LIBM, t), per_value(t)
    for g, w in zip(got, want):
        assert np.array_equal(g.view(np.uint32), w.view(np.uint32))


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.integers(0, 300), elements=st.floats(width=32)))
def test_native_tanhf_gives_the_per_value_bits(t):
    want = np.array([ggml_cpu._LIBM.tanhf(float(v)) for v in t], np.float32)
    assert np.array_equal(libm.tanhf(ggml_cpu._LIBM, t).view(np.uint32), want.view(np.uint32))


def test_the_gelu_table_is_the_same_with_and_without_the_native_loop(monkeypatch):
    native = ggml_cpu.gelu_table().copy()
    monkeypatch.setattr(ggml_cpu, "_GELU_TABLE", [])
    monkeypatch.setenv("LECTERN_KERNELS", "numpy")                 # tanhf called value by value
    assert np.array_equal(ggml_cpu.gelu_table().view(np.uint32), native.view(np.uint32))


def test_rope_angles_of_a_long_batch_match_position_by_position(monkeypatch):
    """rope_angles for 700 new positions at once (the native loop) equals positions computed one
    at a time through the per-value calls (one angle per libm call; fresh caches both times)."""
    assert ggml_cpu._native_libm() is not None
    pos = np.arange(700)
    monkeypatch.setattr(ggml_cpu, "_ROPE_CACHE", {})
    batch = ggml_cpu.rope_angles(pos, 128, 1e6, 1.0, None)
    monkeypatch.setattr(ggml_cpu, "_ROPE_CACHE", {})
    one = [ggml_cpu.rope_angles(np.array([p]), 128, 1e6, 1.0, None) for p in pos[::37]]
    assert np.array_equal(batch[0][::37], np.concatenate([c for c, _ in one]))
    assert np.array_equal(batch[1][::37], np.concatenate([s for _, s in one]))
