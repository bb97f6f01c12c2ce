"""jit.plan_step35: decoding a Step-3.5 model through the one-call-per-token plan gives exactly the
per-op path's bits (logits, KV caches, ring positions), through wrapping sliding-window rings, on
every tiny golden step35 file (full and sliding layers of different head counts, a dense layer,
MoE layers with clamped routed and shared experts)."""
from __future__ import annotations

import numpy as np
import pytest

from inference import load_model
from inference.models import step35
from jit import plan_step35 as jp
from tests.conftest import golden_dir
from tests.jit.conftest import assert_same_bits, decode_both, plan_set, prompt_then_decode

STEMS = ["tiny-step35-F16", "tiny-step35-Q8_0", "tiny-step35-Q4_K_M", "tiny-step35-Q6_K"]


@pytest.mark.parametrize("stem", STEMS)
def test_plan_gives_the_per_op_bits_through_wrapping_rings(stem):
    m = load_model(golden_dir() / "models" / f"{stem}.gguf")
    out = decode_both(m, step35, 20, 70, 120, seed=len(stem))          # window 8, ring 72: positions up to 89 wrap it
    assert_same_bits(out, jp.Step35Plan)                # caches and ring positions
    assert out[True][1].can_rewind(80) == out[False][1].can_rewind(80)


def test_a_planned_state_rewinds_and_continues_on_the_per_op_path():
    """Decode planned, rewind into the ring's slack, continue per-op: the per-op-only run's bits."""
    m = load_model(golden_dir() / "models" / "tiny-step35-Q8_0.gguf")
    ids = np.random.default_rng(3).integers(0, m.n_vocab, 60)
    outs = []
    for planned in (True, False):
        with plan_set(step35, planned):
            st = m.new_state(100)
            prompt_then_decode(m, st, ids[:50], 10)
            assert (m._plan is not None and m._plan.refs.matches(st)) == planned
            assert st.can_rewind(45)
            st.rewind(45)
        with plan_set(step35, False):
            outs.append(np.concatenate([m.forward(ids[i:i + 1], st) for i in range(45, 55)]))
    assert np.array_equal(outs[0], outs[1])


def test_no_plan_for_an_f32_cache_or_without_rounded_activations(monkeypatch):
    """The f32 cache runs exact float32 attention in numpy, and plain float activations the numpy
    matmuls: the per-op path, which the plan could not reproduce."""
    from inference import ops

    m = load_model(golden_dir() / "models" / "tiny-step35-Q8_0.gguf")
    assert not jp.plannable(m, m.new_state(96, kv_type="f32"))
    assert jp.plannable(m, m.new_state(96))
    monkeypatch.setattr(ops, "ROUND_ACTIVATIONS", False)
    assert not jp.plannable(m, m.new_state(96))


def test_plan_follows_a_new_state():
    m = load_model(golden_dir() / "models" / "tiny-step35-Q4_K_M.gguf")
    st = m.new_state(80)
    m.forward(np.array([1, 2, 3]), st)
    m.forward(np.array([4]), st)
    first = m._plan
    st2 = m.new_state(80)
    m.forward(np.array([1, 2, 3]), st2)
    a = m.forward(np.array([4]), st2)
    assert m._plan is not first and m._plan.refs.matches(st2)
    with plan_set(step35, False):
        st3 = m.new_state(80)
        m.forward(np.array([1, 2, 3]), st3)
        assert np.array_equal(m.forward(np.array([4]), st3), a)
