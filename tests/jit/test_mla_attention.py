"""jit.mla_attention: the MLA latent decode kernel agrees with its numpy twin (same blocks and
merge) to float32 rounding, with plain softmax attention too, for f16 and f32 caches, and gives
the same bits for any thread count."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jit import mla_attention as jm
from jit.pool import Pool

pytestmark = pytest.mark.skipif(not jm.usable(96, 64, 2), reason="the MLA kernel needs F16C and FMA")


def make(rng, H, S, d, half, scale_q):
    cache = rng.standard_normal((S + 3, d)).astype(np.float16 if half else np.float32)
    q = (rng.standard_normal((H, d)) * scale_q).astype(np.float32)
    return q, cache


def plain(q, cache, S, scale, r_lat):
    """Softmax attention in float64: the value both sides approximate."""
    k = cache[:S].astype(np.float64)
    sc = q.astype(np.float64) @ k.T * scale
    p = np.exp(sc - sc.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)) @ k[:, :r_lat]


@settings(max_examples=30, deadline=None)
@given(H=st.sampled_from([2, 4, 6]), dims=st.sampled_from([(96, 64), (576, 512), (32, 32)]),
       S=st.integers(1, 700), half=st.booleans(), threads=st.integers(1, 3),
       scale_q=st.sampled_from([0.1, 1.0, 6.0]), seed=st.integers(0, 1000))
def test_kernel_matches_the_twin(H, dims, S, half, threads, scale_q, seed):
    d, r_lat = dims
    rng = np.random.default_rng(seed)
    q, cache = make(rng, H, S, d, half, scale_q)
    scale = 1.0 / np.sqrt(d)
    mine = jm.decode(q, cache, S, scale, r_lat, pool=Pool(threads, align=1))
    twin = jm.decode_twin(q, cache, S, scale, r_lat)
    ref = plain(q, cache, S, scale, r_lat)
    tol = 2e-5 * np.abs(ref).max() + 1e-6
    assert np.abs(twin - ref).max() <= tol
    assert np.abs(mine - ref).max() <= tol


@pytest.mark.parametrize("half", [True, False])
def test_same_bits_for_any_thread_count(half):
    """kimi-linear's shape (32 heads, 512 + 64) over more keys than blocks."""
    rng = np.random.default_rng(5)
    S = 3000
    q, cache = make(rng, 32, S, 576, half, 1.0)
    outs = [jm.decode(q, cache, S, 1 / 24, 512, pool=Pool(t, align=1)) for t in (1, 2, 3)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    assert np.abs(outs[0] - plain(q, cache, S, 1 / 24, 512)).max() < 1e-5


def test_blocks_depend_on_the_key_count_only():
    assert jm.block_size(1) == jm.MIN_BLOCK
    for S in (1, 100, 1025, 32768, 131072):
        blk = jm.block_size(S)
        assert blk % 16 == 0 and -(-S // blk) <= jm.MAX_BLOCKS


def test_rejects_a_cache_that_does_not_fit():
    q = np.zeros((2, 96), np.float32)
    with pytest.raises(ValueError):
        jm.decode(q, np.zeros((10, 80), np.float32), 10, 0.1, 64)
    with pytest.raises(ValueError):
        jm.decode(q, np.zeros((10, 96), np.float64), 10, 0.1, 64)
    with pytest.raises(ValueError):
        jm.decode(q, np.zeros((10, 96), np.float32), 11, 0.1, 64)


@pytest.mark.parametrize("S", [1, 77, 700])
def test_portable_half_loads_give_the_f16c_bits(S):
    """Compiled without F16C the cached halves are widened by integer code: the same floats,
    so the same bits as the F16C kernel of the same target otherwise."""
    from jit.cpu import CpuInfo, avx2, detect

    if not (detect().has_avx2 and detect().has_fma and detect().has_f16c):
        pytest.skip("needs AVX2, FMA and F16C")
    c = avx2()
    no_f16c = CpuInfo(c.name, c.features.replace("+f16c", "-f16c"), True, True, False, False, False, False)
    rng = np.random.default_rng(S)
    q, cache = make(rng, 4, S, 96, True, 1.0)
    cache[:4, :3] = np.array([6e-8, -3e-5, 65504.0], np.float16)      # subnormal and largest halves
    a = jm.decode(q, cache, S, 0.1, 64, pool=Pool(2, align=1), cpu=c)
    b = jm.decode(q, cache, S, 0.1, 64, pool=Pool(2, align=1), cpu=no_f16c)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("preset", ["host", "avx2"])
@pytest.mark.parametrize("dims", [(576, 512), (96, 64), (32, 32)])
def test_each_register_width_matches_the_twin(preset, dims):
    """The 512-bit variant (16-lane score sums reduced 8 keys at a time by a transposing tree,
    128 value columns per step; the host's on AVX-512 machines) and the 256-bit one (avx2) agree
    with the twin, across the last partial tile and several blocks."""
    from jit.cpu import PRESETS, usable_presets

    if preset not in usable_presets():
        pytest.skip(f"this machine cannot run the {preset} preset")
    d, r_lat = dims
    rng = np.random.default_rng(d)
    S = 16 * 70 + 9
    q, cache = make(rng, 6, S, d, True, 1.0)
    scale = 1.0 / np.sqrt(d)
    mine = jm.decode(q, cache, S, scale, r_lat, pool=Pool(2, align=1), cpu=PRESETS[preset]())
    ref = plain(q, cache, S, scale, r_lat)
    assert np.abs(mine - ref).max() <= 2e-5 * np.abs(ref).max() + 1e-6
    assert np.abs(mine - jm.decode_twin(q, cache, S, scale, r_lat)).max() <= 2e-5 * np.abs(ref).max() + 1e-6
