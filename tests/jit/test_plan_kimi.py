"""jit.plan_kimi: decoding kimi-linear through the one-call-per-token plan gives exactly the
per-op path's bits (logits, KDA conv and delta states, the MLA latent cache), on every tiny golden
kimi file (KDA and MLA layers, a dense and MoE layers), with either cache type, and over enough
keys that the MLA attention merges several key blocks."""
from __future__ import annotations

import numpy as np
import pytest

from inference import load_model
from inference.models import kimi_linear
from jit import mla_attention as jmla
from jit import plan_kimi as jp
from tests.conftest import golden_dir
from tests.jit.conftest import assert_same_bits, decode_both, plan_set, prompt_then_decode

STEMS = ["tiny-kimi-linear-F16", "tiny-kimi-linear-Q8_0", "tiny-kimi-linear-Q4_K_M", "tiny-kimi-linear-Q6_K"]


@pytest.mark.parametrize("stem", STEMS)
def test_plan_gives_the_per_op_bits(stem):
    m = load_model(golden_dir() / "models" / f"{stem}.gguf")
    assert_same_bits(decode_both(m, kimi_linear, 12, 40, 96, seed=len(stem)), jp.KimiPlan)


@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_plan_merges_many_key_blocks_with_either_cache(kv_type):
    m = load_model(golden_dir() / "models" / "tiny-kimi-linear-Q4_K_M.gguf", kv_type=kv_type)
    out = decode_both(m, kimi_linear, 330, 8, 400, seed=7)
    assert -(-338 // jmla.block_size(338)) >= 5                     # the last steps merge 5+ blocks
    assert out[True][1].arrays["blk.3.kv"].dtype == (np.float16 if kv_type == "f16" else np.float32)
    assert_same_bits(out, jp.KimiPlan)


def test_a_planned_state_continues_on_the_per_op_path():
    m = load_model(golden_dir() / "models" / "tiny-kimi-linear-Q8_0.gguf")
    ids = np.random.default_rng(2).integers(0, m.n_vocab, 40)
    outs = []
    for planned in (True, False):
        with plan_set(kimi_linear, planned):
            st = m.new_state(64)
            prompt_then_decode(m, st, ids[:30], 8)
        with plan_set(kimi_linear, False):
            outs.append(m.forward(ids[30:40], st))               # a batch after planned steps
    assert np.array_equal(outs[0], outs[1])


def test_no_plan_without_rounded_activations(monkeypatch):
    from inference import ops

    m = load_model(golden_dir() / "models" / "tiny-kimi-linear-Q8_0.gguf")
    assert jp.plannable(m, m.new_state(64))
    monkeypatch.setattr(ops, "ROUND_ACTIVATIONS", False)
    assert not jp.plannable(m, m.new_state(64))
