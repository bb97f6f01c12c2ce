"""jit.multi.linear_each: K weights, each reading its own row, as one pool job, gives exactly the
bits of K separate JIT linears, for every supported type, any row mapping and thread count."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import ops
from inference.gguf_file import Tensor
from jit import linear as jl
from jit.kernels.matvec import SUPPORTED
from jit.multi import linear_each, linear_parts
from tests.jit.conftest import random_weights


def block(qtype) -> int:
    return GGML_QUANT_SIZES[qtype][0] if GGML_QUANT_SIZES[qtype][0] > 1 else 16


@settings(max_examples=30, deadline=None)
@given(qi=st.sampled_from(range(len(SUPPORTED))), k=st.integers(1, 9), rows=st.integers(1, 70),
       n_blocks=st.integers(1, 3), n_x=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_each_weight_gets_its_own_linear_bits(qi, k, rows, n_blocks, n_x, seed):
    qtype = SUPPORTED[qi]
    rng = np.random.default_rng(seed)
    n_in = n_blocks * block(qtype)
    ws = [Tensor(f"w{i}", qtype, (n_in, rows), random_weights(rng, qtype, rows, n_in)) for i in range(k)]
    xs = rng.standard_normal((n_x, n_in)).astype(np.float32)
    which = rng.integers(0, n_x, k).tolist()
    with np.errstate(all="ignore"):
        got = linear_each(ws, xs, which)
        want = np.stack([jl.linear(w, xs[r]) for w, r in zip(ws, which)])
    assert got.shape == (k, rows)
    assert np.array_equal(got, want, equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(qis=st.lists(st.sampled_from(range(len(SUPPORTED))), min_size=1, max_size=6),
       widths=st.lists(st.integers(1, 70), min_size=6, max_size=6), n_x=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_parts_of_any_widths_and_types_get_their_own_linear_bits(qis, widths, n_x, seed):
    """linear_parts: weights of one input width, any output widths and types (a KDA layer's q, k,
    v, f_a, beta, g_a) in one job: each part equals its own linear bit for bit."""
    rng = np.random.default_rng(seed)
    n_in = 256                                      # every type's block divides it
    ws = [Tensor(f"w{i}", SUPPORTED[q], (n_in, widths[i]), random_weights(rng, SUPPORTED[q], widths[i], n_in))
          for i, q in enumerate(qis)]
    xs = rng.standard_normal((n_x, n_in)).astype(np.float32)
    which = rng.integers(0, n_x, len(ws)).tolist()
    with np.errstate(all="ignore"):
        got = linear_parts(ws, xs, which)
        want = [jl.linear(w, xs[r]) for w, r in zip(ws, which)]
    assert [g.shape for g in got] == [(widths[i],) for i in range(len(ws))]
    for g, w in zip(got, want):
        assert np.array_equal(g, w, equal_nan=True)
    with np.errstate(all="ignore"):
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(ops.linear_parts(ws, xs, which), got))


def test_ops_linear_each_is_the_same_on_both_paths(monkeypatch):
    rng = np.random.default_rng(2)
    qtype = SUPPORTED[4]
    ws = [Tensor(f"w{i}", qtype, (64, 40), random_weights(rng, qtype, 40, 64)) for i in range(3)]
    xs = rng.standard_normal((3, 64)).astype(np.float32)
    y = ops.linear_each(ws, xs)
    assert np.array_equal(y, linear_each(ws, xs))
    monkeypatch.setenv("LECTERN_KERNELS", "numpy")
    ref = np.stack([ops.linear(w, xs[i:i + 1])[0] for i, w in enumerate(ws)])
    assert np.array_equal(ops.linear_each(ws, xs), ref)
    assert np.abs(y - ref).max() <= 2e-5 * np.abs(ref).max()


def test_shapes_are_checked():
    rng = np.random.default_rng(3)
    qtype = SUPPORTED[4]
    a = Tensor("a", qtype, (64, 16), random_weights(rng, qtype, 16, 64))
    b = Tensor("b", qtype, (64, 32), random_weights(rng, qtype, 32, 64))
    with pytest.raises(ValueError, match="one shape"):
        linear_each([a, b], np.zeros((2, 64), np.float32))
    with pytest.raises(ValueError, match="one row of xs per weight"):
        linear_each([a, a], np.zeros((2, 64), np.float32), [0, 2])
