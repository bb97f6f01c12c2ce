"""Sampling: each step of llama.cpp's chain checked against its definition, on random logits."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inference.sampling import GREEDY, Sampler, SamplingParams

# logits without ties, so "the argmax" and "the k largest" are well defined
logit_arrays = st.integers(2, 300).flatmap(
    lambda n: arrays(np.float64, n, elements=st.floats(-30, 30), unique=True))
seeds = st.integers(0, 2**32 - 1)


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def params(**kw) -> SamplingParams:
    """Every filter off unless asked for."""
    base = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    base.update(kw)
    return SamplingParams(**base)


def test_defaults_are_llama_cpp_defaults():
    p = SamplingParams()
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (0.8, 40, 0.95, 0.05)
    assert (p.repeat_penalty, p.repeat_last_n, p.frequency_penalty, p.presence_penalty) == (1.0, 64, 0, 0)
    assert p.seed is None and p.stop == ()


@settings(max_examples=60, deadline=None)
@given(logit_arrays, seeds, st.floats(0.05, 5.0))
def test_top_k_1_is_always_the_argmax(z, seed, temp):
    s = Sampler(params(top_k=1, temperature=temp, seed=seed))
    assert all(s.sample(z) == int(np.argmax(z)) for _ in range(5))


@settings(max_examples=60, deadline=None)
@given(logit_arrays, seeds)
def test_tiny_top_p_is_the_argmax(z, seed):
    s = Sampler(params(top_p=1e-9, temperature=2.0, seed=seed))
    assert all(s.sample(z) == int(np.argmax(z)) for _ in range(5))


@settings(max_examples=60, deadline=None)
@given(logit_arrays, seeds, st.floats(-3.0, 0.0))
def test_temperature_zero_or_below_is_greedy(z, seed, temp):
    s = Sampler(params(temperature=temp, seed=seed, top_k=40, top_p=0.5))
    assert s.sample(z) == int(np.argmax(z))


@settings(max_examples=80, deadline=None)
@given(logit_arrays, st.integers(1, 400))
def test_top_k_keeps_the_k_largest(z, k):
    ids, _ = Sampler(params(top_k=k)).candidates(z)
    want = set(np.argsort(-z)[:min(k, len(z))].tolist())
    assert set(ids.tolist()) == want


@settings(max_examples=80, deadline=None)
@given(logit_arrays, st.floats(0.0, 0.999))
def test_top_p_keeps_the_smallest_prefix_reaching_p(z, top_p):
    ids, _ = Sampler(params(top_p=top_p)).candidates(z)
    probs = softmax(z)
    kept = probs[ids]
    # sorted best first, covers top_p, and dropping the last one would not
    assert np.all(np.diff(kept) <= 0)
    assert kept.sum() >= top_p - 1e-12
    assert kept[:-1].sum() < top_p + 1e-12
    assert set(ids.tolist()) == set(np.argsort(-z)[:len(ids)].tolist())


@settings(max_examples=80, deadline=None)
@given(logit_arrays, st.floats(0.001, 1.0))
def test_min_p_keeps_tokens_at_least_min_p_times_the_best(z, min_p):
    ids, _ = Sampler(params(min_p=min_p)).candidates(z)
    probs = softmax(z)
    want = {i for i in range(len(z)) if probs[i] >= min_p * probs.max() * (1 - 1e-9)}
    borderline = {i for i in range(len(z)) if abs(probs[i] - min_p * probs.max()) <= 1e-9 * probs.max()}
    assert want - borderline <= set(ids.tolist()) <= want | borderline
    assert int(np.argmax(z)) in ids


@settings(max_examples=40, deadline=None)
@given(logit_arrays, st.floats(0.1, 4.0), st.integers(0, 50), st.floats(0.0, 1.0), st.floats(0.0, 0.5))
def test_distribution_is_softmax_of_kept_logits_over_temperature(z, temp, k, top_p, min_p):
    s = Sampler(params(temperature=temp, top_k=k, top_p=top_p, min_p=min_p))
    ids, probs = s.distribution(z)
    assert np.isclose(probs.sum(), 1.0)
    np.testing.assert_allclose(probs, softmax(z[ids] / temp), rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(logit_arrays, seeds)
def test_same_seed_same_tokens(z, seed):
    a = Sampler(params(seed=seed, temperature=1.5))
    b = Sampler(params(seed=seed, temperature=1.5))
    assert [a.sample(z) for _ in range(20)] == [b.sample(z) for _ in range(20)]


def test_different_seeds_differ_and_no_seed_is_random():
    z = np.zeros(1000)

    def draws(seed):
        smp = Sampler(params(seed=seed))
        return [smp.sample(z) for _ in range(10)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert draws(None) != draws(None)


def test_draws_follow_the_distribution():
    z = np.log(np.array([0.5, 0.25, 0.15, 0.1]))
    s = Sampler(params(seed=1234))
    n = 20000
    counts = np.bincount([s.sample(z) for _ in range(n)], minlength=4) / n
    np.testing.assert_allclose(counts, [0.5, 0.25, 0.15, 0.1], atol=0.015)


def test_temperature_sharpens_and_flattens():
    z = np.array([2.0, 1.0, 0.0])
    cold = Sampler(params(temperature=0.5)).distribution(z)[1]
    hot = Sampler(params(temperature=2.0)).distribution(z)[1]
    assert cold[0] > softmax(z)[0] > hot[0]


@settings(max_examples=80, deadline=None)
@given(logit_arrays, st.data(), st.floats(0.5, 3.0), st.floats(-1, 1), st.floats(-1, 1),
       st.integers(-1, 20))
def test_penalties_change_exactly_the_penalised_ids(z, data, rp, fp, pp, last_n):
    n = len(z)
    history = data.draw(st.lists(st.integers(0, n - 1), max_size=40))
    s = Sampler(params(repeat_penalty=rp, frequency_penalty=fp, presence_penalty=pp, repeat_last_n=last_n))
    out = s.penalize(z, history)
    window = history if last_n == -1 else (history[-last_n:] if last_n > 0 else [])
    counts = {t: window.count(t) for t in set(window)}
    for i in range(n):
        if i in counts:
            x = z[i] * rp if z[i] <= 0 else z[i] / rp
            assert math.isclose(out[i], x - counts[i] * fp - pp, rel_tol=1e-12, abs_tol=1e-12)
        else:
            assert out[i] == z[i]


def test_repeat_penalty_examples():
    z = np.array([2.0, -2.0, 1.0, 0.5])
    s = Sampler(params(repeat_penalty=2.0, repeat_last_n=2))
    # token 2 is outside the last 2 tokens; 0 and 1 are inside
    np.testing.assert_array_equal(s.penalize(z, [2, 0, 1]), [1.0, -4.0, 1.0, 0.5])
    s = Sampler(params(frequency_penalty=0.5, presence_penalty=0.25, repeat_last_n=-1))
    np.testing.assert_array_equal(s.penalize(z, [3, 3, 3, 0]), [2.0 - 0.75, -2.0, 1.0, 0.5 - 1.75])


def test_penalty_can_change_the_greedy_choice():
    z = np.array([3.0, 2.0, 0.0])
    s = Sampler(params(temperature=0, repeat_penalty=2.0))
    assert s.sample(z, history=[]) == 0
    assert s.sample(z, history=[0]) == 1


def test_nan_logits_are_never_chosen_and_all_nan_is_refused():
    z = np.array([np.nan, 1.0, np.nan, 0.5])
    s = Sampler(params(seed=0))
    assert {s.sample(z) for _ in range(50)} <= {1, 3}
    with pytest.raises(ValueError, match="no finite logits"):
        s.sample(np.full(4, np.nan))


@pytest.mark.parametrize("kw, match", [
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_p=-0.1), "top_p"),
    (dict(min_p=2.0), "min_p"),
    (dict(repeat_penalty=0.0), "repeat_penalty"),
    (dict(repeat_last_n=-2), "repeat_last_n"),
    (dict(frequency_penalty=float("inf")), "frequency_penalty"),
    (dict(seed=-1), "seed"),
    (dict(max_tokens=-5), "max_tokens"),
    (dict(stop=("",)), "stop"),
    (dict(top_k=2.5), "top_k"),
])
def test_impossible_values_are_refused_with_the_parameter_named(kw, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kw)


def test_stop_accepts_a_single_string():
    assert SamplingParams(stop="\n\n").stop == ("\n\n",)
    assert GREEDY.greedy and not SamplingParams().greedy


def reference_sample(p: SamplingParams, rng, logits, history):
    """The sampler as first written (float64 copies of the whole vocabulary, argpartition): the
    faster one must pick the same tokens from the same draws."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    z = np.where(np.isnan(z), -np.inf, z)
    z = Sampler(p).penalize(z, history)
    if p.greedy:
        return int(np.argmax(z))
    n = z.shape[0]
    k = n if p.top_k <= 0 else min(p.top_k, n)
    ids = np.argpartition(-z, k - 1)[:k] if k < n else np.arange(n)
    ids = ids[np.lexsort((ids, -z[ids]))]
    zz = z[ids]
    if p.top_p < 1.0:
        cum = np.cumsum(softmax(zz))
        keep = int(np.searchsorted(cum, p.top_p, side="left")) + 1
        ids, zz = ids[:keep], zz[:keep]
    if p.min_p > 0.0:
        keep = zz >= zz[0] + math.log(p.min_p)
        ids, zz = ids[keep], zz[keep]
    probs = softmax(zz / p.temperature)
    if len(ids) == 1:
        return int(ids[0])
    cum = np.cumsum(probs)
    return int(ids[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(ids) - 1)])


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 3000), levels=st.sampled_from([0, 3, 50]), seed=seeds,
       top_k=st.sampled_from([0, 1, 2, 40, 5000]), top_p=st.sampled_from([1.0, 0.95, 0.3]),
       min_p=st.sampled_from([0.0, 0.05]), temp=st.sampled_from([0.0, 0.8, 1.5]),
       penalty=st.sampled_from([1.0, 1.1]), nan=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
def test_same_tokens_as_the_reference_sampler(n, levels, seed, top_k, top_p, min_p, temp, penalty, nan, dtype):
    """float32 logits with ties at the top-k boundary (few distinct levels), -inf, NaN, penalties."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n) * 4
    if levels:
        z = np.round(z * levels / 8) * (8 / levels)          # many equal values
    z[rng.random(n) < 0.05] = -np.inf
    if nan:
        z[rng.integers(0, n)] = np.nan
    z = z.astype(dtype)
    if not np.isfinite(z).any():
        z[0] = 1.0
    p = SamplingParams(temperature=temp, top_k=top_k, top_p=top_p, min_p=min_p, repeat_penalty=penalty, seed=seed)
    history = list(rng.integers(0, n, 30))
    fast, ref = Sampler(p), np.random.default_rng(seed)
    for _ in range(3):
        assert fast.sample(z, history) == reference_sample(p, ref, z, history)
