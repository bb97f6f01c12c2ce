"""Long-context attention: ops.attention_blocked (BLAS matmuls over query blocks, per KV head
group) against ops.attention's exact path (the llama.cpp-order emulation with round_f16)."""
from __future__ import annotations

import numpy as np
import pytest

from inference import ops


@pytest.mark.parametrize("round_f16", [False, True])
@pytest.mark.parametrize("T, S, Hq, Hkv, window", [(1, 300, 4, 1, None), (37, 80, 6, 2, None),
                                                   (64, 64, 4, 4, 16), (50, 120, 8, 2, 33)])
def test_blocked_attention_equals_the_exact_one(monkeypatch, round_f16, T, S, Hq, Hkv, window):
    rng = np.random.default_rng(T * S + Hq)
    q = rng.standard_normal((T, Hq, 32)).astype(np.float32)
    k = rng.standard_normal((S, Hkv, 32)).astype(np.float32)
    v = rng.standard_normal((S, Hkv, 16)).astype(np.float32)
    q_pos, k_pos = np.arange(S - T, S), np.arange(S)
    want = ops.attention(q, k, v, q_pos, k_pos, 0.17, window, round_f16)
    monkeypatch.setattr(ops, "_BLOCK_SCORES", 7 * S)                 # several query blocks
    got = ops.attention_blocked(q, k, v, q_pos, k_pos, 0.17, window, round_f16)
    tol = 2e-3 if round_f16 else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert not ops.attention_is_long(T, Hq, S)
    assert ops.attention_is_long(1, 1, ops.EXACT_ATTENTION_KEYS + 1)   # a decode step over a long cache
    monkeypatch.setattr(ops, "EXACT_ATTENTION_MAX", 0)              # the dispatch picks it
    np.testing.assert_array_equal(ops.attention(q, k, v, q_pos, k_pos, 0.17, window, round_f16),
                                  ops.attention_blocked(q, k, v, q_pos, k_pos, 0.17, window, round_f16))


def test_mla_on_the_blocked_path_matches_the_exact_one(monkeypatch):
    """The tiny kimi-linear (F16) with every MLA call on the blocked path (the F16 latent cache
    read as is) gives the exact path's logits to F16-probability rounding."""
    from inference.models import load_model
    from tests.conftest import golden_dir

    m = load_model(golden_dir() / "models" / "tiny-kimi-linear-F16.gguf")
    toks = np.random.default_rng(0).integers(0, m.n_vocab, 120)
    want = m.logits(toks)
    monkeypatch.setattr(ops, "EXACT_ATTENTION_MAX", 0)
    got = m.logits(toks)
    assert np.abs(got - want).max() < 0.02 and np.isfinite(got).all()
