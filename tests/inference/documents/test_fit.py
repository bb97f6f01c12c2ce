"""fit_check: the state size for n tokens against the real State allocation, and the remedies."""
from __future__ import annotations

import pytest

from inference.documents import fit_check, state_size
from inference.engine import Engine
from tests.conftest import golden_dir

MODELS = golden_dir() / "models"


def engine(name):
    return Engine.load(MODELS / f"{name}.gguf")


@pytest.mark.parametrize("name", ["tiny-llama-F16", "tiny-gemma3-F16", "tiny-kimi-linear-F16",
                                  "tiny-step35-F16"])
def test_state_size_matches_the_state_the_model_allocates(name):
    e = engine(name)
    size = state_size(e.model)
    for n in (1, 100, 700, 3000):
        assert size.at(n) == e.model.new_state(n).nbytes(), n


def test_attention_state_grows_per_layer_and_kv_head_and_linear_attention_mostly_does_not():
    e = engine("tiny-llama-F16")
    g = e.gguf
    layers, kv_heads = g.arch_get("block_count"), g.arch_get("attention.head_count_kv")
    head_dim = g.arch_get("embedding_length") // g.arch_get("attention.head_count")
    rep = fit_check(e, 1000, 4096)
    assert rep.bytes_per_token == layers * 2 * kv_heads * head_dim * 2     # K and V, F16 (the default type)
    assert rep.state_bytes == 1000 * rep.bytes_per_token and rep.fits and not rep.remedies
    kimi = fit_check(engine("tiny-kimi-linear-F16"), 1000, 4096)
    fixed = kimi.state_bytes - 1000 * kimi.bytes_per_token
    assert fixed > 0 and kimi.bytes_per_token < rep.bytes_per_token       # recurrent + few MLA layers


def test_a_prompt_over_the_context_gets_the_remedies():
    e = engine("tiny-llama-F16")
    train = e.n_ctx_train
    rep = fit_check(e, 3000, 2048)
    assert not rep.fits
    assert rep.remedies[0] == (f"raise the context setting to at least 3,000 tokens (this model was "
                               f"trained for up to {train:,})")
    assert "model with a longer context" in rep.remedies[1]
    assert rep.remedies[2].startswith("trim the documents by about 952 tokens")
    assert "It does not fit: raise the context setting" in rep.message
    over = fit_check(e, train + 10, train)
    assert not any("raise the context" in r for r in over.remedies)
    assert over.remedies[0].startswith(f"use a model with a longer context (at least {train + 10:,}")


def test_a_state_larger_than_the_memory_does_not_fit():
    e = engine("tiny-llama-F16")
    need = fit_check(e, 1000, 4096).state_bytes
    assert fit_check(e, 1000, 4096, ram_bytes=need).fits
    rep = fit_check(e, 1000, 4096, ram_bytes=need - 1)
    assert not rep.fits and rep.remedies[0].startswith("free memory: the state needs")
    assert any("linear-attention" in r for r in rep.remedies)
