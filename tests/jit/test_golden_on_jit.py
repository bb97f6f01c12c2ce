"""Every tiny golden model on BOTH kernel paths (LECTERN_KERNELS=jit and =numpy): the prompt as
one batch against llama.cpp's logits, and llama.cpp's greedy continuation decoded token by token.

The model test files (tests/inference/models/) run the default path (jit where it compiles);
this module makes sure the numpy path keeps passing the same checks, and that on the jit path
the linears really ran on the JIT (counted) and a split prefill gives the batch's bits exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from inference import load_model, ops
from jit.kernels import kquants
from tests.conftest import golden_dir, golden_models
from tests.inference.golden import assert_close, check_greedy

STEMS = [s for s in golden_models() if s.startswith("tiny-")] or ["<golden data missing>"]


@pytest.fixture(params=["jit", "numpy"])
def kernels(request, monkeypatch):
    import jit.linear

    monkeypatch.setenv("LECTERN_KERNELS", request.param)
    calls = {"jit": 0}
    real = jit.linear.linear

    def counted(w, x):
        calls["jit"] += 1
        return real(w, x)

    monkeypatch.setattr(jit.linear, "linear", counted)
    yield request.param, calls
    if request.param == "jit":
        assert calls["jit"] > 0, "LECTERN_KERNELS=jit but no linear ran on the JIT"
    else:
        assert calls["jit"] == 0, "LECTERN_KERNELS=numpy but linears ran on the JIT"


def _ref(stem: str) -> dict:
    return dict(np.load(golden_dir() / "models" / ".." / "ref" / f"{stem}.npz"))


def _decode_steps(m, r) -> list[np.ndarray]:
    """Our logits at each step of llama.cpp's greedy continuation, fed its tokens one at a time."""
    st = m.new_state(len(r["tokens"]) + len(r["greedy"]))
    out = [m.forward(r["tokens"], st, last_only=True)[0]]
    for tok in r["greedy"][:-1]:
        out.append(m.forward(np.array([tok]), st, last_only=True)[0])
    return out


@pytest.mark.parametrize("stem", STEMS)
def test_golden_batch_and_greedy(stem, kernels, monkeypatch):
    path, _ = kernels
    assert ops.ROUND_ACTIVATIONS
    m, r = load_model(golden_dir() / "models" / f"{stem}.gguf"), _ref(stem)
    batch = m.logits(r["tokens"])
    print(f"{stem} [{path}] batch: {assert_close(batch, r['logits'], stem)}")
    steps = _decode_steps(m, r)
    if path == "jit":
        # a prefill in two chunks gives the batch's bits: every linear computes each token the
        # same way whatever the batch once Q4_K/Q6_K batches sum in the decode order too (by
        # default they follow llama.cpp's orders for the batch's size: kquants.BATCH_ORDERS)
        monkeypatch.setattr(kquants, "BATCH_ORDERS", False)
        whole = m.logits(r["tokens"])
        st = m.new_state(len(r["tokens"]))
        split = np.concatenate([m.forward(r["tokens"][:37], st), m.forward(r["tokens"][37:], st)])
        assert np.array_equal(split, whole), f"{stem}: a split prefill differs from the batch on the JIT"
        monkeypatch.setattr(kquants, "BATCH_ORDERS", True)
    if "step35" in stem and not stem.endswith("F16"):
        # quantized MoE (README: no tail bound; routing near-ties flip experts, see test_step35):
        # >= 80 % of the teacher-forced steps pick llama.cpp's token. The numpy path also has
        # llama.cpp's token as runner-up within 1 logit at every other step; on the JIT path
        # (float32 sums) tiny-step35-Q4_K_M's prompt already routes two positions to other
        # experts (router gaps 0.016 and 0.07) and step 11 then misses by 1.7 logits.
        hits, off = 0, []
        for i, (logits, tok) in enumerate(zip(steps, r["greedy"])):
            order = np.argsort(-logits)
            hits += int(order[0] == tok)
            if not (order[0] == tok or (order[1] == tok and logits[order[0]] - logits[tok] < 1.0)):
                off.append((i, float(logits[order[0]] - logits[tok])))
        print(f"{stem} [{path}] greedy: {hits}/{len(steps)} steps pick llama.cpp's token; far misses {off}")
        assert hits >= 0.8 * len(steps), f"{stem}: {hits}/{len(steps)} greedy steps"
        assert path == "jit" or not off, f"{stem}: llama.cpp's token far from our pick at {off}"
        return
    it = iter(steps)
    n = check_greedy(lambda tok: next(it), r["greedy"])
    print(f"{stem} [{path}] greedy: {n}/{len(r['greedy'])} steps before a near tie")
