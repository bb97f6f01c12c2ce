"""The real models on the JIT path (the default), against llama.cpp's top-20 logits and greedy
tokens in ../shared/golden/real, with the engine issue's bounds: the same top-1 at every prompt
position, top-5 sets equal at >= 95 % of positions, the first 16 greedy tokens decoded one at a
time (the README's near-tie rule). tests/inference/models/test_real_models.py holds the numpy
path to far tighter bounds.

SmolLM2 (Q4_1 + Q8_0 output): the JIT's 32-block kernels keep llama.cpp's vec_dot order, so its
logits equal llama.cpp's to the golden file's decimals. Gemma 3 (Q4_K, Q6_K, Q5_0, Q8_0) needs the
K-quant kernels in llama.cpp's orders too (repacked q4_K_8x8 gemv/gemm, Q6_K vec_dot/tiled:
jit/kernels/kquants.py); with an order of their own, near ties moved (measured: top-1 94 %,
top-5 sets 65-75 %, greedy leaving llama.cpp's token at steps 7-13).
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_real
from tests.inference.golden import top_k_agreement
from tests.inference.models.test_llama import follow_greedy

pytestmark = pytest.mark.slow

CASES = [pytest.param("smollm2_path", "smollm2-135m-instruct.json", id="smollm2"),
         pytest.param("gemma3_path", "gemma3-270m.json", id="gemma3")]


@pytest.fixture
def jit_model(request, monkeypatch):
    import jit.api
    from inference import load_model

    monkeypatch.setenv("LECTERN_KERNELS", "jit")
    if not jit.api.enabled():
        pytest.fail("the JIT path is not available on this machine (llvmlite compile failed)")
    return load_model(request.getfixturevalue(request.param))


@pytest.mark.parametrize("jit_model, name", CASES, indirect=["jit_model"])
def test_real_model_on_the_jit_meets_the_engine_bounds(jit_model, name):
    for i, p in enumerate(load_real(name)["prompts"]):
        ours = jit_model.logits(p["ids"])                                     # [T, n_vocab]
        ref_top1 = [row[0][0] for row in p["top"]]
        wrong = [t for t, o in enumerate(ours) if int(np.argmax(o)) != ref_top1[t]]
        _, top5 = top_k_agreement(ours, p["top"])
        assert not wrong, f"{name} prompt {i}: top-1 differs from llama.cpp at positions {wrong}"
        assert top5 >= 0.95, f"{name} prompt {i}: top-5 sets equal at {top5:.1%}"
        n, ties = follow_greedy(jit_model, p["ids"], p["greedy_ids"][:16], f"{name} prompt {i} (jit)")
        assert n == 16 and ties == 0, f"{name} prompt {i}: {n}/16 greedy tokens before a near tie"
