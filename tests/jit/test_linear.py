"""jit.linear: the batch (matmul_tiles) path gives each (row, token) exactly the matvec's bits
(for Q4_K/Q6_K: llama.cpp's batch order, conftest.batch_reference), on odd shapes, any tile and
thread split; against ops.linear's numpy path to float32 rounding;
ops.linear delegates to it by LECTERN_KERNELS."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import ops
from inference.gguf_file import Tensor
from jit import api
from jit import linear as jl
from jit.kernels.matvec import SUPPORTED
from jit.kernels.tiles import P_STEP
from jit.pool import Pool
from tests.jit.conftest import batch_reference, random_weights


def tensor(qtype, rows: int, n_cols: int, seed: int = 0) -> Tensor:
    data = random_weights(np.random.default_rng(seed), qtype, rows, n_cols)
    return Tensor("w", qtype, (n_cols, rows), data)


def block(qtype) -> int:
    return GGML_QUANT_SIZES[qtype][0] if GGML_QUANT_SIZES[qtype][0] > 1 else 16


@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda q: q.name)
@pytest.mark.parametrize("rows, n_tok", [(1, 2), (37, 5), (130, 70)])
def test_batch_equals_matvec_bit_for_bit(qtype, rows, n_tok):
    n_cols = 3 * block(qtype) + (1 if block(qtype) == 16 else 0)   # odd: 3 blocks, F16/F32 49 values
    w = tensor(qtype, rows, n_cols, seed=rows)
    x = np.random.default_rng(n_tok).standard_normal((n_tok, n_cols)).astype(np.float32)
    op = jl.LinearOp(w)
    batch = op(x)                                     # matmul_tiles (in tiles of TILE_TOKENS)
    per_token = np.stack([api.matvec(w, xi) for xi in x])
    assert batch.shape == (n_tok, rows) and batch.dtype == np.float32
    assert np.array_equal(batch, batch_reference(w, x))
    assert np.array_equal(op(x[1]), per_token[1])
    # the numpy reference (same activation rounding, float64 sums)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LECTERN_KERNELS", "numpy")
        ref = ops.linear(w, x)
    scale = np.abs(ref).max() + 1e-30
    assert np.abs(batch - ref).max() <= 2e-5 * scale


@settings(max_examples=25, deadline=None)
@given(qi=st.sampled_from(range(len(SUPPORTED))), rows=st.integers(1, 90), n_blocks=st.integers(1, 5),
       n_tok=st.integers(2, 20), step=st.integers(1, 40), threads=st.integers(1, 3))
def test_any_step_and_thread_split_gives_the_same_bits(qi, rows, n_blocks, n_tok, step, threads):
    qtype = SUPPORTED[qi]
    n_cols = n_blocks * block(qtype)
    w = tensor(qtype, rows, n_cols, seed=rows * 7 + n_blocks)
    x = np.random.default_rng(rows).standard_normal((n_tok, n_cols)).astype(np.float32)
    want = batch_reference(w, x)
    op = jl.LinearOp(w, pool=Pool(threads, align=1))
    op._p[P_STEP] = step                              # rows per matmul step
    assert np.array_equal(op(x), want)


def test_ops_linear_follows_lectern_kernels(monkeypatch):
    w = tensor(SUPPORTED[4], 40, 64)
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    calls = []
    real = jl.linear
    monkeypatch.setattr(jl, "linear", lambda w, x: calls.append(1) or real(w, x))
    monkeypatch.setenv("LECTERN_KERNELS", "jit")
    y_jit = ops.linear(w, x)
    assert calls == [1]
    monkeypatch.setenv("LECTERN_KERNELS", "numpy")
    y_np = ops.linear(w, x)
    assert calls == [1]
    assert np.abs(y_jit - y_np).max() <= 2e-5 * np.abs(y_np).max()
    monkeypatch.setattr(ops, "ROUND_ACTIVATIONS", False)   # unrounded math is numpy's alone
    monkeypatch.setenv("LECTERN_KERNELS", "jit")
    ops.linear(w, x)
    assert calls == [1]


def test_prepared_ops_are_cached_per_tensor_and_dropped_with_it():
    w = tensor(SUPPORTED[2], 16, 64)
    op = jl.op_for(w)
    assert jl.op_for(w) is op
    key = id(w)
    del w
    assert key not in jl._ops


@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda q: q.name)
def test_decode_after_a_batch_on_the_same_op(qtype):
    # a batch grows its own activation buffer; the decode path keeps using its fixed one
    n_cols = 2 * block(qtype)
    w = tensor(qtype, 48, n_cols)
    x = np.random.default_rng(3).standard_normal((70, n_cols)).astype(np.float32)
    op = jl.LinearOp(w)
    one = op(x[5])
    want = batch_reference(w, x)
    assert np.array_equal(want[5], one) or qtype.name in ("Q4_K", "Q6_K")   # those: llama.cpp's batch order
    for _ in range(3):
        batch = op(x)
        assert np.array_equal(op(x[5]), one) and np.array_equal(batch, want)
