"""inference/ggml_cpu: llama.cpp's CPU arithmetic. Bit-exactness against llama.cpp was checked on
SmolLM2 tensors dumped by its eval callback (tests/inference/models/test_real_models.py checks the
result end to end); here each piece is checked against the plain math it rounds."""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import quants as gq

from inference import ggml_cpu, ops


def test_v_expf_is_exp_within_two_ulp_and_handles_the_ends():
    x = np.linspace(-87, 88, 200001, dtype=np.float32)
    ours = ggml_cpu.v_expf(x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(ours - want) / want) < 2.5 * 2.0 ** -23
    assert ggml_cpu.v_expf(np.array([-np.inf, -200, 0, 200], np.float32)).tolist() == [0, 0, 1, np.inf]


def test_softmax_rows_sum_to_one_and_follow_the_mask():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((3, 37)).astype(np.float32) * 4
    s[:, 30:] = -np.inf
    p = ggml_cpu.softmax_rows(s)
    e = np.exp(s[:, :30].astype(np.float64) - s[:, :30].max(1, keepdims=True))
    np.testing.assert_allclose(p[:, :30], e / e.sum(1, keepdims=True), rtol=1e-6)
    assert not p[:, 30:].any()


def test_dot_f16_orders_differ_only_in_rounding():
    rng = np.random.default_rng(1)
    a = ggml_cpu.f16(rng.standard_normal((5, 256)))
    b = ggml_cpu.f16(rng.standard_normal((7, 1, 256)))
    want = (b.astype(np.float64) * a).sum(-1)
    for decode in (False, True):
        np.testing.assert_allclose(ggml_cpu.dot_f16(a, b, decode), want, rtol=1e-5, atol=1e-4)
    assert not np.array_equal(ggml_cpu.dot_f16(a, b, False), ggml_cpu.dot_f16(a, b, True))


def test_q4_1_dot_is_the_block_formula():
    """d_w d_a sum(q_w q_a) + m_w s_a per block (s_a = F16(d_a sum q_a)), gguf's Q4_1 blocks."""
    rng = np.random.default_rng(2)
    w32 = rng.standard_normal((6, 128)).astype(np.float32)
    x = rng.standard_normal((3, 128)).astype(np.float32)
    blocks = gq.quantize(w32, Q.Q4_1).reshape(6, 4, 20)
    q, d = ops._q8_blocks(x)
    q, d = q.reshape(3, 4, 32), d.reshape(3, 4)
    d_w = blocks[..., 0:2].copy().view(np.float16).astype(np.float64)[..., 0]
    m_w = blocks[..., 2:4].copy().view(np.float16).astype(np.float64)[..., 0]
    q_w = np.concatenate([blocks[..., 4:] & 15, blocks[..., 4:] >> 4], -1).astype(np.float64)
    d_a = ggml_cpu.f16(d).astype(np.float64)
    s_a = ggml_cpu.f16(d * q.sum(-1)).astype(np.float64)
    want = (np.einsum("tbk,obk->tob", q, q_w) * d_a[:, None, :] * d_w[None] + s_a[:, None, :] * m_w[None]).sum(-1)
    np.testing.assert_allclose(ggml_cpu.vec_dot_q4_1_q8_1(blocks, q, d), want, rtol=1e-5, atol=1e-5)


def test_rope_angles_are_float32_powers():
    cos, sin = ggml_cpu.rope_angles(np.array([0, 1, 37, 4000]), 64, 100000.0, 1.0, None)
    theta = np.array([0, 1, 37, 4000])[:, None] * 100000.0 ** (-np.arange(0, 64, 2) / 64)
    np.testing.assert_allclose(cos, np.cos(theta), atol=2e-3)      # float32 theta: |err| ~ p * 1e-7
    np.testing.assert_allclose(sin, np.sin(theta), atol=2e-3)
    assert cos[0].tolist() == [1.0] * 32 and sin[0].tolist() == [0.0] * 32
    c2, _ = ggml_cpu.rope_angles(np.array([37]), 64, 100000.0, 1.0, None)          # cached rows
    assert np.array_equal(c2[0], cos[2])


def test_silu_groups_of_16_and_tail():
    x = np.linspace(-20, 20, 3 * 37, dtype=np.float32).reshape(3, 37)
    want = x.astype(np.float64) / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(ggml_cpu.silu(x), want, rtol=1e-6, atol=1e-30)


def test_gelu_table_is_ggml_gelu_rounded_to_f16():
    """ggml_table_gelu_f16[i] = F16(0.5x(1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2)))) at x = the F16 of bits i,
    against a float64 loop of that formula: equal at > 99 % of entries (llama.cpp's float32 tanhf and
    1 + tanh lose a few bits far left, where gelu is tiny)."""
    import math
    table = ggml_cpu.gelu_table()
    x = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float64)
    ok = np.isfinite(x) & (np.abs(x) < 10)
    want = np.array([0.5 * v * (1.0 + math.tanh(0.7978845608028654 * v * (1.0 + 0.044715 * v * v)))
                     for v in x[ok]]).astype(np.float16).astype(np.float32)
    assert np.mean(table[ok] == want) > 0.99
    np.testing.assert_allclose(table[ok], want, rtol=2e-2, atol=2.5e-7)   # F16 subnormals: 6e-8 steps


def test_geglu_looks_up_f16_of_the_gate_and_clamps_at_10():
    """ggml_vec_geglu_f32: table[F16(g)] * up; g <= -10 gives 0, g >= 10 gives g * up."""
    rng = np.random.default_rng(3)
    g = np.concatenate([rng.standard_normal(3000) * 4, [-10.5, -10.0, 10.0, 12.0]]).astype(np.float32)
    u = rng.standard_normal(g.size).astype(np.float32)
    table = ggml_cpu.gelu_table()
    want = [np.float32(0) if gi <= -10 else gi * ui if gi >= 10 else table[np.float16(gi).view(np.uint16)] * ui
            for gi, ui in zip(g, u)]
    assert np.array_equal(ggml_cpu.geglu(g, u), np.array(want, np.float32))
