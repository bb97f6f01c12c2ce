"""Gemma 3 against llama.cpp's outputs on the tiny golden models (../shared/golden).

For every tiny-gemma3-*.gguf: batch, token by token, split prefill and greedy continuation agree
with llama.cpp within the golden README's bounds. The sliding window is 16 tokens on 5 of the 6
layers and the prompt 96 tokens; with a small ring slack the ring buffers wrap several times.
"""
from __future__ import annotations

import numpy as np
import pytest

from inference import load_model
from inference.errors import ContextOverflowError, UnsupportedModelError
from inference.gguf_file import open_gguf
from inference.models.base import KV, RING
from tests.conftest import golden_dir, golden_models
from tests.inference.models.test_llama import (
    batch_logits, golden_batch, golden_greedy, golden_split_prefill, golden_token_by_token, model, ref,
    run_chunks,
)

STEMS = [s for s in golden_models() if s.startswith("tiny-gemma3-")] or ["<no tiny-gemma3 files>"]


def test_all_gemma3_files_present():
    assert len(STEMS) >= 5 and all(s.startswith("tiny-gemma3-") for s in STEMS), STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_batch_matches_llama_cpp(stem):
    golden_batch(stem)


@pytest.mark.parametrize("stem", STEMS)
def test_token_by_token_matches_llama_cpp(stem):
    golden_token_by_token(stem, ring_slack=4)      # ring of 20 entries: wraps ~5 times


@pytest.mark.parametrize("stem", STEMS)
def test_split_prefill_equals_batch(stem):
    golden_split_prefill(stem, (37,))
    golden_split_prefill(stem, (37,), ring_slack=0)      # ring exactly the window
    golden_split_prefill(stem, (3, 20, 1, 1, 30))


@pytest.mark.parametrize("stem", STEMS)
def test_greedy_continuation_matches_llama_cpp(stem):
    golden_greedy(stem)


def test_config_from_metadata():
    m = model("tiny-gemma3-F16")
    c = m.config
    assert (c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim) == (256, 6, 4, 1, 64)
    assert c.n_swa == 16 and c.is_swa == (True, True, True, True, True, False)
    assert (c.rope_base, c.rope_base_swa) == (1000000.0, 10000.0)
    assert c.attn_scale == pytest.approx(1 / 8) and c.final_softcap == 0.0
    assert m.n_vocab == 512 and m.n_ctx_train == 4096


def test_state_rings_on_sliding_layers():
    m = model("tiny-gemma3-Q8_0")
    st = m.new_state(1000)
    assert st.kinds["k.0"] == RING and st.arrays["k.0"].shape == (16 + 256, 1, 64)
    assert st.kinds["k.5"] == KV and st.arrays["k.5"].shape == (1000, 1, 64)
    assert m.new_state(100).arrays["k.0"].shape == (100, 1, 64)     # never more than n_ctx
    st = m.new_state(100, ring_slack=8)
    assert st.arrays["v.4"].shape == (24, 1, 64) and st.windows["v.4"] == 16


def test_rewind_within_the_ring_slack():
    stem = "tiny-gemma3-Q4_K_M"
    m, tokens = model(stem), ref(stem)["tokens"]
    st = m.new_state(96, ring_slack=8)
    m.forward(tokens[:60], st)
    assert st.can_rewind(55) and not st.can_rewind(40)   # 40 would need positions the ring dropped
    m.forward(np.array([5, 6, 7]), st)
    st.rewind(60)
    again = m.forward(tokens[60:], st)
    np.testing.assert_allclose(again, batch_logits(stem)[60:], atol=1e-4 * batch_logits(stem).std())


def test_sliding_window_matters():
    """Sanity of the check itself: ignoring the window (all layers full) changes the logits."""
    stem = "tiny-gemma3-F16"
    g = open_gguf(golden_dir() / "models" / f"{stem}.gguf")
    g.metadata["gemma3.attention.sliding_window"] = 4096   # same rope bases, no window
    full = load_model(g).logits(ref(stem)["tokens"])
    assert np.abs(full[40:] - batch_logits(stem)[40:]).max() > 0.1 * batch_logits(stem).std()


def test_overflow_and_missing_tensor():
    m = model("tiny-gemma3-Q6_K")
    st = m.new_state(10)
    with pytest.raises(ContextOverflowError):
        m.forward(np.arange(1, 12), st)
    run_chunks(m, ref("tiny-gemma3-Q6_K")["tokens"][:10], [4])
    g = open_gguf(golden_dir() / "models" / "tiny-gemma3-F16.gguf")
    del g.tensors["blk.3.post_ffw_norm.weight"]
    with pytest.raises(UnsupportedModelError, match="post_ffw_norm"):
        load_model(g)
