"""BF16, IQ4_NL, IQ4_XS, Q3_K, Q2_K matvec kernels (jit/kernels/matvec_more.py) on blocks built by
hypothesis: equal to their numpy twins to float32 rounding and to gguf's dequantize(W) @ x up to
the activation rounding, the same bits for 1..3 threads, on every CPU path; the twins decode the
blocks exactly as gguf does; ops.linear on the JIT matches its numpy path."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf import quants as gq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inference import ops
from inference.gguf_file import Tensor
from jit import linear as jl
from jit import twins_more
from jit.kernels.matvec_more import MORE

from .conftest import CPU_PRESETS, F16_FIELDS, cpu_of, random_weights
from .test_matvec import check_matvec

NEW = tuple(MORE)
finite_f16 = st.floats(width=16, allow_nan=False, allow_infinity=False)


@st.composite
def weights(draw, qtype: T):
    """(rows, n_cols, weight bytes): up to 6 blocks (BF16: 64 values) drawn byte by byte by
    hypothesis with finite f16 fields, placed over the matrix in an order it also draws."""
    bs, bb = GGML_QUANT_SIZES[qtype]
    rows = draw(st.sampled_from([1, 2, 5, 7, 17, 40]))
    order = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if qtype == T.BF16:
        n_cols = draw(st.integers(1, 300))
        bits = np.frombuffer(draw(st.binary(min_size=2, max_size=128)), np.uint8)
        bits = np.pad(bits, (0, bits.size % 2)).view(np.uint16)
        bits = np.where((bits & 0x7F80) > ((127 + 40) << 7), bits & 0xBFFF, bits)   # float32 products stay finite
        return rows, n_cols, bits[order.integers(0, bits.size, rows * n_cols)].astype(np.uint16).view(np.uint8)
    n_cols = bs * draw(st.integers(1, 8 if bs == 256 else 40))
    k = draw(st.integers(1, 6))
    b = np.frombuffer(draw(st.binary(min_size=k * bb, max_size=k * bb)), np.uint8).reshape(k, bb).copy()
    for off in F16_FIELDS[qtype]:
        b[:, off:off + 2] = np.array(draw(st.lists(finite_f16, min_size=k, max_size=k)), np.float16).view(
            np.uint8).reshape(-1, 2)
    return rows, n_cols, b[order.integers(0, k, rows * n_cols // bs)].reshape(-1)


@pytest.mark.parametrize("preset", CPU_PRESETS)
@pytest.mark.parametrize("qtype", NEW, ids=lambda t: t.name)
def test_hypothesis_blocks_against_twin_gguf_and_threads(qtype, preset):
    cpu = cpu_of(preset)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                          HealthCheck.filter_too_much])
    @given(p=weights(qtype), scale=st.sampled_from([1e-3, 1.0, 50.0]), seed=st.integers(0, 2**32 - 1))
    def check(p, scale, seed):
        rows, n_cols, w = p
        x = (np.random.default_rng(seed).standard_normal(n_cols) * scale).astype(np.float32)
        check_matvec(qtype, cpu, w, rows, n_cols, x)

    check()


@pytest.mark.parametrize("qtype", NEW, ids=lambda t: t.name)
def test_many_blocks_and_rows_not_a_multiple_of_the_threads(qtype):
    bs = GGML_QUANT_SIZES[qtype][0]
    rows, n_cols = 13, (64 * 256 if bs == 256 else 2048 + (bs == 1) * 7)
    rng = np.random.default_rng(11)
    w = random_weights(rng, qtype, rows, n_cols, wide_scales=True)
    check_matvec(qtype, cpu_of("host"), w, rows, n_cols, rng.standard_normal(n_cols).astype(np.float32))


@pytest.mark.parametrize("qtype", [T.IQ4_NL, T.IQ4_XS, T.Q2_K, T.Q3_K], ids=lambda t: t.name)
def test_twin_decoding_is_gguf_dequantize(qtype):
    """The twins' codebook / scale / bit unpacking, turned into weights, is gguf's dequantize."""
    rng = np.random.default_rng(5)
    bb = GGML_QUANT_SIZES[qtype][1]
    b = random_weights(rng, qtype, 4, 256, wide_scales=True).reshape(-1, bb)
    want = gq.dequantize(b, qtype).reshape(len(b), -1).astype(np.float64)
    f16 = lambda o: b[:, o:o + 2].copy().view(np.float16).astype(np.float64)  # noqa: E731
    if qtype == T.IQ4_NL:
        got = f16(0) * twins_more.iq4_values(b[:, 2:])
    elif qtype == T.IQ4_XS:
        vals = twins_more.iq4_values(b[:, 8:].reshape(-1, 8, 16))
        got = (f16(0)[:, :, None] * twins_more.iq4_xs_scales(b)[:, :, None] * vals).reshape(len(b), -1)
    elif qtype == T.Q2_K:
        sc = b[:, :16].astype(np.int64)
        q = twins_more.two_bit_values(b[:, 16:80]).reshape(-1, 16, 16)
        got = (f16(80)[:, :, None] * (sc & 15)[:, :, None] * q - f16(82)[:, :, None] * (sc >> 4)[:, :, None])
    else:
        hm = b[:, :32].astype(np.int64)
        bits = ((hm[:, None, :] >> np.arange(8)[:, None]) & 1).reshape(-1, 256)
        q = (twins_more.two_bit_values(b[:, 32:96]) + 4 * bits - 4).reshape(-1, 16, 16)
        got = f16(108)[:, :, None] * twins_more.q3_K_scales(b[:, 96:108])[:, :, None] * q
    np.testing.assert_allclose(got.reshape(len(b), -1), want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("qtype", NEW, ids=lambda t: t.name)
@pytest.mark.parametrize("rows, n_tok", [(1, 1), (37, 5), (130, 70)])
def test_ops_linear_on_the_jit_matches_numpy(qtype, rows, n_tok, monkeypatch):
    """End to end: ops.linear goes to the JIT for these types and agrees with the numpy path
    (same activation rounding, float64 sums) as closely as the other types do (test_linear)."""
    bs = GGML_QUANT_SIZES[qtype][0]
    n_cols = 3 * bs if bs > 1 else 49
    rng = np.random.default_rng(rows + n_tok)
    w = Tensor("w", qtype, (n_cols, rows), random_weights(rng, qtype, rows, n_cols))
    x = rng.standard_normal((n_tok, n_cols)).astype(np.float32)
    monkeypatch.setenv("LECTERN_KERNELS", "jit")
    y_jit = ops.linear(w, x)
    assert id(w) in jl._ops                                    # the JIT op was used
    monkeypatch.setenv("LECTERN_KERNELS", "numpy")
    y_np = ops.linear(w, x)
    assert y_jit.shape == y_np.shape == (n_tok, rows)
    assert np.abs(y_jit - y_np).max() <= 2e-5 * (np.abs(y_np).max() + 1e-30)
