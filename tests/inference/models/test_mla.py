"""mla.latent_attention (the long-context MLA path reading the latent cache in place) against
ops.attention's exact llama.cpp-order path on the same rows, the tiny kimi-linear decoded
token by token on the long path (numpy BLAS or the JIT decode kernel, float16 or float32 cache)
against its batch logits, and a short batch on the JIT decode kernel against the exact path."""
from __future__ import annotations

import numpy as np
import pytest

from inference import ops
from inference.models.mla import latent_attention


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("n_past,T", [(0, 7), (40, 1), (33, 5), (0, 1)])
def test_latent_attention_matches_exact_attention(half, n_past, T):
    rng = np.random.default_rng(n_past * 10 + T)
    H, R, r = 4, 32, 8
    S = n_past + T
    K = rng.standard_normal((S, R + r)).astype(np.float32)
    if half:
        K = ops._f16(K)                                  # the cache holds half-rounded rows
    Q = rng.standard_normal((T, H, R + r)).astype(np.float32)
    pos = np.arange(S)
    want = ops.attention(Q, K[:, None, :], K[:, None, :R], pos[n_past:], pos, 0.2, round_f16=half)
    got = latent_attention(Q, K, n_past, 0.2, R, half)
    assert got.shape == (T, H, R)
    if half:                                              # a float16 cache holds the same values
        assert np.array_equal(latent_attention(Q, K.astype(np.float16), n_past, 0.2, R, half), got)
    tol = 2e-3 if half else 1e-5                          # F16 probabilities may round the other way
    np.testing.assert_allclose(got, want, atol=tol, rtol=tol)


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("qb, kb", [(4, 7), (1, 1), (5, 64), (30, 3)])
def test_latent_attention_blocks_match_one_block(monkeypatch, half, qb, kb):
    """Query and key blocks (online softmax, the causal mask inside diagonal blocks) against one
    block of everything, and against the exact llama.cpp-order attention."""
    rng = np.random.default_rng(3)
    K = ops._f16(rng.standard_normal((50, 20)).astype(np.float32) * 2)
    Q = rng.standard_normal((30, 2, 20)).astype(np.float32)
    whole = latent_attention(Q, K, 20, 0.3, 16, half)
    monkeypatch.setattr("inference.models.mla.QUERY_BLOCK", qb)
    monkeypatch.setattr("inference.models.mla.KEY_BLOCK", kb)
    tol = 2e-3 if half else 1e-5
    np.testing.assert_allclose(latent_attention(Q, K, 20, 0.3, 16, half), whole, rtol=tol, atol=tol)
    pos = np.arange(50)
    exact = ops.attention(Q, K[:, None, :], K[:, None, :16], pos[20:], pos, 0.3, round_f16=half)
    np.testing.assert_allclose(whole, exact, rtol=tol, atol=tol)


@pytest.mark.parametrize("kernels", ["numpy", "jit"])
@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_kimi_decode_on_the_long_path_matches_batch(monkeypatch, kernels, kv_type):
    """Every MLA call on the long path: token-by-token decode == the exact batch logits to
    F16-probability rounding (the cache is written and read in place each step)."""
    from inference.models import load_model
    from tests.conftest import golden_dir

    monkeypatch.setenv("LECTERN_KERNELS", kernels)
    m = load_model(golden_dir() / "models" / "tiny-kimi-linear-F16.gguf", kv_type=kv_type)
    toks = np.random.default_rng(1).integers(0, m.n_vocab, 40)
    want = m.logits(toks)
    monkeypatch.setattr(ops, "EXACT_ATTENTION_KEYS", 0)
    st = m.new_state(len(toks))
    got = np.concatenate([m.forward(toks[i:i + 1], st) for i in range(len(toks))])
    assert np.isfinite(got).all() and np.abs(got - want).max() < 0.02


def test_a_short_batch_runs_each_query_on_the_jit_kernel_and_splits_give_its_bits(monkeypatch):
    """A prompt too short for the long path takes the JIT decode kernel query by query (the numpy
    emulation of llama.cpp's order took 24.7 s for 360 tokens on the full-width slice); its
    logits stay within the golden bound of the exact numpy path, and any split of the prompt
    gives the same bits."""
    pytest.importorskip("llvmlite")
    from inference.models import load_model
    from jit import mla_attention as jm
    from tests.conftest import golden_dir

    stem = golden_dir() / "models" / "tiny-kimi-linear-F16.gguf"
    toks = np.random.default_rng(4).integers(0, 500, 60)
    monkeypatch.setenv("LECTERN_KERNELS", "numpy")
    exact = load_model(stem).logits(toks)
    monkeypatch.setenv("LECTERN_KERNELS", "jit")
    m = load_model(stem)
    kv = next(a for k, a in m.new_state(1).arrays.items() if k.endswith(".kv"))      # [1, R + r]
    if not jm.usable(kv.shape[1], kv.shape[1] - m.config.n_rope, m.config.n_head):
        pytest.skip("the MLA decode kernel needs FMA")
    calls = []
    real = jm.decode
    monkeypatch.setattr(jm, "decode", lambda q, cache, S, *a, **k: calls.append(S) or real(q, cache, S, *a, **k))
    whole = m.logits(toks)
    n_mla = sum(not k for k in m.config.is_kda)
    assert sorted(calls) == sorted(list(range(1, 61)) * n_mla)
    st = m.new_state(60)
    split = np.concatenate([m.forward(toks[:23], st), m.forward(toks[23:], st)])
    assert np.array_equal(split, whole)
    scale = float(np.std(exact))
    assert np.abs(whole - exact).max() < 5e-3 * scale and (whole.argmax(1) == exact.argmax(1)).all()   # 2.1e-3 seen
