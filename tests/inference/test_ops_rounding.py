"""ops' emulation of llama.cpp's activation rounding (Q8_0 / Q8_1 / Q8_K / F16) and F16 attention."""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import quants as gq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inference import ops
from inference.gguf_file import Tensor

finite = st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)
# Activations of a real layer: zero or at least 2^-100 in magnitude. Blocks whose largest value is
# near FLT_MIN overflow -127/max to inf in ggml too (quantize_row_q8_K_ref): not a case to compare.
activation = st.one_of(st.just(0.0), st.floats(2.0**-100, 1e3, width=32), st.floats(-1e3, -(2.0**-100), width=32))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (3, 64), elements=finite))
def test_q8_0_is_ggmls_quantizer(x):
    """Same as gguf's bit-exact port of ggml's quantize_row_q8_0_ref, up to the rounding of exact
    halves (the x86 kernel llama.cpp runs rounds them to even, the reference away from zero)."""
    ref = gq.dequantize(gq.quantize(x, Q.Q8_0), Q.Q8_0).reshape(x.shape)
    ours = ops.quantize_q8_0(x)
    d = np.abs(x).reshape(-1, 32).max(1).repeat(32).reshape(x.shape) / 127
    off = ours != ref
    assert np.all(np.abs(ours - ref)[off] <= d[off] * 1.001 + 1e-30)
    assert off.mean() <= 0.05


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (2, 512), elements=activation))
def test_q8_k_rounding(x):
    """Q8_K: per 256 block the element of largest magnitude maps to -127 exactly; error <= d/2."""
    y = ops.quantize_q8_K(x)
    for xb, yb in zip(x.reshape(-1, 256), y.reshape(-1, 256)):
        i = np.argmax(np.abs(xb))
        if xb[i] == 0:
            assert not yb.any()
            continue
        d = np.float32(1) / (np.float32(-127) / xb[i])
        q = yb / d
        assert np.allclose(q, np.rint(q), atol=1e-3) and q.max() <= 127.001 and q.min() >= -127.001
        assert np.all(np.abs(yb - xb) <= abs(d) * 0.5001 + 1e-30)


def random_q4_k(n_out: int, n_in: int, rng) -> np.ndarray:
    """Random Q4_K blocks (144 bytes: d, dmin f16, 12 bytes of 6-bit scales/mins, 128 of nibbles)."""
    raw = rng.integers(0, 256, (n_out * n_in // 256, 144), dtype=np.uint8)
    raw[:, 0:2] = np.array([0.01], np.float16).view(np.uint8)
    raw[:, 2:4] = np.array([0.005], np.float16).view(np.uint8)
    return raw.reshape(-1)


def test_linear_rounds_activations_by_weight_type():
    rng = np.random.default_rng(1)
    w32 = rng.standard_normal((8, 256)).astype(np.float32)
    x = rng.standard_normal((3, 256)).astype(np.float32)
    cases = [(qt, gq.quantize(w32, qt).reshape(-1).view(np.uint8)) for qt in (Q.Q8_0, Q.Q4_0, Q.F16)]
    cases.append((Q.Q4_K, random_q4_k(8, 256, rng)))
    rounded = {Q.Q8_0: ops.quantize_q8_0(x), Q.Q4_0: ops.quantize_q8_0(x), Q.Q4_K: ops.quantize_q8_K(x),
               Q.F16: x.astype(np.float16).astype(np.float32)}
    for qt, raw in cases:
        w = Tensor("w", qt, (256, 8), raw)
        wd = gq.dequantize(raw.reshape(-1, gq.GGML_QUANT_SIZES[qt][1]), qt).reshape(8, 256).astype(np.float64)
        want = rounded[qt].astype(np.float64) @ wd.T
        np.testing.assert_allclose(ops.linear(w, x), want, rtol=1e-6, atol=1e-5, err_msg=qt.name)
        assert np.abs(x.astype(np.float64) @ wd.T - want).max() > 1e-4   # the rounding is visible


def test_q4_1_min_term_uses_the_rounded_block_sum():
    """Q4_1 . Q8_1 in llama.cpp: d_w d_a sum(q_w q_a) + m_w * F16(d_a sum(q_a)) per block."""
    rng = np.random.default_rng(2)
    w32 = rng.standard_normal((4, 64)).astype(np.float32)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    blocks = gq.quantize(w32, Q.Q4_1).reshape(4, 2, 20)          # [out, block, bytes]
    d_w = blocks[..., 0:2].copy().view(np.float16).astype(np.float64)[..., 0]
    m_w = blocks[..., 2:4].copy().view(np.float16).astype(np.float64)[..., 0]
    nib = blocks[..., 4:]
    q_w = np.concatenate([nib & 15, nib >> 4], axis=-1).astype(np.float64)   # [out, block, 32]
    want = np.zeros((2, 4))
    for t in range(2):
        xb = x[t].reshape(2, 32)
        amax = np.abs(xb).max(1)
        d_a32 = (amax / np.float32(127)).astype(np.float32)
        q_a = np.rint(xb * (np.float32(127) / amax)[:, None]).astype(np.float64)
        d_a = d_a32.astype(np.float16).astype(np.float64)
        s_a = (d_a32 * np.float32(q_a.sum(1))).astype(np.float16).astype(np.float64)
        want[t] = ((d_w * d_a) * np.einsum("obk,bk->ob", q_w, q_a) + m_w * s_a).sum(1)
    w = Tensor("w", Q.Q4_1, (64, 4), blocks.reshape(-1).view(np.uint8))
    np.testing.assert_allclose(ops.linear(w, x), want, rtol=1e-5, atol=1e-5)


def test_f16_attention_is_independent_of_the_batch_split():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((10, 4, 16)).astype(np.float32)
    k = rng.standard_normal((10, 2, 16)).astype(np.float32)
    v = rng.standard_normal((10, 2, 16)).astype(np.float32)
    pos = np.arange(10)
    full = ops.attention(q, k, v, pos, pos, 0.25, round_f16=True)
    for t in range(10):
        one = ops.attention(q[t:t + 1], k[:t + 1], v[:t + 1], pos[t:t + 1], pos[:t + 1], 0.25, round_f16=True)
        np.testing.assert_array_equal(one[0], full[t])
    plain = ops.attention(q, k, v, pos, pos, 0.25)
    assert 1e-5 < np.abs(plain - full).max() < 1e-2     # F16 rounding: small but real
    win = ops.attention(q, k, v, pos, pos, 0.25, window=3, round_f16=True)
    np.testing.assert_allclose(win[9], ops.attention(q[9:], k[7:], v[7:], pos[9:], pos[7:], 0.25,
                                                     round_f16=True)[0], rtol=0, atol=0)
