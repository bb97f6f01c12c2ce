"""The KV cache type setting (inference.kv_cache): "f16" (default, llama.cpp's: float16 arrays)
or "f32" (float32 arrays, nothing rounded to half), on every architecture of the golden models:
the cache arrays' dtype and bytes per token (equal to model_info's estimate), the f32 cache
against float32 / float64 references, and against llama.cpp's logits within the golden README's
tolerance (llama.cpp's reference used its F16 cache)."""
from __future__ import annotations

import numpy as np
import pytest

from inference import ops
from inference.engine import Engine
from inference.errors import KVTypeError, LecternError
from inference.gguf_file import open_gguf
from inference.kv_cache import check_kv_type, kv_dtype
from inference.model_info import memory_estimate
from inference.models import load_model
from inference.models.base import KV, RING
from tests.conftest import golden_dir
from tests.inference.golden import assert_close, compare_logits

ARCH_STEMS = ["tiny-llama-F16", "tiny-gemma3-F16", "tiny-kimi-linear-F16", "tiny-step35-F16"]


def path_of(stem: str):
    return golden_dir() / "models" / f"{stem}.gguf"


def ref(stem: str) -> dict:
    return dict(np.load(golden_dir() / "ref" / f"{stem}.npz"))


def test_check_kv_type_names_and_refusals():
    assert [check_kv_type(v) for v in ("f16", "F32", " f16 ")] == ["f16", "f32", "f16"]
    for bad in ("q8_0", "", "float16", None, 16):
        with pytest.raises(KVTypeError, match="f16, f32"):
            check_kv_type(bad)
    assert issubclass(KVTypeError, LecternError) and issubclass(KVTypeError, ValueError)
    assert kv_dtype("f16") == np.float16 and kv_dtype("f32") == np.float32


def test_a_bad_kv_type_is_refused_at_load():
    with pytest.raises(KVTypeError, match="'q4'"):
        load_model(path_of("tiny-llama-Q8_0"), kv_type="q4")
    with pytest.raises(KVTypeError):
        Engine.load(path_of("tiny-llama-Q8_0"), kv_type="bf16")
    m = load_model(path_of("tiny-llama-Q8_0"))
    assert m.kv_type == "f16"
    with pytest.raises(KVTypeError):
        m.kv_type = "f8"
    assert Engine.load(path_of("tiny-llama-Q8_0"), kv_type="F32").kv_type == "f32"


def cache_row_bytes(st) -> int:
    """Bytes per token of every layer's cache (KV and ring buffers; not the ring positions)."""
    return sum(a.nbytes // a.shape[0] for name, a in st.arrays.items()
               if st.kinds.get(name) in (KV, RING) and not name.startswith("pos."))


@pytest.mark.parametrize("kv_type", ["f16", "f32"])
@pytest.mark.parametrize("stem", ARCH_STEMS)
def test_cache_dtype_and_bytes_per_token_equal_the_estimate(stem, kv_type):
    m = load_model(path_of(stem), kv_type=kv_type)
    n = 600                                   # past every window + ring slack: rings are full size
    st, st1 = m.new_state(n), m.new_state(n + 1)
    assert st.kv_type == kv_type
    caches = [a for name, a in st.arrays.items() if st.kinds.get(name) in (KV, RING) and not name.startswith("pos.")]
    assert caches and all(a.dtype == kv_dtype(kv_type) for a in caches)
    g = open_gguf(path_of(stem))
    est = memory_estimate(g, n, kv_type)
    assert est["kv_type"] == kv_type
    assert est["kv_bytes_per_token"] == cache_row_bytes(st)          # every cache layer's row
    grow = memory_estimate(g, n + 1, kv_type)["cache_bytes"] - est["cache_bytes"]
    assert grow == st1.nbytes() - st.nbytes() > 0                    # what one more token of context costs
    if kv_type == "f32":
        half = memory_estimate(g, n, "f16")["kv_bytes_per_token"]
        assert est["kv_bytes_per_token"] == 2 * half


def run(m, tokens, n_prompt: int) -> np.ndarray:
    """The prompt as one batch, then the rest decoded one token at a time -> logits [T, n_vocab]."""
    st = m.new_state(len(tokens))
    out = [m.forward(tokens[:n_prompt], st)]
    out += [m.forward(tokens[i:i + 1], st) for i in range(n_prompt, len(tokens))]
    return np.concatenate(out)


def plain_cached_attention(q, kc, vc, pos, scale, window=None, single=None):
    """Float32 attention over the cached keys, nothing rounded to half: the reference."""
    R = kc.shape[0]
    lo = 0 if window is None else max(0, int(pos[0]) - window + 1)
    kpos = np.arange(lo, int(pos[-1]) + 1)
    k, v = kc[kpos % R].astype(np.float32), vc[kpos % R].astype(np.float32)
    return ops.attention(q, k, v, pos, kpos, scale, window)


@pytest.fixture
def float32_math(monkeypatch):
    """Unrounded activations and the per-op path (the plans' linears always round)."""
    from inference.models import gemma3, llama

    monkeypatch.setattr(ops, "ROUND_ACTIVATIONS", False)
    monkeypatch.setattr(llama, "USE_PLAN", False)
    monkeypatch.setattr(gemma3, "USE_PLAN", False)


@pytest.mark.parametrize("stem", ["tiny-llama-F16", "tiny-llama-Q4_K_M", "tiny-gemma3-F16"])
def test_f32_cache_equals_float32_reference_attention(stem, float32_math, monkeypatch):
    """The f32 cache (kernel or numpy, batch and decode) against plain float32 attention: float32
    summation-order differences only; the f16 cache is visibly further off (half rounding)."""
    tokens = ref(stem)["tokens"][:48]
    got = {kv: run(load_model(path_of(stem), kv_type=kv), tokens, 40) for kv in ("f32", "f16")}
    monkeypatch.setattr(ops, "cached_attention", plain_cached_attention)
    want = run(load_model(path_of(stem), kv_type="f32"), tokens, 40)
    d32, d16 = (compare_logits(got[kv], want).d.max() for kv in ("f32", "f16"))
    print(f"{stem}: max d f32 cache {d32:.2e}, f16 cache {d16:.2e}")
    assert d32 < 1e-4, f"f32 cache: max d {d32:.2e}"
    assert d16 > 3 * d32, f"f16 {d16:.2e} vs f32 {d32:.2e}: the f16 cache should round"


@pytest.mark.parametrize("stem", ["tiny-kimi-linear-F16", "tiny-step35-F16"])
def test_f32_cache_equals_the_float64_reference(stem, monkeypatch):
    """kimi-linear's MLA latent and step35's caches in float32: the golden float64 pass's logits
    (debug/) to float32 rounding, closer than the f16 cache gets."""
    monkeypatch.setattr(ops, "ROUND_ACTIVATIONS", False)
    res = np.load(golden_dir() / "debug" / f"{stem}-residuals.npz")
    tokens, want = res["tokens"], res["logits"]
    d = {}
    for kv in ("f32", "f16"):
        m = load_model(path_of(stem), kv_type=kv)
        d[kv] = compare_logits(m.forward(tokens, m.new_state(len(tokens))), want).d.max()
    assert d["f32"] < 1e-4, f"f32 cache: max d {d['f32']:.2e}"
    assert d["f16"] > d["f32"]


@pytest.mark.parametrize("stem", ARCH_STEMS + ["tiny-llama-Q8_0", "tiny-gemma3-Q8_0"])
def test_f32_cache_is_close_to_llama_cpp(stem):
    """llama.cpp's reference logits were computed with its F16 cache; the f32 cache stays within
    the README's tolerance for the file (batch prompt, then decoded tokens on the plans)."""
    r = ref(stem)
    m = load_model(path_of(stem), kv_type="f32")
    tokens = r["tokens"]
    n_prompt = len(tokens) - 8
    ours = run(m, tokens, n_prompt)
    assert_close(ours, r["logits"], stem)
    st = m.new_state(8)
    m.forward(tokens[:8], st)
    caches = [a for name, a in st.arrays.items() if st.kinds.get(name) == KV]
    assert all(a.dtype == np.float32 for a in caches)
    written = np.concatenate([a[:8].ravel() for a in caches])
    assert not np.array_equal(written, written.astype(np.float16).astype(np.float32))   # not half-rounded


@pytest.mark.parametrize("stem", ARCH_STEMS)
def test_the_document_fit_check_counts_the_cache_type(stem):
    from inference.documents.fit import fit_check

    rep = {kv: fit_check(Engine.load(path_of(stem), kv_type=kv), 500, 1000) for kv in ("f16", "f32")}
    g = open_gguf(path_of(stem))
    for kv, r in rep.items():
        assert r.kv_type == kv and f"{kv.upper()} KV cache" in r.message
        grow = memory_estimate(g, 1001, kv)["cache_bytes"] - memory_estimate(g, 1000, kv)["cache_bytes"]
        assert r.bytes_per_token == grow                   # the growing (whole-context) layers' rows
    assert rep["f32"].bytes_per_token == 2 * rep["f16"].bytes_per_token > 0
    assert rep["f32"].state_bytes > rep["f16"].state_bytes
