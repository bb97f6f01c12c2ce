"""mla_prefill (the decompressed MLA prefill over a long latent cache) against the absorbed
attention computed exactly (ops.attention in llama.cpp's order over the latent rows, then v_b),
across key and query block boundaries, on the JIT softmax kernel and on numpy; and the tiny
kimi-linear prefilled in long chunks on this path against its exact logits."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from inference import ops
from inference.gguf_file import Tensor
from inference.models import mla_prefill


def f32_heads(a: np.ndarray) -> Tensor:
    """A stacked per-head weight [H, out, in] as an F32 tensor (ne [in, out, H])."""
    a = np.ascontiguousarray(a, np.float32)
    return Tensor("w", Q.F32, tuple(reversed(a.shape)), a.reshape(-1).view(np.uint8))


def absorbed(q, cache, n_past, scale, R, kb, vb):
    """The MLA attention in its absorbed form, exactly: [T, H, dv]."""
    n = kb.shape[2]
    Q_ = np.concatenate([np.einsum("thn,hrn->thr", q[:, :, :n], kb), q[:, :, n:]], axis=-1)
    K = np.asarray(cache, np.float32)[:, None, :]
    pos = np.arange(cache.shape[0])
    lat = ops.attention(Q_.astype(np.float32), K, K[:, :, :R], pos[n_past:], pos, scale)
    return np.einsum("thr,hvr->thv", lat, vb)


@pytest.mark.parametrize("dv", [24, 32])          # 32: every product on the JIT's sgemm (16-column panels)
@pytest.mark.parametrize("kernels", ["numpy", "jit"])
@pytest.mark.parametrize("n_past,T,kblk,qblk,srows", [(0, 40, 16, 2048, 512), (37, 23, 16, 5, 512),
                                                      (100, 1, 32, 7, 512), (5, 64, 2048, 2048, 512),
                                                      (70, 33, 48, 16, 512), (20, 45, 32, 2048, 16),
                                                      (3, 50, 16, 20, 7)])
def test_matches_the_absorbed_attention(monkeypatch, kernels, n_past, T, kblk, qblk, srows, dv):
    """Key blocks (kblk), passes of queries that each decompress the keys (qblk) and blocks of
    queries sharing one decompression (srows): every cut gives the absorbed attention."""
    monkeypatch.setenv("LECTERN_KERNELS", kernels)
    monkeypatch.setattr(mla_prefill, "KEY_BLOCK", kblk)
    monkeypatch.setattr(mla_prefill, "QUERY_BLOCK", qblk)
    monkeypatch.setattr(mla_prefill, "SCORE_ROWS", srows)
    rng = np.random.default_rng(n_past + T)
    H, R, r, n = 3, 32, 16, 16
    cache = rng.standard_normal((n_past + T, R + r)).astype(np.float16)
    q = rng.standard_normal((T, H, n + r)).astype(np.float32)
    kb = (rng.standard_normal((H, R, n)) * 0.4).astype(np.float32)
    vb = (rng.standard_normal((H, dv, R)) * 0.3).astype(np.float32)
    got = mla_prefill.attention(q, cache, n_past, 0.25, R, f32_heads(kb), f32_heads(vb))
    assert got.shape == (T, H, dv)
    np.testing.assert_allclose(got, absorbed(q, cache, n_past, 0.25, R, kb, vb), rtol=2e-4, atol=2e-5)


def test_it_pays_only_for_long_chunks():
    R, n, r, dv = 512, 128, 64, 128                          # kimi-linear's MLA
    assert not mla_prefill.pays(1, R, n, r, dv) and not mla_prefill.pays(170, R, n, r, dv)
    assert mla_prefill.pays(172, R, n, r, dv) and mla_prefill.pays(512, R, n, r, dv)


@pytest.mark.parametrize("kernels", ["numpy", "jit"])
def test_tiny_kimi_prefill_on_this_path_matches_exact(monkeypatch, kernels):
    """Chunks of 80 tokens (tiny MLA: decompressing pays above 64) with every attention long."""
    from inference.models import load_model
    from tests.conftest import golden_dir

    monkeypatch.setenv("LECTERN_KERNELS", kernels)
    m = load_model(golden_dir() / "models" / "tiny-kimi-linear-F16.gguf")
    toks = np.random.default_rng(2).integers(0, m.n_vocab, 240)
    want = m.logits(toks)
    calls = []
    real = mla_prefill.attention
    monkeypatch.setattr(mla_prefill, "attention", lambda *a: calls.append(a[0].shape[0]) or real(*a))
    monkeypatch.setattr(mla_prefill, "KEY_BLOCK", 64)
    monkeypatch.setattr(ops, "EXACT_ATTENTION_MAX", 0)
    st = m.new_state(len(toks))
    got = np.concatenate([m.forward(toks[i:i + 80], st) for i in range(0, len(toks), 80)])
    assert calls == [80, 80, 80]
    assert np.isfinite(got).all() and np.abs(got - want).max() < 0.02


def test_a_stop_inside_the_long_attention_ends_the_chunk_there(monkeypatch):
    """The Stop is seen at the attention's first key block (not after the layer), and the
    session's chunk is undone: reading on gives the logits of a read never stopped."""
    from inference.engine import Engine
    from inference.models.base import KV
    from tests.conftest import golden_dir

    eng = Engine.load(golden_dir() / "models" / "tiny-kimi-linear-F16.gguf")
    monkeypatch.setattr(mla_prefill, "KEY_BLOCK", 64)
    monkeypatch.setattr(ops, "EXACT_ATTENTION_MAX", 0)
    toks = [int(t) for t in np.random.default_rng(3).integers(0, eng.model.n_vocab, 240)]
    want = eng.session(256)
    want.prefill(toks, chunk=80)
    s = eng.session(256)
    s.prefill(toks[:80], chunk=80)
    before = {k: a.copy() for k, a in s.state.arrays.items() if s.state.kinds[k] != KV}
    events = []
    real = mla_prefill.attention

    def traced(*a):
        events.append("enter")
        out = real(*a)
        events.append("return")
        return out

    monkeypatch.setattr(mla_prefill, "attention", traced)
    r = s.prefill(toks, cancel=lambda: bool(events), chunk=80)
    assert r.cancelled and r.n_evaluated == 0 and events == ["enter"]
    assert s.n_past == 80
    for k, a in before.items():
        np.testing.assert_array_equal(s.state.arrays[k], a, err_msg=k)
    s.prefill(toks, chunk=80)
    np.testing.assert_array_equal(s.logits, want.logits)


def test_progress_moves_inside_the_long_attention(monkeypatch):
    from inference import engine as engine_module
    from inference.engine import Engine
    from tests.conftest import golden_dir

    eng = Engine.load(golden_dir() / "models" / "tiny-kimi-linear-F16.gguf")
    monkeypatch.setattr(mla_prefill, "KEY_BLOCK", 64)
    monkeypatch.setattr(ops, "EXACT_ATTENTION_MAX", 0)
    monkeypatch.setattr(engine_module, "PROGRESS_EVERY", 0.0)
    n = eng.model.config.n_layer
    seen = []
    s = eng.session(256)
    s.prefill(list(range(1, 241)), progress=lambda d, t: seen.append(d), chunk=240)
    at_layers = {240 * k // n for k in range(n + 1)}
    assert seen == sorted(seen) and seen[-1] == 240
    assert set(seen) - at_layers                  # reports between two layers' ends
