"""jit.plan: decoding through the one-call-per-token plan gives exactly the per-op path's bits
(logits and KV cache), on the tiny llama golden models of every weight type and on SmolLM2."""
from __future__ import annotations

import numpy as np
import pytest

from inference import load_model
from inference.models import gemma3, llama
from jit import plan as jp
from jit.plan_gemma import GemmaPlan
from tests.conftest import golden_dir
from tests.jit.conftest import assert_same_bits, decode_both, plan_set

STEMS = ["tiny-llama-F16", "tiny-llama-Q8_0", "tiny-llama-Q4_0", "tiny-llama-Q4_K_M", "tiny-llama-Q6_K"]


@pytest.mark.parametrize("stem", STEMS)
def test_plan_gives_the_per_op_bits(stem):
    path = golden_dir() / "models" / f"{stem}.gguf"
    if not path.exists():
        pytest.skip(f"{path} missing (golden data)")
    m = load_model(path)
    assert_same_bits(decode_both(m, llama, 20, 12, 96, seed=len(stem)), jp.LlamaPlan)


@pytest.mark.parametrize("stem", ["tiny-llama-Q8_0", "tiny-llama-Q4_K_M"])
def test_plan_gives_the_per_op_bits_with_an_f32_cache(stem):
    """The f32 cache type: the plan writes float32 rows (nothing rounded to half) and runs the
    f32 attention kernel; still the per-op path's bits, and not the f16 cache's."""
    m = load_model(golden_dir() / "models" / f"{stem}.gguf", kv_type="f32")
    out = decode_both(m, llama, 20, 12, 96, seed=3)
    assert_same_bits(out, jp.LlamaPlan)
    k0 = out[True][1].arrays["k.0"]
    assert k0.dtype == np.float32 and jp.shape_of(m, out[True][1]).kv == "f32"
    assert not np.array_equal(k0, k0.astype(np.float16).astype(np.float32))     # not half values
    m16 = load_model(golden_dir() / "models" / f"{stem}.gguf")
    f16 = decode_both(m16, llama, 20, 12, 96, seed=3)
    assert f16[True][1].arrays["k.0"].dtype == np.float16
    assert f16[True][1].arrays["k.0"].nbytes * 2 == k0.nbytes
    assert not np.array_equal(f16[True][0], out[True][0])


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
    assert_same_bits(decode_both(m, llama, 70, 6, 128), jp.LlamaPlan)


GEMMA_STEMS = ["tiny-gemma3-F16", "tiny-gemma3-Q8_0", "tiny-gemma3-Q4_K_M", "tiny-gemma3-Q6_K", "tiny-gemma3-Q4_0"]


@pytest.mark.parametrize("stem", GEMMA_STEMS)
def test_gemma_plan_gives_the_per_op_bits_through_wrapping_rings(stem):
    path = golden_dir() / "models" / f"{stem}.gguf"
    if not path.exists():
        pytest.skip(f"{path} missing (golden data)")
    m = load_model(path)
    out = decode_both(m, gemma3, 20, 60, 96, seed=len(stem), ring_slack=50)     # ring of 66: wraps
    assert_same_bits(out, GemmaPlan)                                     # caches and ring positions
    # the planned state rewinds and continues on the per-op path like the other one
    assert out[True][1].can_rewind(70) == out[False][1].can_rewind(70)


def test_gemma_plan_gives_the_per_op_bits_with_an_f32_cache():
    m = load_model(golden_dir() / "models" / "tiny-gemma3-Q8_0.gguf", kv_type="f32")
    out = decode_both(m, gemma3, 20, 60, 96, seed=4, ring_slack=50)             # ring of 66: wraps
    assert_same_bits(out, GemmaPlan)
    b = out[True][1]
    assert b.arrays["k.0"].dtype == np.float32 and b.kv_type == "f32"


def test_gelu_table_is_the_per_op_gelu():
    from inference import ggml_cpu

    x = np.random.default_rng(0).standard_normal(4992).astype(np.float32) * 4
    u = np.random.default_rng(1).standard_normal(4992).astype(np.float32)
    from jit.elementwise import gelu_mul
    assert np.array_equal(gelu_mul(x, u), ggml_cpu.geglu(x, u))


@pytest.mark.slow
def test_gemma_plan_gives_the_per_op_bits_on_gemma3_270m(gemma3_path):
    m = load_model(gemma3_path)
    out = decode_both(m, gemma3, 40, 4, 128, ring_slack=256)
    assert_same_bits(out, GemmaPlan)


def test_a_plan_never_outlives_its_state():
    """States made and dropped one after another (their arrays' ids may be reused): every decode
    still equals the per-op path's, never a stale plan's writes into freed buffers."""
    import gc

    m = load_model(golden_dir() / "models" / "tiny-llama-Q4_0.gguf")
    ids = np.array([1, 5, 9, 33, 2, 7])
    for _ in range(4):
        outs = []
        for use in (True, False):
            with plan_set(llama, use):
                st = m.new_state(70)
                m.forward(ids[:4], st)
                outs.append(np.concatenate([m.forward(ids[i:i + 1], st) for i in (4, 5)]))
                del st
                gc.collect()
        assert np.array_equal(outs[0], outs[1])


def test_no_plan_when_single_queries_sum_in_batch_order(monkeypatch):
    from inference import ops

    m = load_model(golden_dir() / "models" / "tiny-llama-Q8_0.gguf")
    monkeypatch.setattr(ops, "SINGLE_QUERY_DECODE_ORDER", False)
    assert m.decode_plan(m.new_state(80)) is None


def test_logits_arrays_are_reused_only_when_nobody_holds_them():
    """The head writes each step's logits into an earlier result array only once every caller
    has let go of it: a held result keeps its values, dropped ones are recycled, values equal the
    per-op path's either way."""
    m = load_model(golden_dir() / "models" / "tiny-llama-Q8_0.gguf")
    ids = np.random.default_rng(7).integers(0, m.config.n_vocab, 30)
    want = decode_both(m, llama, 10, 20, 64, seed=7)[False][0]
    st = m.new_state(64)
    m.forward(ids[:10], st)
    held = m.forward(ids[10:11], st)[0]                  # kept (a view) through every later step
    held_copy = held.copy()
    seen = set()
    for i in range(11, 30):
        out = m.forward(ids[i:i + 1], st)[0]
        seen.add(out.base.ctypes.data if out.base is not None else out.ctypes.data)
        assert np.array_equal(out, want[i - 10])
        del out
    assert np.array_equal(held, held_copy) and np.array_equal(held, want[0])
    assert len(seen) <= 3                                # recycled, not one new array per step
