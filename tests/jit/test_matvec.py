"""Matvec kernels on random valid blocks: (a) equal to the numpy twin to float32 rounding,
(b) equal to gguf's dequantize(W) @ x up to the activation's 8-bit rounding, (c) bit-identical
for every thread count, on every CPU path (host, AVX2, portable)."""
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf import quants as gq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jit import api, twins
from jit.kernels.matvec import SUPPORTED
from jit.pool import Pool

from .conftest import CPU_PRESETS, cpu_of, random_weights

POOLS = {n: Pool(n, align=1) for n in (1, 2, 3)}   # align=1: ranges cut anywhere, the hardest case


def dequantized(w: np.ndarray, qtype: T, rows: int, n_cols: int) -> np.ndarray:
    if qtype == T.F32:
        return w.view(np.float32).reshape(rows, n_cols).astype(np.float64)
    if qtype == T.F16:
        return w.view(np.float16).reshape(rows, n_cols).astype(np.float64)
    bb = GGML_QUANT_SIZES[qtype][1]
    return gq.dequantize(w.reshape(-1, bb), qtype).reshape(rows, n_cols).astype(np.float64)


def abs_dequantized(w: np.ndarray, qtype: T, rows: int, n_cols: int) -> np.ndarray:
    """|d|*|q| (+ |min| terms): each element's magnitude before scale and min can cancel, which
    bounds the lanes the kernels sum in float."""
    if qtype in (T.Q4_1, T.Q5_1, T.Q4_K, T.Q5_K, T.Q2_K):
        b = w.reshape(-1, GGML_QUANT_SIZES[qtype][1]).copy()
        at = 80 if qtype == T.Q2_K else 0    # Q2_K: f16 d, dmin after scales and qs
        for off, sign in ((at, 1), (at + 2, 1 if qtype in (T.Q4_1, T.Q5_1) else -1)):
            f = b[:, off:off + 2].copy().view(np.float16)
            b[:, off:off + 2] = (np.abs(f) * sign).astype(np.float16).view(np.uint8)
        w = b.reshape(-1)
    return np.abs(dequantized(w, qtype, rows, n_cols))


def check_matvec(qtype: T, cpu, w: np.ndarray, rows: int, n_cols: int, x: np.ndarray) -> None:
    ys = [api.matvec_raw(w, qtype, rows, n_cols, x, cpu=cpu, pool=POOLS[n]) for n in (1, 2, 3)]
    for y in ys[1:]:                                       # (c) every thread count, same bits
        assert np.array_equal(y.view(np.uint32), ys[0].view(np.uint32))
    y = ys[0].astype(np.float64)

    # (a) the twin: exact integer block sums, float32 scale products, float64 sum
    xq = twins.QUANTIZE[twins.ACTIVATION[qtype]](x)
    terms = twins.block_terms(w, qtype, n_cols, xq)
    xhat = twins.dequantize_activation(xq, twins.ACTIVATION[qtype])
    magnitude = np.abs(terms).sum(axis=1) + abs_dequantized(w, qtype, rows, n_cols) @ np.abs(xhat)
    bound_a = (terms.shape[1] + 16) * 2.0**-23 * magnitude + 1e-37
    err_a = np.abs(y - terms.sum(axis=1))
    assert (err_a <= bound_a).all(), f"vs twin: worst {np.max(err_a / bound_a):.3g} of the float bound"

    # (b) the float truth: |W x - W x^| <= sum |W| |x - x^| (+ Q4_1's f16-rounded s = d*sum(q))
    W = dequantized(w, qtype, rows, n_cols)
    x64 = x.astype(np.float64)
    bound_b = np.abs(W) @ np.abs(x64 - xhat) + bound_a + 2.0**-20 * (np.abs(W) @ np.abs(x64))
    if qtype in (T.Q4_1, T.Q5_1):
        d, s, q = twins.unpack_q8_32(xq, True)
        m = twins._f16(w.reshape(rows, -1, GGML_QUANT_SIZES[qtype][1])[..., 2:4]).astype(np.float64)
        bound_b = bound_b + np.abs(m) @ np.abs(s - d.astype(np.float64) * q.sum(axis=1))
    err_b = np.abs(y - W @ x64)
    assert (err_b <= bound_b).all(), f"vs dequantize(W) @ x: worst {np.max(err_b / bound_b):.3g} of the bound"


@st.composite
def problems(draw, qtype: T):
    bs = GGML_QUANT_SIZES[qtype][0] if qtype not in (T.F32, T.F16) else 1
    rows = draw(st.integers(1, 40))
    if qtype in (T.F32, T.F16):
        n_cols = draw(st.integers(1, 300))
    else:
        n_cols = bs * draw(st.integers(1, 6 if bs == 256 else 24))
    return rows, n_cols, draw(st.integers(0, 2**32 - 1)), draw(st.booleans())


@pytest.mark.parametrize("preset", CPU_PRESETS)
@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda t: t.name)
def test_matvec_random_blocks(qtype, preset):
    cpu = cpu_of(preset)

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(p=problems(qtype))
    @example(p=(1, GGML_QUANT_SIZES[qtype][0], 1, False))     # one row of one block
    @example(p=(17, GGML_QUANT_SIZES[qtype][0] * 2, 2, True))  # rows not a multiple of the threads
    def check(p):
        rows, n_cols, seed, wide = p
        rng = np.random.default_rng(seed)
        w = random_weights(rng, qtype, rows, n_cols, wide_scales=wide and qtype != T.F16)
        x = (rng.standard_normal(n_cols) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
        if rng.random() < 0.2:
            x[: min(n_cols, 256)] = 0
        check_matvec(qtype, cpu, w, rows, n_cols, x)

    check()


@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda t: t.name)
def test_matvec_huge_rows(qtype):
    """Rows of 16384 values: long accumulations stay within the float bound."""
    rng = np.random.default_rng(7)
    rows, n_cols = 5, 16384
    w = random_weights(rng, qtype, rows, n_cols)
    x = rng.standard_normal(n_cols).astype(np.float32)
    check_matvec(qtype, cpu_of("host"), w, rows, n_cols, x)


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_0, T.Q5_0], ids=lambda t: t.name)
@pytest.mark.parametrize("n_cols", [640, 8192])
def test_row_groups_do_not_change_bits(qtype, n_cols):
    """Rows run in groups of 4 or one by one (Q8_0 rows under 8 KB: one by one); either way every
    row's value is the one it has as a matrix of its own."""
    rng = np.random.default_rng(n_cols)
    rows = 11
    w = random_weights(rng, qtype, rows, n_cols)
    x = rng.standard_normal(n_cols).astype(np.float32)
    whole = api.matvec_raw(w, qtype, rows, n_cols, x, pool=POOLS[2])
    per_row = w.size // rows
    alone = [api.matvec_raw(w[r * per_row:(r + 1) * per_row], qtype, 1, n_cols, x, pool=POOLS[1])[0]
             for r in range(rows)]
    assert np.array_equal(whole, np.array(alone, np.float32))


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_1], ids=lambda t: t.name)
def test_every_finite_half_scale(qtype):
    """32-block scales (and Q4_1's mins) are read through the f16 table (jit/tables.py): one
    block per row, the rows' scales running through every finite half, subnormals and negatives
    included, all as the twin computes them."""
    halves = np.arange(1 << 16, dtype=np.uint16)
    halves = halves[np.isfinite(halves.view(np.float16))]
    rng = np.random.default_rng(11)
    rows, bb = halves.size, GGML_QUANT_SIZES[qtype][1]
    w = random_weights(rng, qtype, rows, 32).reshape(rows, bb)
    w[:, 0:2] = halves.view(np.uint8).reshape(rows, 2)
    if qtype == T.Q4_1:
        w[:, 2:4] = rng.permutation(halves).view(np.uint8).reshape(rows, 2)
    x = rng.standard_normal(32).astype(np.float32)
    check_matvec(qtype, cpu_of("host"), w.reshape(-1), rows, 32, x)


def test_paths_agree_closely():
    """host, AVX2 and portable code compute the same sums (float order may differ slightly)."""
    rng = np.random.default_rng(3)
    for qtype in SUPPORTED:
        w = random_weights(rng, qtype, 33, 512)
        x = rng.standard_normal(512).astype(np.float32)
        ys = [api.matvec_raw(w, qtype, 33, 512, x, cpu=cpu_of(p), pool=POOLS[2]) for p in CPU_PRESETS]
        for y in ys[1:]:
            np.testing.assert_allclose(y, ys[0], rtol=1e-5, atol=1e-5 * np.abs(ys[0]).max())


def test_rejects_wrong_shapes():
    w = random_weights(np.random.default_rng(0), T.Q4_0, 2, 64)
    with pytest.raises(ValueError, match="x has"):
        api.matvec_raw(w, T.Q4_0, 2, 64, np.zeros(32, np.float32))
    with pytest.raises(ValueError, match="weight bytes"):
        api.matvec_raw(w[:-1], T.Q4_0, 2, 64, np.zeros(64, np.float32))
