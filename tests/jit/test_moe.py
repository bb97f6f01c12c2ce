"""jit.moe: a decode step's MoE FFN as one native call gives exactly the bits of
inference/models/moe.py's per-op decode (router, sigmoid, biased top-k with ties to the lower
expert, the double-precision weight sum and its floor, scale, SwiGLU with and without clamp, the
experts summed in ascending order, the shared expert), on random layers and the golden models."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import load_model
from inference.gguf_file import Tensor
from inference.models import moe
from jit import moe as jm
from tests.conftest import golden_dir
from tests.jit.conftest import plan_set, random_weights


def tensor(name: str, qtype: T, shape: tuple, rng) -> Tensor:
    """A random valid weight of numpy shape `shape` (experts first)."""
    rows, n_in = int(np.prod(shape[:-1])), shape[-1]
    return Tensor(name, qtype, tuple(reversed(shape)), random_weights(rng, qtype, rows, n_in))


def router(rng, n_exp: int, E: int, distinct: int) -> Tensor:
    """An F32 router whose rows repeat `distinct` patterns: equal logits, so ties in the top-k."""
    rows = (rng.standard_normal((distinct, E)) * rng.choice([0.05, 1.0, 30.0])).astype(np.float32)
    r = rows[rng.integers(0, distinct, n_exp)]
    return Tensor("router", T.F32, (E, n_exp), np.ascontiguousarray(r).view(np.uint8).reshape(-1))


def per_op(y, args, shexp, limit_sh):
    moe.NATIVE_DECODE = False
    try:
        out = moe.moe_ffn(y[None], *args)
        if shexp is not None:
            out = out + moe.ffn(y[None], *shexp, limit_sh)
        return out[0]
    finally:
        moe.NATIVE_DECODE = True


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n_exp=st.integers(1, 40), k=st.integers(1, 8), distinct=st.integers(1, 6),
       qtype=st.sampled_from([T.Q4_K, T.Q8_0, T.Q6_K, T.Q4_0, T.F16, T.F32]), bias=st.booleans(), norm_w=st.booleans(),
       scale=st.sampled_from([0.0, 1.0, 2.446]), limit=st.sampled_from([0.0, 1.5]), shared=st.booleans())
def test_block_gives_the_per_op_bits(seed, n_exp, k, distinct, qtype, bias, norm_w, scale, limit, shared):
    k = min(k, n_exp)
    rng = np.random.default_rng(seed)
    E, F = 256, 256
    gi = router(rng, n_exp, E, distinct)
    g, u = tensor("g", qtype, (n_exp, F, E), rng), tensor("u", qtype, (n_exp, F, E), rng)
    d = tensor("d", qtype, (n_exp, E, F), rng)
    b = rng.choice([0.0, 0.5, -0.5], n_exp).astype(np.float32) if bias else None
    sh = (tensor("sg", qtype, (F, E), rng), tensor("su", qtype, (F, E), rng), tensor("sd", qtype, (E, F), rng)) \
        if shared else None
    shape = jm.shape_for(gi, g, d, k, b, norm_w, scale, limit, sh, 1.5)
    assert shape is not None
    block = jm.MoeBlock(shape, gi, g, u, d, b, sh)
    y = rng.standard_normal(E).astype(np.float32)
    with np.errstate(all="ignore"):
        want = per_op(y, (gi, g, u, d, k, moe.GATING_SIGMOID, b, norm_w, scale, limit), sh, 1.5)
        got = block(y)
    assert np.array_equal(got, want, equal_nan=True)


def test_tiny_routers_hit_the_weight_floor():
    """Every logit hugely negative: the selected weights sum below the F16 floor (moe.NORM_FLOOR)."""
    rng = np.random.default_rng(5)
    E, F, n_exp = 256, 256, 6
    r = np.full((n_exp, E), -1.0, np.float32)
    gi = Tensor("router", T.F32, (E, n_exp), r.view(np.uint8).reshape(-1))
    g, u, d = (tensor(n, T.Q8_0, s, rng) for n, s in (("g", (n_exp, F, E)), ("u", (n_exp, F, E)), ("d", (n_exp, E, F))))
    y = np.full(E, 0.1, np.float32)                     # logits -25.6: sigmoid ~ 7.6e-12
    block = jm.MoeBlock(jm.shape_for(gi, g, d, 2, None, True, 0.0, 0.0, None, 0.0), gi, g, u, d, None, None)
    want = per_op(y, (gi, g, u, d, 2, moe.GATING_SIGMOID, None, True, 0.0, 0.0), None, 0.0)
    assert np.array_equal(block(y), want)


def decode(m, ids, native: bool, n_prompt: int = 8):
    moe.NATIVE_DECODE = native
    try:
        st = m.new_state(96)
        m.forward(ids[:n_prompt], st)
        return np.stack([m.forward(ids[i:i + 1], st)[0] for i in range(n_prompt, len(ids))])
    finally:
        moe.NATIVE_DECODE = True


@pytest.mark.parametrize("stem", ["tiny-step35-Q4_K_M", "tiny-step35-Q6_K", "tiny-step35-F16",
                                  "tiny-kimi-linear-Q4_K_M", "tiny-kimi-linear-Q8_0", "tiny-kimi-linear-F16"])
def test_models_decode_the_same_bits_with_the_block(stem):
    """Both MoE architectures (step35's files have clamped routed and shared experts)."""
    from inference.models import kimi_linear, step35

    m = load_model(golden_dir() / "models" / f"{stem}.gguf")
    ids = np.random.default_rng(len(stem)).integers(0, m.n_vocab, 30)
    with plan_set(step35, False), plan_set(kimi_linear, False):          # the per-op layers around the block
        want, got = decode(m, ids, False), decode(m, ids, True)
    routers = [L.ffn_gate_inp for L in m.layers if getattr(L, "ffn_gate_inp", None) is not None]
    assert routers and all(any(r.__dict__.get("_moe_block", {}).values()) for r in routers), "the block did not run"
    assert np.array_equal(got, want)


def test_no_block_for_a_type_the_jit_lacks():
    """IQ2_XXS experts keep the per-op path (numpy)."""
    rng = np.random.default_rng(1)
    gi = router(rng, 4, 256, 4)
    g = tensor("g", T.Q8_0, (4, 256, 256), rng)
    d = Tensor("d", T.IQ2_XXS, (256, 256, 4), np.zeros(4 * 256 * 256 // 256 * 66, np.uint8))
    assert jm.shape_for(gi, g, d, 2, None, True, 0.0, 0.0, None, 0.0) is None


def small_layer(rng, n_exp: int = 6, qtype=T.Q8_0):
    E, F = 256, 256
    return (router(rng, n_exp, E, n_exp), tensor("g", qtype, (n_exp, F, E), rng), tensor("u", qtype, (n_exp, F, E), rng),
            tensor("d", qtype, (n_exp, E, F), rng))


def test_experts_are_prepared_when_first_chosen():
    """Only expert 0 (the tables' template) is prepared up front; each call prepares the experts
    it chooses for the first time (through the native code's callback) and gives the per-op bits."""
    rng = np.random.default_rng(11)
    gi, g, u, d = small_layer(rng)
    block = jm.MoeBlock(jm.shape_for(gi, g, d, 2, None, True, 0.0, 0.0, None, 0.0), gi, g, u, d, None, None)
    assert np.count_nonzero(block._tabs["kern_g"]) == 1
    seen = set()
    for i in range(6):
        y = rng.standard_normal(256).astype(np.float32)
        want = per_op(y, (gi, g, u, d, 2, moe.GATING_SIGMOID, None, True, 0.0, 0.0), None, 0.0)
        sel, _ = moe.route(jm.op_for(gi)(y)[None], 2, moe.GATING_SIGMOID)
        seen |= set(sel[0].tolist())
        assert np.array_equal(block(y), want)
        prepared = set(np.flatnonzero(block._tabs["kern_g"]).tolist())
        assert prepared == seen | {0}


def test_a_failed_preparation_is_raised_and_retried():
    rng = np.random.default_rng(12)
    gi, g, u, d = small_layer(rng)
    block = jm.MoeBlock(jm.shape_for(gi, g, d, 6, None, True, 0.0, 0.0, None, 0.0), gi, g, u, d, None, None)
    real = block._fill

    def failing(e):
        raise MemoryError(f"no room for expert {e}")

    block._fill = failing
    y = rng.standard_normal(256).astype(np.float32)
    with pytest.raises(RuntimeError, match="preparing an expert's weights failed: no room for expert"):
        block(y)
    assert np.count_nonzero(block._tabs["kern_g"]) == 1            # nothing half-prepared is kept
    block._fill = real
    want = per_op(y, (gi, g, u, d, 6, moe.GATING_SIGMOID, None, True, 0.0, 0.0), None, 0.0)
    assert np.array_equal(block(y), want)
