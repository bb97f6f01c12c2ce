"""jit.attention: the JIT attention kernel gives exactly the bits of the numpy twin
inference.ops._attention_f16 (llama.cpp's CPU attention over an F16 cache, float16 arrays; or over
an F32 cache, float32 arrays, nothing rounded to half), for batches and single queries, grouped KV
heads, plain caches and wrapped rings, windows, odd sizes and any thread count; with F16C and with
the portable half conversions."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import ops
from jit import attention as ja
from jit.cpu import CpuInfo, avx2, detect
from jit.pool import Pool

pytestmark = pytest.mark.skipif(not ja.usable(16, 16, 64), reason="the attention kernel needs FMA")


DTYPES = {"f16": np.float16, "f32": np.float32}


def make(rng, T, Hq, Hkv, dk, dv, R, scale_q=1.0, kv="f16"):
    """q [T, Hq, dk] float32 and a cache of type kv: kc [R, Hkv, dk], vc [R, Hkv, dv]."""
    kc = (rng.standard_normal((R, Hkv, dk)).astype(np.float32) * scale_q).astype(DTYPES[kv])
    vc = rng.standard_normal((R, Hkv, dv)).astype(DTYPES[kv])
    q = (rng.standard_normal((T, Hq, dk)) * scale_q).astype(np.float32)
    return q, kc, vc


def twin(q, kc, vc, pos, window, scale, single):
    """The numpy path: keys gathered by position from the cache, ops.attention on them (F16), or
    the same sums without half rounding (F32)."""
    R = kc.shape[0]
    lo = 0 if window is None else max(0, int(pos[0]) - window + 1)
    kpos = np.arange(lo, int(pos[-1]) + 1)
    if kc.dtype == np.float16:
        return ops.attention(q, kc[kpos % R], vc[kpos % R], pos, kpos, scale, window, round_f16=True,
                             decode_order=single)
    return ops._attention_f16(q, kc[kpos % R], vc[kpos % R], pos, kpos, scale, window, single, half=False)


def no_f16c() -> CpuInfo:
    """AVX2 + FMA without F16C: the kernels' portable half conversions."""
    c = avx2()
    return CpuInfo(c.name, c.features.replace("+f16c", "-f16c"), c.has_avx2, c.has_fma, False, False, False, False)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 40), groups=st.sampled_from([(1, 1), (4, 1), (6, 2), (9, 3), (8, 4), (8, 1)]),
       dk=st.sampled_from([16, 32, 64, 80, 256]), dv=st.sampled_from([16, 48, 64, 256]),
       p0=st.integers(0, 300), ring=st.integers(64, 400), window=st.one_of(st.none(), st.integers(1, 64)),
       threads=st.integers(1, 3), scale_q=st.sampled_from([0.1, 1.0, 8.0]), seed=st.integers(0, 1000),
       kv=st.sampled_from(["f16", "f32"]))
def test_same_bits_as_the_numpy_twin(T, groups, dk, dv, p0, ring, window, threads, scale_q, seed, kv):
    Hq, Hkv = groups
    if window is None:
        ring = max(ring, p0 + T)               # a plain cache holds every position
    else:
        T = min(T, ring - window + 1)          # the ring still holds what each query sees (window <= ring: T >= 1)
    rng = np.random.default_rng(seed)
    q, kc, vc = make(rng, T, Hq, Hkv, dk, dv, ring, scale_q, kv)
    pos = np.arange(p0, p0 + T)
    k_begin = np.zeros(T, np.int64) if window is None else np.maximum(0, pos - window + 1)
    scale = 1.0 / np.sqrt(dk)
    for single in ((True, False) if T == 1 else (False,)):
        mine = ja.attend(q, kc, vc, pos, k_begin, scale, single, pool=Pool(threads, align=1))
        assert np.array_equal(mine, twin(q, kc, vc, pos, window, scale, single))


@pytest.mark.parametrize("kv", ["f16", "f32"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_decode_at_long_context_and_a_prefill_batch(threads, kv):
    """SmolLM2's and Gemma's head layouts at a few hundred positions."""
    rng = np.random.default_rng(threads)
    pool = Pool(threads, align=1)
    for (Hq, Hkv, d), T, p0, window, R in (((9, 3, 64), 1, 700, None, 1024), ((9, 3, 64), 129, 0, None, 256),
                                           ((4, 1, 256), 1, 1500, 512, 768), ((4, 1, 256), 257, 900, 512, 768)):
        q, kc, vc = make(rng, T, Hq, Hkv, d, d, R, kv=kv)
        pos = np.arange(p0, p0 + T)
        k_begin = np.zeros(T, np.int64) if window is None else np.maximum(0, pos - window + 1)
        mine = ja.attend(q, kc, vc, pos, k_begin, 0.125, T == 1, pool=pool)
        assert np.array_equal(mine, twin(q, kc, vc, pos, window, 0.125, T == 1))


@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_cached_attention_same_on_both_paths(monkeypatch, kv):
    rng = np.random.default_rng(5)
    q, kc, vc = make(rng, 20, 6, 2, 64, 64, 100, kv=kv)
    pos = np.arange(150, 170)
    out = {}
    for path in ("jit", "numpy"):
        monkeypatch.setenv("LECTERN_KERNELS", path)
        out[path] = ops.cached_attention(q, kc, vc, pos, 0.3, window=40)
        out[path + "1"] = ops.cached_attention(q[:1], kc, vc, pos[:1], 0.3, window=40)
        out[path + "b"] = ops.cached_attention(q[:1], kc, vc, pos[:1], 0.3, window=40, single=False)
    assert np.array_equal(out["jit"], out["numpy"])
    assert np.array_equal(out["jit1"], out["numpy1"]) and np.array_equal(out["jitb"], out["numpyb"])
    assert np.array_equal(out["jitb"], out["jit"][:1])             # batch order: a batch's first row


@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_a_long_batch_in_query_blocks_gives_the_same_bits_and_polls_between(monkeypatch, kv):
    """cached_attention cuts a long batch into query blocks (a Stop is seen between them)."""
    from inference import interrupt

    monkeypatch.setenv("LECTERN_KERNELS", "jit")
    rng = np.random.default_rng(6)
    q, kc, vc = make(rng, 37, 6, 2, 64, 64, 200, kv=kv)
    pos = np.arange(150, 187)
    whole = ops.cached_attention(q, kc, vc, pos, 0.3, window=90)
    polls = []
    monkeypatch.setattr(ops, "POLL_SCORES", 6 * 126 * 5)     # 6 heads, keys 61..186: 5 queries a block
    with interrupt.watching(interrupt.Hooks(lambda k, n: None, lambda part: polls.append(part))):
        blocks = ops.cached_attention(q, kc, vc, pos, 0.3, window=90)
    assert np.array_equal(blocks, whole) and polls == [t / 37 for t in range(0, 37, 5)]

    def stop(part):
        if len(polls) == 10:
            raise KeyboardInterrupt
        polls.append(1)

    with interrupt.watching(interrupt.Hooks(lambda k, n: None, stop)), pytest.raises(KeyboardInterrupt):
        ops.cached_attention(q, kc, vc, pos, 0.3, window=90)


@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_extreme_scores_give_the_twin_bits(kv):
    """Huge and tiny scores: exp underflow to zero and subnormals inside the softmax."""
    rng = np.random.default_rng(9)
    q, kc, vc = make(rng, 3, 2, 1, 32, 32, 128, scale_q=30.0, kv=kv)
    pos = np.arange(90, 93)
    mine = ja.attend(q, kc, vc, pos, np.zeros(3, np.int64), 1.0, False)
    assert np.isfinite(mine).all()
    assert np.array_equal(mine, twin(q, kc, vc, pos, None, 1.0, False))


def test_refuses_what_does_not_fit():
    rng = np.random.default_rng(0)
    q, kc, vc = make(rng, 2, 4, 2, 32, 32, 64)
    with pytest.raises(ValueError):
        ja.attend(q, kc, vc, np.array([10, 11]), np.array([12, 0]), 1.0, False)   # begins after the query
    with pytest.raises(ValueError):
        ja.attend(q, kc, vc, np.array([100, 101]), np.array([0, 0]), 1.0, False)  # more keys than the ring
    with pytest.raises(ValueError):
        ja.attend(q[:, :3], kc, vc, np.array([1, 2]), np.array([0, 0]), 1.0, False)  # 3 heads over 2
    assert not ja.usable(20, 32, 128) and not ja.usable(32, 32, 32)
    assert ja.usable(64, 64, 512, detect()) and ja.usable(64, 64, 512, detect(), half=False)


@pytest.mark.skipif(not (detect().has_avx2 and detect().has_fma), reason="needs AVX2 and FMA")
@settings(max_examples=12, deadline=None)
@given(T=st.integers(1, 20), dk=st.sampled_from([16, 64]), p0=st.integers(0, 200),
       window=st.one_of(st.none(), st.integers(1, 64)), scale_q=st.sampled_from([0.1, 1.0, 30.0]),
       seed=st.integers(0, 1000), kv=st.sampled_from(["f16", "f32"]))
def test_portable_half_conversions_give_the_same_bits(T, dk, p0, window, scale_q, seed, kv):
    """Compiled without F16C (integer code widens the cached halves and rounds q and the
    probabilities to half): the twin's bits still, for decode and batch kernels."""
    rng = np.random.default_rng(seed)
    q, kc, vc = make(rng, T, 4, 2, dk, dk, max(64, p0 + T), scale_q, kv)
    # subnormal, huge and infinite halves in the cache, which the conversions must keep exactly
    kc.reshape(-1)[:8] = np.array([6e-8, -3e-5, 1e-7, 65504, -65504, 5.96e-8, 0, -0.0]).astype(kc.dtype)
    pos = np.arange(p0, p0 + T)
    k_begin = np.zeros(T, np.int64) if window is None else np.maximum(0, pos - window + 1)
    for single in ((True, False) if T == 1 else (False,)):
        mine = ja.attend(q, kc, vc, pos, k_begin, 0.5, single, pool=Pool(2, align=1), cpu=no_f16c())
        assert np.array_equal(mine, twin(q, kc, vc, pos, window, 0.5, single), equal_nan=True)


def test_kernels_are_keyed_by_cache_type():
    from jit.kernels.attention import attention_ir, symbol
    from jit.kernels.attention_batch import attention_group_ir

    cpu = detect()
    a, b = attention_ir(64, 64, True, "f16", cpu), attention_ir(64, 64, True, "f32", cpu)
    assert symbol(64, 64, True, "f16") in a and symbol(64, 64, True, "f32") in b and a != b
    assert "x i16>" in a and "x i16>" not in b                          # halves loaded only from F16
    assert attention_group_ir(64, 64, 3, "f16", cpu) != attention_group_ir(64, 64, 3, "f32", cpu)
    with pytest.raises(ValueError):
        ja.attend(*make(np.random.default_rng(0), 1, 2, 1, 16, 16, 64)[:2],
                  np.zeros((64, 1, 16), np.float32), np.array([3]), np.array([0]), 1.0, True)   # f16 K, f32 V
