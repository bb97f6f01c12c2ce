"""kimi-linear against llama.cpp's outputs on the tiny golden models (../shared/golden).

Every tiny-kimi-linear-*.gguf: batch logits, token-by-token decode, split prefill and greedy
continuation agree with llama.cpp within the golden README's bounds (F16 under the strict row:
the exact check of KDA, MLA and the MoE routing); the F16 residual stream agrees layer by layer
with an independent float64 forward pass. The 200-token prompts cross several 16/64-token
chunks of the delta rule. Also: the chunked WY delta rule equals the recurrence, State.copy()
forks a sequence, and layouts the engine cannot run are refused with UnsupportedModelError.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from functools import lru_cache

import numpy as np
import pytest

from inference import ops
from inference.errors import ContextOverflowError, UnsupportedModelError
from inference.gguf_file import Tensor, open_gguf
from inference.models import load_model
from inference.models.base import KV, RECURRENT
from inference.models.kda import causal_conv, gated_delta_chunked, gated_delta_rule, l2_norm
from inference.models.kimi_linear import Model as KimiLinear
from tests.conftest import golden_dir, golden_models
from tests.inference.golden import assert_close, check_greedy, compare_logits

STEMS = [s for s in golden_models() if s.startswith("tiny-kimi-linear-")] or ["<no tiny-kimi-linear files>"]
F16 = "tiny-kimi-linear-F16"


_MODELS: dict = {}
_KV_TYPE = ["f16"]        # the cache type of every model here (exact_math: "f32")


def model(stem: str):
    if stem not in _MODELS:
        _MODELS[stem] = load_model(golden_dir() / "models" / f"{stem}.gguf", kv_type=_KV_TYPE[0])
    return _MODELS[stem]


def set_kv_type(kv_type: str) -> None:
    _KV_TYPE[0] = kv_type
    for m in _MODELS.values():
        m.kv_type = kv_type


@lru_cache(maxsize=None)
def ref(stem: str):
    return dict(np.load(golden_dir() / "ref" / f"{stem}.npz"))


@contextmanager
def exact_math():
    """Float32 throughout: no llama.cpp-style 8-bit/F16 rounding of activations before matmuls
    and a float32 MLA latent cache (states made inside the block).

    With rounding on, a 1e-7 difference between a batched and a one-row matmul can flip one
    rounding step; that is llama.cpp's own behaviour, but it hides state-handling bugs, so the
    split/decode-equals-batch checks run the exact math."""
    old = getattr(ops, "ROUND_ACTIVATIONS", None)
    if old is not None:
        ops.ROUND_ACTIVATIONS = False
    set_kv_type("f32")
    try:
        yield
    finally:
        set_kv_type("f16")
        if old is not None:
            ops.ROUND_ACTIVATIONS = old


@lru_cache(maxsize=None)
def batch_logits(stem: str, exact: bool = False) -> np.ndarray:
    if exact:
        with exact_math():
            return model(stem).logits(ref(stem)["tokens"])
    return model(stem).logits(ref(stem)["tokens"])


def run_chunks(m, tokens: np.ndarray, sizes: list[int], state=None) -> np.ndarray:
    """Feed tokens in consecutive chunks of the given sizes (the rest last) into one state."""
    st = state if state is not None else m.new_state(len(tokens))
    bounds = np.cumsum([0] + sizes + [len(tokens) - sum(sizes)])
    return np.concatenate([m.forward(tokens[a:b], st) for a, b in zip(bounds[:-1], bounds[1:]) if b > a])


def test_all_kimi_linear_files_present():
    assert len(STEMS) >= 4 and all(s.startswith("tiny-kimi-linear-") for s in STEMS), STEMS


def test_config_from_metadata():
    c = model(F16).config
    assert c.is_kda == [True, True, True, False, True]      # head_count_kv [0 0 0 1 0]
    assert (c.n_head, c.kda_head_dim, c.d_conv) == (4, 64, 4)
    assert (c.kv_lora_rank, c.n_rope, c.key_length_mla, c.value_length_mla) == (64, 16, 48, 32)
    assert (c.n_expert, c.n_expert_used, c.n_dense_lead, c.gating) == (8, [2] * 5, 1, 2)
    assert c.w_scale == pytest.approx(2.446)


@pytest.mark.parametrize("stem", STEMS)
def test_batch_matches_llama_cpp(stem):
    r = assert_close(batch_logits(stem), ref(stem)["logits"], stem)
    print(f"{stem} batch: {r}")


@pytest.mark.parametrize("stem", STEMS)
def test_token_by_token_matches_llama_cpp(stem):
    m, tokens = model(stem), ref(stem)["tokens"]
    ours = run_chunks(m, tokens, [1] * (len(tokens) - 1))
    r = assert_close(ours, ref(stem)["logits"], stem)
    print(f"{stem} token-by-token: {r}")


@pytest.mark.parametrize("sizes", [[5, 60], [64, 64, 1, 7], [3, 1, 1, 9, 100], [1] * 30])
@pytest.mark.parametrize("stem", STEMS)
def test_split_prefill_equals_batch(stem, sizes):
    # the carried conv/delta/latent state makes any split equal the one-batch evaluation
    with exact_math():
        ours = run_chunks(model(stem), ref(stem)["tokens"], sizes)
    d = compare_logits(ours, batch_logits(stem, exact=True)).d
    assert d.max() < 1e-4, f"split {sizes}: max d {d.max():.2e}"


@pytest.mark.parametrize("stem", STEMS)
def test_a_long_chunk_runs_its_mixer_and_dense_ffn_in_parts(monkeypatch, stem):
    """prefill_chunk (2048) makes long chunks; the KDA mixer and the dense FFN run them in parts
    (kda.MIXER_ROWS, FFN_ROWS tokens), which is the same math as separate calls: the parts are
    multiples of the WY chunk, and the logits equal those of an unsplit forward."""
    from inference.models import kda, kimi_linear

    m = model(stem)
    toks = np.random.default_rng(5).integers(0, m.n_vocab, 150)
    with exact_math():
        whole = m.logits(toks)
        sizes = []
        real = kda.kda_mixer
        monkeypatch.setattr(kda, "MIXER_ROWS", 64)
        monkeypatch.setattr(kimi_linear, "FFN_ROWS", 48)
        monkeypatch.setattr(kda, "kda_mixer", lambda x, *a: sizes.append(len(x)) or real(x, *a))
        monkeypatch.setattr(kimi_linear, "kda_mixer", kda.kda_mixer)
        parts = m.logits(toks)
    n_kda = sum(m.config.is_kda)
    assert sizes == [150, 64, 64, 22] * n_kda
    d = compare_logits(parts, whole).d
    assert d.max() < 1e-5, f"max d {d.max():.2e}"


@pytest.mark.parametrize("stem", STEMS)
def test_greedy_continuation(stem):
    m, r = model(stem), ref(stem)
    st = m.new_state(len(r["tokens"]) + len(r["greedy"]))

    def step(tok):
        ids = r["tokens"] if tok is None else np.array([tok])
        return m.forward(ids, st, last_only=True)[0]

    n = check_greedy(step, r["greedy"])
    print(f"{stem} greedy: {n}/{len(r['greedy'])} steps before a near tie")
    if stem == F16:
        assert n == len(r["greedy"]), "F16 must follow llama.cpp's whole greedy continuation"


@pytest.mark.parametrize("exact, bound", [(True, 1e-4), (False, 1e-2)])
def test_f16_residuals_match_float64_reference(exact, bound):
    # exact float32 math sits ~1e-6 from the float64 pass; llama.cpp-style F16 activation
    # rounding moves it to ~1e-3
    res = np.load(golden_dir() / "debug" / f"{F16}-residuals.npz")
    trace: dict = {}
    m = model(F16)
    with exact_math() if exact else nullcontext():
        m._forward(res["tokens"], m.new_state(len(res["tokens"])), trace=trace)
    assert sorted(trace) == sorted(k for k in res.files if k.startswith("blk_"))
    for name in sorted(trace, key=lambda k: (int(k.split("_")[1]), "ffn" in k)):
        want = res[name]
        rel = np.max(np.abs(trace[name] - want)) / np.std(want)
        assert rel < bound, f"{name}: max |ours - ref| / std = {rel:.2e}: this is the first wrong layer"


def test_state_layout_and_copy_forks_the_sequence():
    m, tokens = model(F16), ref(F16)["tokens"]
    st = m.new_state(128)
    assert st.kinds["blk.0.ssm"] == RECURRENT and st.arrays["blk.0.ssm"].shape == (4, 64, 64)
    assert st.arrays["blk.0.conv_q"].shape == (3, 256) and st.kinds["blk.0.conv_v"] == RECURRENT
    assert st.kinds["blk.3.kv"] == KV and st.arrays["blk.3.kv"].shape == (128, 64 + 16)
    # llama.cpp's F16 cache type: the rows are float16 (1152 bytes a token at full width)
    assert st.arrays["blk.3.kv"].dtype == np.float16 and st.kv_type == "f16"
    m.forward(tokens[:20], st)
    kv = st.arrays["blk.3.kv"][:20]
    assert np.abs(kv).max() > 0 and np.all(np.isfinite(kv))
    with exact_math():
        st = m.new_state(128)
        m.forward(tokens[:50], st)
        fork = st.copy()
        a = m.forward(tokens[50:80], fork)      # the copy goes on ...
        b = m.forward(tokens[50:80], st)        # ... and the original is untouched by it
    np.testing.assert_array_equal(a, b)
    assert fork.n_past == st.n_past == 80
    assert not st.can_rewind(79)                # a recurrent state only lives at n_past
    assert compare_logits(b, batch_logits(F16, exact=True)[50:80]).d.max() < 1e-4


def test_context_overflow_is_refused():
    m = model(F16)
    st = m.new_state(10)
    m.forward(np.arange(1, 9), st)
    with pytest.raises(ContextOverflowError):
        m.forward(np.arange(1, 4), st)


def _edited_f16():
    g = open_gguf(golden_dir() / "models" / f"{F16}.gguf")
    g.tensors = dict(g.tensors)
    g.metadata = dict(g.metadata)
    return g


def test_legacy_unsplit_attn_kv_b_is_refused():
    g = _edited_f16()
    kb = g.tensors.pop("blk.3.attn_k_b.weight")
    g.tensors.pop("blk.3.attn_v_b.weight")
    # HF kv_b_proj as the old converters wrote it: ne [kv_lora_rank, H * (nope + v)]
    n = 64 * 4 * (32 + 32)
    g.tensors["blk.3.attn_kv_b.weight"] = Tensor("blk.3.attn_kv_b.weight", kb.ggml_type, (64, 4 * 64),
                                                 np.zeros(n * 2, np.uint8))
    with pytest.raises(UnsupportedModelError, match="attn_kv_b"):
        KimiLinear(g)


@pytest.mark.parametrize("edit, match", [
    (lambda md: md.pop("kimi-linear.expert_gating_func"), "expert_gating_func"),
    (lambda md: md.__setitem__("kimi-linear.expert_gating_func", 9), "expert_gating_func"),
    (lambda md: md.pop("kimi-linear.kda.head_dim"), "kda.head_dim"),
    (lambda md: md.__setitem__("kimi-linear.attention.head_count_kv", np.array([0, 0, 1])), "head_count_kv"),
])
def test_bad_metadata_is_refused(edit, match):
    g = _edited_f16()
    edit(g.metadata)
    with pytest.raises(UnsupportedModelError, match=match):
        KimiLinear(g)


def test_missing_kda_tensor_is_refused():
    g = _edited_f16()
    g.tensors.pop("blk.2.ssm_f_b.weight")
    with pytest.raises(UnsupportedModelError, match="blk.2.ssm_f_b.weight"):
        KimiLinear(g)


# --- the delta rule and the short conv on random inputs -------------------------------------------
def _random_delta_inputs(rng, T, H, d, g_scale):
    q = l2_norm(rng.standard_normal((T, H, d)).astype(np.float32), 1e-5)
    k = l2_norm(rng.standard_normal((T, H, d)).astype(np.float32), 1e-5)
    v = rng.standard_normal((T, H, d)).astype(np.float32)
    g = (-g_scale * np.abs(rng.standard_normal((T, H, d)))).astype(np.float32)
    beta = rng.uniform(0, 1, (T, H)).astype(np.float32)
    S0 = rng.standard_normal((H, d, d)).astype(np.float32)
    return q, k, v, g, beta, S0


@pytest.mark.parametrize("T, chunk, g_scale", [(37, 16, 0.5), (100, 16, 3.0), (65, 64, 0.1), (5, 16, 40.0)])
def test_chunked_delta_rule_equals_recurrence(T, chunk, g_scale):
    rng = np.random.default_rng(T)
    q, k, v, g, beta, S0 = _random_delta_inputs(rng, T, 3, 32, g_scale)
    S_rec, S_chk = S0.copy(), S0.copy()
    o_rec = gated_delta_rule(q, k, v, g, beta, S_rec)
    o_chk = gated_delta_chunked(q, k, v, g, beta, S_chk, chunk)
    np.testing.assert_allclose(o_chk, o_rec, atol=1e-4)
    np.testing.assert_allclose(S_chk, S_rec, atol=1e-4)


def test_delta_rule_decays_the_key_axis():
    # one head, d=2: decay only key channel 0; the value axis must be untouched
    S = np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32)
    z = np.zeros((1, 1, 2), np.float32)
    g = np.array([[[np.log(0.5), 0.0]]], np.float32)
    gated_delta_rule(z, z, z, g, np.zeros((1, 1), np.float32), S)
    np.testing.assert_allclose(S[0], [[0.5, 1.0], [3.0, 4.0]])


def test_causal_conv_state_carries_across_calls():
    rng = np.random.default_rng(1)
    u = rng.standard_normal((20, 6)).astype(np.float32)
    w = rng.standard_normal((6, 4)).astype(np.float32)
    whole = causal_conv(u, np.zeros((3, 6), np.float32), w)
    st = np.zeros((3, 6), np.float32)
    parts = np.concatenate([causal_conv(u[a:b], st, w) for a, b in [(0, 1), (1, 3), (3, 20)]])
    np.testing.assert_allclose(parts, whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(st, u[-3:])                   # the PRE-conv projections
    # tap 3 multiplies the current token, tap 0 the one three back
    np.testing.assert_allclose(whole[5], (w * u[2:6].T).sum(1), rtol=1e-5)


def test_fused_attn_qkv_equals_separate_projections():
    # a KDA layer may carry one attn_qkv [E, 3D] (rows q | k | v) instead of attn_q/k/v
    g = _edited_f16()
    parts = [g.tensors.pop(f"blk.1.attn_{n}.weight") for n in "qkv"]
    E, D = parts[0].shape_ggml
    g.tensors["blk.1.attn_qkv.weight"] = Tensor("blk.1.attn_qkv.weight", parts[0].ggml_type, (E, 3 * D),
                                                np.concatenate([p.data for p in parts]))
    fused = KimiLinear(g)
    assert fused.layers[1].mixer.attn_q is None and fused.layers[1].mixer.attn_qkv is not None
    tokens = ref(F16)["tokens"][:40]
    np.testing.assert_allclose(fused.logits(tokens), model(F16).logits(tokens), rtol=1e-4, atol=1e-4)
