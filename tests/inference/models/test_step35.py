"""Step-3.5 against llama.cpp's outputs on the tiny golden models (../shared/golden).

Every tiny-step35-*.gguf: batch logits, token-by-token decode, split prefill and greedy
continuation agree with llama.cpp within the golden README's bounds; the F16 residual stream
agrees layer by layer with an independent float64 forward pass. The sliding window is 8 tokens
on 3 of the 5 layers and the prompts are 96 tokens, so the ring buffers wrap.

Two arithmetic modes:
- as shipped ("llama.cpp rounding"): activations rounded to the weights' dot-product type,
  half K/V caches. Then 1e-7 differences between batch shapes can flip a rounding, and on
  quantized MoE files flip an expert at a near tie, as llama.cpp itself does between its
  batch and decode runs: each way of feeding tokens is checked against llama.cpp instead.
- exact (`exact_arith`): plain float32 activations and float32 caches. Then batch, decode,
  split prefill, rewinds and copies must agree to float32 rounding: this checks the state
  logic (KV cache, ring buffers and their positions) on its own.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from inference import ops
from inference.errors import ContextOverflowError, TokenizerError, UnsupportedModelError
from inference.gguf_file import open_gguf
from inference.models import load_model
from inference.models.base import RING
from tests.conftest import golden_dir, golden_models
from tests.inference.golden import assert_close, check_greedy, compare_logits

STEMS = [s for s in golden_models() if s.startswith("tiny-step35-")] or ["<no tiny-step35 files>"]
F16 = "tiny-step35-F16"
EXACT = 1e-5          # max d between two ways of feeding tokens, exact arithmetic


@lru_cache(maxsize=None)
def model(stem: str):
    return load_model(golden_dir() / "models" / f"{stem}.gguf")


@lru_cache(maxsize=None)
def ref(stem: str):
    return dict(np.load(golden_dir() / "ref" / f"{stem}.npz"))


def run_chunks(stem: str, sizes: list[int], exact: bool, ring_slack: int = 64) -> np.ndarray:
    """Feed the golden prompt in consecutive chunks of `sizes` (the rest last) into one state."""
    m, tokens = model(stem), ref(stem)["tokens"]
    st = m.new_state(len(tokens), kv_dtype=np.float32 if exact else np.float16, ring_slack=ring_slack)
    bounds = np.cumsum([0] + sizes + [len(tokens) - sum(sizes)])
    return np.concatenate([m.forward(tokens[a:b], st) for a, b in zip(bounds[:-1], bounds[1:])])


_BATCH: dict = {}


def batch_logits(stem: str, exact: bool = False) -> np.ndarray:
    if (stem, exact) not in _BATCH:
        _BATCH[stem, exact] = run_chunks(stem, [], exact)
    return _BATCH[stem, exact]


@pytest.fixture
def exact_arith(monkeypatch):
    monkeypatch.setattr(ops, "ROUND_ACTIVATIONS", False, raising=True)


def test_all_step35_files_present():
    assert len(STEMS) >= 4 and all(s.startswith("tiny-step35-") for s in STEMS), STEMS


# ------------------------------------------------------------- against llama.cpp, as shipped
@pytest.mark.parametrize("stem", STEMS)
def test_batch_matches_llama_cpp(stem):
    r = assert_close(batch_logits(stem), ref(stem)["logits"], stem)
    print(f"{stem} batch: {r}")


@pytest.mark.parametrize("stem", STEMS)
def test_token_by_token_matches_llama_cpp(stem):
    r = assert_close(run_chunks(stem, [1] * 95, exact=False), ref(stem)["logits"], stem)
    print(f"{stem} token-by-token: {r}")


@pytest.mark.parametrize("sizes", [[5, 40], [5, 80]])
@pytest.mark.parametrize("stem", STEMS)
def test_split_prefill_matches_llama_cpp(stem, sizes):
    # [5, 80]: a chunk longer than the ring (window 8 + slack 64) keeps only its newest tokens
    r = assert_close(run_chunks(stem, sizes, exact=False), ref(stem)["logits"], stem)
    print(f"{stem} split {sizes}: {r}")


def test_f16_file_ways_of_feeding_agree_closely():
    # F16 weights: no routing flips, only half-precision rounding flips (~1e-3 of a logit std)
    for sizes in ([1] * 95, [5, 40], [5, 80]):
        d = compare_logits(run_chunks(F16, sizes, exact=False), batch_logits(F16)).d
        assert d.max() < 5e-3, f"{sizes}: max d {d.max():.2e}"


@pytest.mark.parametrize("stem", STEMS)
def test_greedy_continuation(stem):
    m, r = model(stem), ref(stem)
    st = m.new_state(len(r["tokens"]) + len(r["greedy"]))

    def step(tok):
        ids = r["tokens"] if tok is None else np.array([tok])
        return m.forward(ids, st, last_only=True)[0]

    n = check_greedy(step, r["greedy"])
    print(f"{stem} greedy: {n}/{len(r['greedy'])} steps")


def test_f16_residuals_match_float64_reference():
    dbg = np.load(golden_dir() / "debug" / "tiny-step35-F16-residuals.npz")
    m = model(F16)
    trace: dict = {}
    m.forward(dbg["tokens"], m.new_state(len(dbg["tokens"])), trace=trace)
    names = [f"blk_{il}_after_{p}" for il in range(m.cfg.n_layer) for p in ("mixer", "ffn")]
    assert sorted(names) == sorted(k for k in dbg.files if k.startswith("blk_"))
    for name in names:   # in layer order: the first failure is the first wrong layer
        rel = np.linalg.norm(trace[name] - dbg[name]) / np.linalg.norm(dbg[name])
        assert rel < 1e-3, f"{name}: relative error {rel:.2e}"


# --------------------------------------------------------- state logic, exact arithmetic
# the state logic does not depend on the weight type: F16 always, the quantized files as slow
@pytest.mark.parametrize("stem", [s if s == F16 else pytest.param(s, marks=pytest.mark.slow)
                                  for s in STEMS])
def test_exact_decode_and_split_equal_batch(stem, exact_arith):
    assert_close(batch_logits(stem, exact=True), ref(stem)["logits"], stem)
    for sizes in ([1] * 95, [5, 40], [5, 80], [3, 1, 1, 9]):
        d = compare_logits(run_chunks(stem, sizes, exact=True), batch_logits(stem, exact=True)).d
        assert d.max() < EXACT, f"{sizes}: max d {d.max():.2e}"


@pytest.mark.parametrize("sizes", [[], [1] * 95, [5, 40], [3, 20, 7, 1, 1, 1, 30]])
def test_tight_ring_wraps_many_times(sizes, exact_arith):
    # a ring of exactly the window (8 slots): 96 tokens wrap it 12 times; chunks longer than it
    m = model(F16)
    il = m.cfg.is_swa.index(True)
    assert m.new_state(96, ring_slack=0).arrays[f"k.{il}"].shape[0] == m.cfg.n_swa
    d = compare_logits(run_chunks(F16, sizes, exact=True, ring_slack=0), batch_logits(F16, True)).d
    assert d.max() < EXACT, f"{sizes}: max d {d.max():.2e}"


def test_state_copy_continues_identically(exact_arith):
    m, tokens = model(F16), ref(F16)["tokens"]
    st = m.new_state(len(tokens), kv_dtype=np.float32)
    m.forward(tokens[:50], st)
    twin = st.copy()
    a = m.forward(tokens[50:], st)
    np.testing.assert_array_equal(a, m.forward(tokens[50:], twin))
    assert compare_logits(a, batch_logits(F16, True)[50:]).d.max() < EXACT


def test_ring_rewind_then_refeed_equals_never_rewinding(exact_arith):
    m, tokens = model(F16), ref(F16)["tokens"]
    st = m.new_state(len(tokens), kv_dtype=np.float32)
    m.forward(tokens[:90], st)                    # the 72-slot rings have wrapped
    assert st.can_rewind(80)
    st.rewind(80)
    again = m.forward(tokens[80:], st)            # positions 80..95
    assert compare_logits(again, batch_logits(F16, True)[80:]).d.max() < EXACT
    # far back, the window's tokens have been overwritten in the ring: refused, state untouched
    assert not st.can_rewind(10)
    with pytest.raises(ValueError):
        st.rewind(10)
    assert st.n_past == len(tokens)


# ------------------------------------------------------------------- config and refusals
def test_config_from_metadata():
    c = model(F16).cfg
    g = open_gguf(golden_dir() / "models" / f"{F16}.gguf")
    assert c.n_rot_full == g.arch_get("rope.dimension_count") // 2   # halved on full layers
    assert c.n_rot_swa == g.arch_get("rope.dimension_count")
    assert c.is_swa == [bool(b) for b in g.arch_get("attention.sliding_window_pattern")]
    assert c.n_head == [int(h) for h in g.arch_get("attention.head_count")]
    assert c.n_swa == g.arch_get("attention.sliding_window") == 8
    assert c.weights_norm is True and c.clamp_exp[1] == pytest.approx(1.5)


def test_state_kinds_and_ring_sizes():
    m = model(F16)
    st = m.new_state(200)
    for il in range(m.cfg.n_layer):
        k = st.arrays[f"k.{il}"]
        if m.cfg.is_swa[il]:
            assert st.kinds[f"k.{il}"] == RING and k.shape[0] == m.ring_size(200) < 200
        else:
            assert k.shape[0] == 200


def test_context_overflow_is_refused():
    m = model(F16)
    st = m.new_state(10)
    m.forward(np.arange(1, 9), st)
    with pytest.raises(ContextOverflowError):
        m.forward(np.arange(1, 4), st)
    assert st.n_past == 8


def test_empty_input_and_bad_ids():
    m = model(F16)
    st = m.new_state(16)
    assert m.forward(np.zeros(0, np.int64), st).shape == (0, m.n_vocab) and st.n_past == 0
    with pytest.raises(TokenizerError):
        m.forward(np.array([1, m.n_vocab]), st)
    assert st.n_past == 0


@pytest.mark.parametrize("key", ["attention.sliding_window_pattern", "attention.sliding_window"])
def test_missing_required_key_is_refused(key):
    g = open_gguf(golden_dir() / "models" / f"{F16}.gguf")
    del g.metadata[f"step35.{key}"]
    with pytest.raises(UnsupportedModelError, match=key.replace(".", r"\.")):
        load_model(g)


def test_expert_weights_norm_defaults_to_false():
    g = open_gguf(golden_dir() / "models" / f"{F16}.gguf")
    del g.metadata["step35.expert_weights_norm"]
    assert load_model(g).cfg.weights_norm is False
