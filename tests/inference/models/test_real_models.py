"""Real quantized models against llama.cpp: SmolLM2-135M-Instruct (Q4_1, llama) and Gemma 3 270M
(Q4_K_M, gemma3), with the top-20 logits and greedy continuations in ../shared/golden/real.

How close is reachable. llama.cpp rounds every activation to 8 bits before each matmul (ops.linear
does the same) and sums in its own SIMD order; once the two engines differ by one rounding step
somewhere, the 8-bit rounding of the following layers amplifies it to the size of the rounding
noise itself. Measured on these models: a one-ulp change of our own rms_norm moves SmolLM2's
logits by 0.3-0.9; against llama.cpp the largest difference among its top-20 logits is 0.3-0.4
at the median position (Gemma: bit-identical for the first 2-3 positions, then the same noise).
So: top-1 everywhere except at llama.cpp's own near ties, top-5 mostly the same set, logits
within the noise, greedy continuations identical until a near tie of the size of that noise.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from inference import load_model
from tests.conftest import load_real
from tests.inference.golden import top_k_agreement
from tests.inference.models.test_llama import follow_greedy

pytestmark = pytest.mark.slow

CASES = {  # fixture giving the model path -> (golden json, n_vocab, n_ctx_train)
    "smollm2_path": ("smollm2-135m-instruct.json", 49152, 8192),
    "gemma3_path": ("gemma3-270m.json", 262144, 32768),
}
NEAR_TIE = 0.25      # the golden README's near tie (top-2 margin, in logits)
NOISE_TIE = 0.5      # greedy near tie on real models: about the size of the rounding noise above


@lru_cache(maxsize=None)
def model_at(path):
    return load_model(path)


@lru_cache(maxsize=None)
def prompt_logits(path, i: int, name: str) -> np.ndarray:
    return model_at(path).logits(load_real(name)["prompts"][i]["ids"])


@pytest.fixture(params=list(CASES))
def case(request):
    path = request.getfixturevalue(request.param)
    name, n_vocab, n_ctx = CASES[request.param]
    return path, name, n_vocab, n_ctx


def test_model_shape(case):
    path, _, n_vocab, n_ctx = case
    m = model_at(path)
    assert (m.n_vocab, m.n_ctx_train) == (n_vocab, n_ctx)


def test_prompt_logits_match_llama_cpp(case):
    path, name, *_ = case
    for i, p in enumerate(load_real(name)["prompts"]):
        ours = prompt_logits(path, i, name)
        assert ours.shape == (len(p["ids"]), model_at(path).n_vocab) and np.isfinite(ours).all()
        ref_ids = np.array([[t for t, _ in row] for row in p["top"]])        # [T, 20]
        ref_val = np.array([[v for _, v in row] for row in p["top"]])        # [T, 20]
        top1, top5 = top_k_agreement(ours, p["top"])
        overlap5 = np.mean([len(set(np.argsort(-o)[:5].tolist()) & set(r[:5].tolist())) / 5
                            for o, r in zip(ours, ref_ids)])
        diff = np.abs(np.take_along_axis(ours, ref_ids, axis=1) - ref_val).max(axis=1)   # [T]
        print(f"{name} prompt {i} ({len(p['ids'])} tokens): top-1 {top1:.1%}, top-5 sets {top5:.1%}, "
              f"top-5 overlap {overlap5:.1%}, max |diff| over llama.cpp's top-20: median "
              f"{np.median(diff):.3f}, max {diff.max():.3f}")
        # top-1 at every position, except where llama.cpp itself is at a near tie and we pick
        # its runner-up
        for t, (o, r, v) in enumerate(zip(ours, ref_ids, ref_val)):
            got = int(np.argmax(o))
            if got != r[0]:
                assert got == r[1] and v[0] - v[1] < NEAR_TIE, (
                    f"{name} prompt {i} position {t}: ours {got}, llama.cpp {r[0]} with margin "
                    f"{v[0] - v[1]:.3f} over {r[1]}")
        assert top5 >= 0.6 and overlap5 >= 0.9, f"{name} prompt {i}: top-5 {top5:.1%}, overlap {overlap5:.1%}"
        assert np.median(diff) <= 0.6 and diff.max() <= 2.0, f"{name} prompt {i}: logits off by {diff}"


def test_greedy_continuations_match_llama_cpp(case):
    path, name, *_ = case
    for i, p in enumerate(load_real(name)["prompts"]):
        follow_greedy(model_at(path), p["ids"], p["greedy_ids"][:16], f"{name} prompt {i}", tie=NOISE_TIE)
