"""jit.plan: decoding through the one-call-per-token plan gives exactly the per-op path's bits
(logits and KV cache), on the tiny llama golden models of every weight type and on SmolLM2."""
from __future__ import annotations

import numpy as np
import pytest

from inference import load_model
from inference.models import llama
from jit import plan as jp
from tests.conftest import golden_dir

STEMS = ["tiny-llama-F16", "tiny-llama-Q8_0", "tiny-llama-Q4_0", "tiny-llama-Q4_K_M", "tiny-llama-Q6_K"]


def decode_both(m, n_prompt: int, n_steps: int, n_ctx: int, seed: int = 0):
    ids = np.random.default_rng(seed).integers(0, m.config.n_vocab, n_prompt + n_steps)
    out = {}
    for use in (False, True):
        llama.USE_PLAN = use
        try:
            st = m.new_state(n_ctx)
            m.forward(ids[:n_prompt], st)
            logits = [m.forward(ids[i:i + 1], st, last_only=True)[0] for i in range(n_prompt, n_prompt + n_steps)]
            if use:
                assert m._plan is not None and jp.plannable(m, st), "the plan did not run"
            out[use] = np.stack(logits), st
        finally:
            llama.USE_PLAN = True
    return out


def assert_same(out, n_layer):
    assert np.array_equal(out[False][0], out[True][0])
    for il in range(n_layer):
        for kv in "kv":
            assert np.array_equal(out[False][1].arrays[f"{kv}.{il}"], out[True][1].arrays[f"{kv}.{il}"])


@pytest.mark.parametrize("stem", STEMS)
def test_plan_gives_the_per_op_bits(stem):
    path = golden_dir() / "models" / f"{stem}.gguf"
    if not path.exists():
        pytest.skip(f"{path} missing (golden data)")
    m = load_model(path)
    assert_same(decode_both(m, 20, 12, 96, seed=len(stem)), m.config.n_layer)


def test_plan_follows_a_new_state_and_the_numpy_switch(monkeypatch):
    m = load_model(golden_dir() / "models" / "tiny-llama-Q8_0.gguf")
    st = m.new_state(80)
    m.forward(np.array([1, 2, 3]), st)
    m.forward(np.array([4]), st)
    first = m._plan
    st2 = m.new_state(80)                       # another state: another plan, pointing at its cache
    m.forward(np.array([1, 2, 3]), st2)
    a = m.forward(np.array([4]), st2)
    assert m._plan is not first
    monkeypatch.setenv("LECTERN_KERNELS", "numpy")
    st3 = m.new_state(80)
    m.forward(np.array([1, 2, 3]), st3)
    b = m.forward(np.array([4]), st3)
    assert np.abs(a - b).max() < 0.05 * np.abs(b).max()   # numpy path: same math, other float32 sums


@pytest.mark.slow
def test_plan_gives_the_per_op_bits_on_smollm2(smollm2_path):
    m = load_model(smollm2_path)
    assert_same(decode_both(m, 70, 6, 128), m.config.n_layer)
