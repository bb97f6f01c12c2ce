"""Q4_K and Q5_K repacked 8 rows at a time (jit/kernels/x8k.py, jit/repack.py): the layout holds the file's
weights (read byte by byte as its docstring defines them, against gguf's own dequantization), the
repack kernel matches its twin, and the matvec and both batch orders give the bits of the file
layout's kernels (kquants.py, themselves checked against the numpy twins and llama.cpp's orders)
on every CPU path, any row range, any thread count."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants as gq
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.gguf_file import Tensor
from jit import api, repack, twins
from jit.cpu import detect
from jit.kernels import x8k as X
from jit.kernels.tiles import P_NTOK, P_STEP, P_XQ, P_XSTRIDE, P_YSTRIDE
from jit.linear import LinearOp, mm_kernel
from jit.pool import Pool
from tests.jit.conftest import CPU_PRESETS, cpu_of, finite_f16, random_weights


NAMES = list(X.MODES)


def weights(rows: int, n_cols: int, seed: int, wide: bool = False, name: str = "Q4_K") -> np.ndarray:
    return random_weights(np.random.default_rng(seed), T[name], rows, n_cols, wide)


def values_from_layout(packed: np.ndarray, rows: int, n_cols: int, name: str) -> np.ndarray:
    """The weights as x8k's docstring lays them out, read back (float32 [rows, n_cols])."""
    nb = n_cols // 256
    qs_at = X.QS_AT[name]
    p = packed.reshape(rows // 8, nb, 8 * X.SRC_BYTES[name])
    out = np.empty((rows, n_cols), np.float32)
    for g in range(rows // 8):
        for b in range(nb):
            blk = p[g, b]
            d, dmin = blk[:16].view(np.float16).astype(np.float32), blk[16:32].view(np.float16).astype(np.float32)
            for r in range(8):
                q = bytes(blk[32 + 32 * w + 4 * r + i] for w in range(3) for i in range(4))   # file's 12 bytes
                for j in range(8):
                    if j < 4:
                        sc, m = q[j] & 63, q[j + 4] & 63
                    else:
                        sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4)
                        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4)
                    c, h = divmod(j, 2)
                    for e in range(32):
                        k, i = divmod(e, 4)
                        byte = int(blk[qs_at + 32 * (8 * c + k) + 4 * r + i])
                        nib = (byte >> 4) if h else (byte & 15)
                        if name == "Q5_K":
                            nib |= ((int(blk[128 + 32 * k + 4 * r + i]) >> j) & 1) << 4
                        out[8 * g + r, 256 * b + 32 * j + e] = d[r] * sc * nib - dmin[r] * m
    return out


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=6, deadline=None)
@given(groups=st.integers(1, 2), nb=st.integers(1, 2), seed=st.integers(0, 10_000))
def test_the_layout_holds_the_files_weights(name, groups, nb, seed):
    rows, n_cols = 8 * groups, 256 * nb
    w = weights(rows, n_cols, seed, name=name)
    packed = X.repack(w, rows, n_cols, name)
    assert packed.size == w.size
    want = gq.dequantize(w.reshape(rows, -1), T[name])
    got = values_from_layout(packed, rows, n_cols, name)
    # gguf computes d * sc * q - dmin * m in float32 in its own order; ours here too, element-wise
    assert np.allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    assert np.array_equal(X.unpack(packed, rows, n_cols, name), w)


CASES = [(n, p) for n in NAMES for p in CPU_PRESETS]


@pytest.mark.parametrize("name, preset", CASES)
@settings(max_examples=6, deadline=None)
@given(groups=st.integers(1, 30), nb=st.integers(1, 3), threads=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_the_repack_kernel_matches_its_twin(name, preset, groups, nb, threads, seed):
    rows, n_cols = 8 * groups, 256 * nb
    w = weights(rows, n_cols, seed, name=name)
    got = repack.repacked(T[name], w, rows, n_cols, cpu_of(preset), pool=Pool(threads, align=1))
    assert np.array_equal(got, X.repack(w, rows, n_cols, name))


@pytest.mark.parametrize("name", NAMES)
def test_the_repack_kernel_goes_in_slices(monkeypatch, name):
    rows, n_cols = 8 * 11, 512
    w = weights(rows, n_cols, 3, name=name)
    monkeypatch.setattr(repack, "SLICE_BYTES", 3 * 8 * 2 * X.SRC_BYTES[name])      # 3 groups a slice
    got = repack.repacked(T[name], w, rows, n_cols, give_back=True)
    assert np.array_equal(X.unpack(got, rows, n_cols, name), w)


def test_repack_refuses_a_partial_group_or_superblock():
    with pytest.raises(ValueError, match="multiple of 8 rows"):
        X.repack(weights(12, 256, 0), 12, 256)
    with pytest.raises(ValueError, match="groups of 8 rows"):
        repack.repacked(T.Q4_K, weights(8, 256, 0)[:-1], 8, 256)


@pytest.mark.parametrize("name, preset", CASES)
@settings(max_examples=8, deadline=None)
@given(groups=st.integers(1, 5), nb=st.integers(1, 4), span=st.tuples(st.integers(0, 39), st.integers(1, 40)),
       threads=st.integers(1, 3), seed=st.integers(0, 10_000), wide=st.booleans())
def test_matvec_gives_the_file_layouts_bits(name, preset, groups, nb, span, threads, seed, wide):
    rows, n_cols = 8 * groups, 256 * nb
    r0 = min(span[0], rows - 1)
    r1 = min(rows, r0 + span[1])
    cpu = cpu_of(preset)
    w = weights(rows, n_cols, seed, wide, name)
    x = np.random.default_rng(seed + 1).standard_normal(n_cols).astype(np.float32)
    xq = api.quantize_activation(x, T[name], cpu)
    want = np.empty(rows, np.float32)
    api.matvec_kernel(T[name], cpu)(w.ctypes.data, xq.ctypes.data, want.ctypes.data, 0, rows, n_cols)
    mv = repack.kernels(name, cpu)[0]
    packed = X.repack(w, rows, n_cols, name)
    y = np.full(rows, 7.0, np.float32)
    mv(packed.ctypes.data, xq.ctypes.data, y.ctypes.data, r0, r1, n_cols)
    assert np.array_equal(y[r0:r1], want[r0:r1], equal_nan=True)
    assert np.all(y[:r0] == 7.0) and np.all(y[r1:] == 7.0)          # rows outside the range untouched
    split = np.empty(rows, np.float32)                               # chunks cutting through groups
    Pool(threads, align=1).run(mv, (packed.ctypes.data, xq.ctypes.data, split.ctypes.data), rows, (n_cols,))
    assert np.array_equal(split, want, equal_nan=True)


@pytest.mark.parametrize("name, mode, preset", [(n, m, p) for n in NAMES for m in X.MODES[n] for p in CPU_PRESETS])
@pytest.mark.parametrize("n_tok", [1, 3, 4, 9])
def test_batch_gives_the_file_layouts_bits(name, mode, preset, n_tok):
    rows, n_cols = 40, 256 * 3
    cpu = cpu_of(preset)
    w = weights(rows, n_cols, n_tok, name=name)
    xs = np.random.default_rng(n_tok).standard_normal((n_tok, n_cols)).astype(np.float32)
    xq = np.stack([twins.quantize_q8_K_il(x) for x in xs])             # the batch kernels' activations
    p = np.zeros(6, np.int64)
    p[P_XQ], p[P_NTOK], p[P_XSTRIDE], p[P_YSTRIDE], p[P_STEP] = xq.ctypes.data, n_tok, xq.shape[1], 4 * rows, 1

    def run(kern, data) -> np.ndarray:
        y = np.zeros((n_tok, rows), np.float32)
        kern(data.ctypes.data, p.ctypes.data, y.ctypes.data, 3, 37, n_cols)   # partial groups
        return y
    want = run(mm_kernel(name, cpu, mode), w)
    got = run(repack.kernels(name, cpu)[1][mode], X.repack(w, rows, n_cols, name))
    assert np.array_equal(got[:, 3:37], want[:, 3:37]) and not got[:, :3].any() and not got[:, 37:].any()


@pytest.mark.parametrize("name", NAMES)
def test_the_engine_gives_the_same_bits_repacked(monkeypatch, name):
    """A repacked Q4_K / Q5_K weight gives the file layout's bits for decode and for batches (Q4_K:
    gemm for the tokens in fours, gemv for the rest, as kquants.batch_modes says), extreme scales
    included."""
    rows, n_cols = 48, 768
    rng = np.random.default_rng(5)
    w = weights(rows, n_cols, 5, name=name).reshape(-1, X.SRC_BYTES[name])
    w[:, :4] = finite_f16(rng, 2 * w.shape[0], True).view(np.uint8).reshape(-1, 4)
    t = Tensor("w", T[name], (n_cols, rows), w.reshape(-1))
    monkeypatch.setenv("LECTERN_REPACK", "1")                   # Q5_K is not repacked by default
    op = LinearOp(t)
    monkeypatch.setenv("LECTERN_REPACK", "0")
    ref = LinearOp(t)
    assert op.repacked and not ref.repacked
    for n in (1, 2, 5, 8, 70):
        x = rng.standard_normal((n, n_cols)).astype(np.float32)
        assert np.array_equal(op(x), ref(x), equal_nan=True)
    x = rng.standard_normal(n_cols).astype(np.float32)
    assert np.array_equal(op(x), ref(x), equal_nan=True)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("r0, r1", [(0, 8 * 23), (3, 8 * 23 - 5), (8 * 7 + 1, 8 * 19 + 3)])
def test_matvec_reads_many_groups_as_streams_with_the_same_bits(name, r0, r1):
    """23 groups: STREAMS runs of several groups each, then the groups left over; rows cut inside groups."""
    rows, n_cols = 8 * 23, 512
    w = weights(rows, n_cols, r0 + r1, name=name)
    xq = api.quantize_activation(np.random.default_rng(r1).standard_normal(n_cols).astype(np.float32), T[name])
    want = np.empty(rows, np.float32)
    api.matvec_kernel(T[name])(w.ctypes.data, xq.ctypes.data, want.ctypes.data, 0, rows, n_cols)
    packed = X.repack(w, rows, n_cols, name)
    y = np.full(rows, 7.0, np.float32)
    repack.kernels(name, detect())[0](packed.ctypes.data, xq.ctypes.data, y.ctypes.data, r0, r1, n_cols)
    assert np.array_equal(y[r0:r1], want[r0:r1], equal_nan=True)
    assert np.all(y[:r0] == 7.0) and np.all(y[r1:] == 7.0)
