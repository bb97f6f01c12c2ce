"""The llama architecture against llama.cpp's outputs on the tiny golden models (../shared/golden).

For every tiny-llama-*.gguf: the prompt as one batch, token by token, as a split prefill, and the
greedy continuation agree with llama.cpp within the golden README's bounds. The helpers here
(`golden_*`) serve test_gemma3.py too.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import pytest

from inference import load_model, ops
from inference.errors import ContextOverflowError, UnsupportedModelError
from inference.gguf_file import open_gguf
from inference.models.base import KV
from tests.conftest import golden_dir, golden_models
from tests.inference.golden import assert_close, check_greedy

STEMS = [s for s in golden_models() if s.startswith("tiny-llama-")] or ["<no tiny-llama files>"]


@lru_cache(maxsize=None)
def model(stem: str):
    return load_model(golden_dir() / "models" / f"{stem}.gguf")


@lru_cache(maxsize=None)
def ref(stem: str) -> dict:
    return dict(np.load(golden_dir() / "ref" / f"{stem}.npz"))


@lru_cache(maxsize=None)
def batch_logits(stem: str) -> np.ndarray:
    return model(stem).logits(ref(stem)["tokens"])


def run_chunks(m, tokens: np.ndarray, sizes: list[int], **state_kw) -> np.ndarray:
    """Feed tokens in consecutive chunks of the given sizes (the rest last) through one state."""
    st = m.new_state(len(tokens), **state_kw)
    bounds = np.cumsum([0] + sizes + [len(tokens) - sum(sizes)])
    out = [m.forward(tokens[a:b], st) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    assert st.n_past == len(tokens)
    return np.concatenate(out)


# --- checks shared with test_gemma3.py --------------------------------------------------------
def golden_batch(stem: str) -> None:
    r = assert_close(batch_logits(stem), ref(stem)["logits"], stem)
    print(f"{stem} batch: {r}")


@contextmanager
def batch_order():
    """Single queries sum attention in the batch's order (ops.SINGLE_QUERY_DECODE_ORDER) and the
    JIT's Q4_K/Q6_K batches sum each token in the decode order (kquants.BATCH_ORDERS): the math is
    then the same row by row, so any split must give the batch's logits up to float64 sums."""
    from jit.kernels import kquants

    saved = ops.SINGLE_QUERY_DECODE_ORDER, kquants.BATCH_ORDERS
    ops.SINGLE_QUERY_DECODE_ORDER = kquants.BATCH_ORDERS = False
    try:
        yield
    finally:
        ops.SINGLE_QUERY_DECODE_ORDER, kquants.BATCH_ORDERS = saved


def golden_token_by_token(stem: str, **state_kw) -> None:
    tokens = ref(stem)["tokens"]
    out = run_chunks(model(stem), tokens, [1] * (len(tokens) - 1), **state_kw)   # llama.cpp's decode order
    r = assert_close(out, ref(stem)["logits"], stem)
    print(f"{stem} token by token: {r}")
    with batch_order():
        out = run_chunks(model(stem), tokens, [1] * (len(tokens) - 1), **state_kw)
        full = model(stem).logits(tokens)   # same order: decoding computes what the batch computes
    assert np.abs(out - full).max() <= 1e-4 * full.std(), f"{stem}: token by token differs from the batch"


def golden_split_prefill(stem: str, sizes=(37,), **state_kw) -> None:
    """A prefill in pieces computes the same logits as one batch (the same math, row by row)."""
    with batch_order():
        full = model(stem).logits(ref(stem)["tokens"])
        out = run_chunks(model(stem), ref(stem)["tokens"], list(sizes), **state_kw)
    err = np.abs(out - full).max() / full.std()
    assert err < 1e-4, f"{stem}: split prefill {sizes} differs from the batch by {err:.2e} std"


def follow_greedy(m, prompt, greedy, label: str, tie: float = 0.25) -> tuple[int, int]:
    """Follow llama.cpp's greedy continuation, decoding one token at a time (last_only).

    check_greedy's rule (the README's): identical until the first step where llama.cpp's token is
    our runner-up within `tie` logits of our pick. We then keep feeding llama.cpp's tokens through
    the same state and require every later step to agree too, near ties aside.
    -> (steps identical before the first near tie, near ties in all)
    """
    prompt, greedy = np.asarray(prompt), np.asarray(greedy)
    st = m.new_state(len(prompt) + len(greedy) + 1)
    seen: list[np.ndarray] = []

    def step(tok):
        out = m.forward(prompt if tok is None else np.array([tok]), st, last_only=True)
        assert out.shape == (1, m.n_vocab)
        seen.append(out[0])
        return out[0]

    if tie == 0.25:
        n = check_greedy(step, greedy)
    else:
        step(None)
        n = 0
    for i in range(len(seen), len(greedy)):            # teacher-forced past the near tie
        step(int(greedy[i - 1]))
    ties, first_tie = 0, None
    for i, (logits, want) in enumerate(zip(seen, greedy)):
        order = np.argsort(-logits)
        if int(order[0]) != int(want):
            margin = float(logits[order[0]] - logits[order[1]])
            assert margin < tie and int(order[1]) == int(want), (
                f"{label} greedy step {i} (fed llama.cpp's tokens): ours {int(order[0])}, "
                f"llama.cpp {int(want)}, our margin {margin:.3f} (near-tie bound {tie})")
            ties += 1
            first_tie = i if first_tie is None else first_tie
    n = len(greedy) if first_tie is None else first_tie
    print(f"{label} greedy: {n}/{len(greedy)} steps identical before a near tie; "
          f"fed llama.cpp's tokens: {len(greedy) - ties} agree, {ties} near ties")
    return n, ties


def golden_greedy(stem: str) -> None:
    follow_greedy(model(stem), ref(stem)["tokens"], ref(stem)["greedy"], stem)


# --- llama ----------------------------------------------------------------------------------------
def test_all_llama_files_present():
    assert len(STEMS) >= 5 and all(s.startswith("tiny-llama-") for s in STEMS), STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_batch_matches_llama_cpp(stem):
    golden_batch(stem)


@pytest.mark.parametrize("stem", STEMS)
def test_token_by_token_matches_llama_cpp(stem):
    golden_token_by_token(stem)


@pytest.mark.parametrize("stem", STEMS)
def test_split_prefill_equals_batch(stem):
    golden_split_prefill(stem, (37,))
    golden_split_prefill(stem, (5, 1, 30))


@pytest.mark.parametrize("stem", STEMS)
def test_greedy_continuation_matches_llama_cpp(stem):
    golden_greedy(stem)


def test_config_from_metadata():
    m = model("tiny-llama-F16")
    c = m.config
    assert (c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff) == (256, 4, 8, 2, 32, 512)
    assert not c.rope_neox and c.rope_dim == 32 and c.rope_base == 10000.0
    assert m.n_vocab == 512 and m.n_ctx_train == 4096
    assert m.layers[0].attn_k.shape == (64, 256)   # GQA: 2 KV heads of 32


def test_state_is_a_kv_cache_and_overflow_is_refused():
    m = model("tiny-llama-Q8_0")
    st = m.new_state(8)
    assert all(k == KV for k in st.kinds.values())
    assert st.arrays["k.0"].shape == (8, 2, 32) and st.arrays["k.0"].dtype == np.float16   # llama.cpp's F16 cache
    m.forward(np.arange(1, 7), st)
    assert st.n_past == 6
    with pytest.raises(ContextOverflowError, match="context"):
        m.forward(np.arange(1, 4), st)
    assert st.n_past == 6                       # a refused batch changes nothing


def test_rewind_then_continue_equals_fresh_run():
    m = model("tiny-llama-Q4_K_M")
    tokens = ref("tiny-llama-Q4_K_M")["tokens"][:40]
    st = m.new_state(64)
    m.forward(tokens[:30], st)
    m.forward(np.array([7, 8, 9]), st)           # a detour, then back to 30 tokens
    st.rewind(30)
    again = m.forward(tokens[30:], st)
    np.testing.assert_array_equal(again, batch_logits("tiny-llama-Q4_K_M")[30:40])


def test_last_only_is_the_last_row():
    m = model("tiny-llama-Q4_0")
    tokens = ref("tiny-llama-Q4_0")["tokens"][:20]
    # the output head (Q6_K) sums 1 row and 20 rows in llama.cpp's different orders: compare in one
    with batch_order():
        last = m.forward(tokens, m.new_state(20), last_only=True)
        np.testing.assert_array_equal(last, m.logits(tokens)[-1:])


def test_missing_tensor_is_a_clear_error(tmp_path):
    g = open_gguf(golden_dir() / "models" / "tiny-llama-F16.gguf")
    del g.tensors["blk.2.ffn_up.weight"]
    with pytest.raises(UnsupportedModelError, match="blk.2.ffn_up.weight"):
        load_model(g)


def test_moe_llama_is_refused():
    g = open_gguf(golden_dir() / "models" / "tiny-llama-F16.gguf")
    g.metadata["llama.expert_count"] = 8
    with pytest.raises(UnsupportedModelError, match="mixture-of-experts"):
        load_model(g)


def test_wrong_shape_is_a_clear_error():
    g = open_gguf(golden_dir() / "models" / "tiny-llama-F16.gguf")
    g.metadata["llama.attention.head_count_kv"] = 4     # attn_k holds 2 heads, not 4
    with pytest.raises(UnsupportedModelError, match="attn_k"):
        load_model(g)


def test_tied_embeddings_and_qwen_layouts():
    """No output.weight -> logits through token_embd; qwen2 -> NEOX rope (llama.cpp's rope type)."""
    g = open_gguf(golden_dir() / "models" / "tiny-llama-F16.gguf")
    out = g.tensors.pop("output.weight")
    m = load_model(g)
    assert m.output is m.token_embd
    g2 = open_gguf(golden_dir() / "models" / "tiny-llama-F16.gguf")
    g2.metadata = {k.replace("llama.", "qwen2.", 1): v for k, v in g2.metadata.items()}
    g2.metadata["general.architecture"] = "qwen2"
    q = load_model(g2)
    assert q.config.rope_neox and q.output.name == out.name
    # NEOX and adjacent-pair rotations differ, so the qwen2 reading of the file gives other logits
    toks = ref("tiny-llama-F16")["tokens"][:8]
    assert np.abs(q.logits(toks) - batch_logits("tiny-llama-F16")[:8]).max() > 1e-2
