"""Real quantized models against llama.cpp: SmolLM2-135M-Instruct (Q4_1, llama) and Gemma 3 270M
(Q4_K_M, gemma3), with the top-20 logits and greedy continuations in ../shared/golden/real.

Why exactness matters. llama.cpp rounds every activation to 8 bits before each matmul and keeps
attention in F16; a one-ulp difference anywhere flips a few of those roundings and, through the
layers, grows to the size of the rounding noise: 0.3-0.5 logits (llama.cpp itself with flash
attention on, against its own output with it off, differs that much on these prompts). So the
numpy engine computes what llama.cpp's x86 CPU backend computes, in the same float32 order
(inference/ggml_cpu.py), and the bounds follow from what is emulated:

SmolLM2 (Q4_1 + a Q8_0 output matrix): every op emulated, checked tensor by tensor against
llama.cpp's eval callback (identical bits in all 30 layers). The logits differ only by the
output matmul's float32 summation order and the 4 decimals the golden file keeps (measured max
|diff| 1.3e-5 and 5e-5), so: the issue's bounds (top-1 everywhere, top-5 sets >= 95 %, first 16
greedy tokens with the README's 0.25 near-tie rule) and much more: every top-20 logit within 1e-3.
Measured: top-1 100 %, top-5 sets 100 %, greedy 16/16 identical on both prompts (prompt 0 step 7
is a true near tie, margin 0.019, and matches because single-token decoding sums attention in
llama.cpp's decode order).

Gemma 3 (Q5_0/Q8_0/Q4_K/Q6_K matmuls, GEGLU): llama.cpp's x86 kernels for each of them emulated as
well (inference/ggml_matmul.py: tinyBLAS/vec_dot lanes for Q5_0 and Q8_0, the repacked q4_K_8x8
gemm/gemv for Q4_K, the tiled K-quant matmul and vec_dot for Q6_K, Q8_K rounding of both flavours;
ggml_cpu.geglu: the F16 GELU table), checked tensor by tensor against llama.cpp's eval callback on
prompt 2 (identical bits in all 18 layers). Measured: every top-20 logit equal to the golden file's
4 decimals on all three prompts (top-1 and top-5 sets 100 %), greedy 16/16 identical, so Gemma gets
SmolLM2's bounds. With the emulation off (ggml_matmul.EXACT = False: float64 sums of the same rounded
activations) top-5 sets fall to 82-94 %, top-20 logits move by up to 1.7 and prompt 0 leaves
llama.cpp's greedy token at step 7 (0.25 below our pick), so the test fails: these bounds
are what the emulation buys. The golden files are llama.cpp's AVX512 build without AMX, weight
repacking on, flash attention off, 2 threads (that build reproduces both to their 4 decimals).
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


# fixture giving the model path -> golden json, n_vocab, n_ctx_train and the bounds reached:
# (top-5 sets, median and max |diff| over llama.cpp's top-20 logits, greedy near tie)
CASES = {
    "smollm2_path": ("smollm2-135m-instruct.json", 49152, 8192, (0.95, 1e-3, 1e-3, 0.25)),
    "gemma3_path": ("gemma3-270m.json", 262144, 32768, (0.95, 1e-3, 1e-3, 0.25)),
}


@pytest.fixture(autouse=True)
def numpy_kernels(monkeypatch):
    """The numpy reference path: its Q4_1 dots follow ggml's summation order, the JIT kernels' not
    (yet), and on these models that order decides the near ties."""
    monkeypatch.setenv("LECTERN_KERNELS", "numpy")


@lru_cache(maxsize=None)
def model_at(path):
    return load_model(path)


@lru_cache(maxsize=None)
def prompt_logits(path, i: int, name: str) -> np.ndarray:
    return model_at(path).logits(load_real(name)["prompts"][i]["ids"])


@pytest.fixture(params=list(CASES))
def case(request):
    path = request.getfixturevalue(request.param)
    return (path, *CASES[request.param])


def test_model_shape(case):
    path, _, n_vocab, n_ctx, _ = case
    m = model_at(path)
    assert (m.n_vocab, m.n_ctx_train) == (n_vocab, n_ctx)


def test_prompt_logits_match_llama_cpp(case):
    path, name, _, _, (min_top5, max_median, max_diff, _) = case
    for i, p in enumerate(load_real(name)["prompts"]):
        ours = prompt_logits(path, i, name)
        assert ours.shape == (len(p["ids"]), model_at(path).n_vocab) and np.isfinite(ours).all()
        ref_ids = np.array([[t for t, _ in row] for row in p["top"]])        # [T, 20]
        ref_val = np.array([[v for _, v in row] for row in p["top"]])        # [T, 20]
        top1, top5 = top_k_agreement(ours, p["top"])
        diff = np.abs(np.take_along_axis(ours, ref_ids, axis=1) - ref_val).max(axis=1)   # [T]
        print(f"{name} prompt {i} ({len(p['ids'])} tokens): top-1 {top1:.1%}, top-5 sets {top5:.1%}, "
              f"max |diff| over llama.cpp's top-20: median {np.median(diff):.2e}, max {diff.max():.2e}")
        for t, (o, r, v) in enumerate(zip(ours, ref_ids, ref_val)):          # top-1 everywhere
            assert int(np.argmax(o)) == r[0], (
                f"{name} prompt {i} position {t}: ours {int(np.argmax(o))}, llama.cpp {r[0]} "
                f"(its margin {v[0] - v[1]:.3f})")
        assert top5 >= min_top5, f"{name} prompt {i}: top-5 sets equal at {top5:.1%}"
        assert np.median(diff) <= max_median and diff.max() <= max_diff, f"{name} prompt {i}: {diff}"


def test_greedy_continuations_match_llama_cpp(case):
    """The first 16 greedy tokens, decoded one at a time (the README's rule: identical until a near
    tie of our own)."""
    path, name, _, _, (_, _, _, tie) = case
    m = model_at(path)
    for i, p in enumerate(load_real(name)["prompts"]):
        n, ties = follow_greedy(m, p["ids"], p["greedy_ids"][:16], f"{name} prompt {i}", tie=tie)
        assert n == 16 and ties == 0, f"{name} prompt {i}: {n}/16 before a near tie"
