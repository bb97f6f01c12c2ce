"""Q4_0 repacked 8 rows at a time (jit/kernels/q4_0x8.py, jit/repack.py): the layout holds the
file's weights (checked against gguf's own dequantization), the matvec agrees with the twin on
every CPU path, any row range and thread count, the batch kernel gives the matvec's bits, and
the engine repacks exactly the weights it should."""
from __future__ import annotations

import mmap

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants as gq
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import ops
from inference.gguf_file import Tensor
from jit import api, repack, twins
from jit.kernels import q4_0x8 as X
from jit.kernels.tiles import P_NTOK, P_XQ, P_XSTRIDE, P_YSTRIDE
from jit.linear import LinearOp
from jit.pool import Pool
from tests.jit.conftest import CPU_PRESETS, cpu_of, random_weights


def weights(rows: int, n_cols: int, seed: int) -> np.ndarray:
    return random_weights(np.random.default_rng(seed), T.Q4_0, rows, n_cols)


def values_from_layout(packed: np.ndarray, rows: int, n_cols: int) -> np.ndarray:
    """The weights as the layout's docstring defines them, read byte by byte (float32 [rows, n_cols])."""
    nb = n_cols // 32
    p = packed.reshape(rows // 8, nb, 144)
    out = np.empty((rows, n_cols), np.float32)
    for g in range(rows // 8):
        for b in range(nb):
            d = p[g, b, :16].view(np.float16).astype(np.float32)
            for j in range(4):
                for r in range(8):
                    for m in range(4):
                        byte = int(p[g, b, 16 + 32 * j + 4 * r + m])
                        for h, q in ((0, byte & 15), (1, byte >> 4)):
                            out[8 * g + r, 32 * b + 8 * j + 4 * h + m] = d[r] * (q - 8)
    return out


@settings(max_examples=20, deadline=None)
@given(groups=st.integers(1, 3), nb=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_the_layout_holds_the_files_weights(groups, nb, seed):
    rows, n_cols = 8 * groups, 32 * nb
    w = weights(rows, n_cols, seed)
    packed = X.repack(w, rows, n_cols)
    assert packed.size == w.size
    want = gq.dequantize(w.reshape(rows, -1), T.Q4_0)
    assert np.array_equal(values_from_layout(packed, rows, n_cols), want)
    assert np.array_equal(X.unpack(packed, rows, n_cols), w)


def test_repack_refuses_a_partial_group():
    with pytest.raises(ValueError, match="multiple of 8"):
        X.repack(weights(12, 32, 0), 12, 32)


def test_q8_0_activations_carry_their_integer_sums():
    x = np.random.default_rng(3).standard_normal(96).astype(np.float32)
    xq = api.quantize_activation(x, T.Q4_0)
    assert np.array_equal(xq, twins.quantize_q8_0(x))
    q = xq[:3 * 34].reshape(3, 34)[:, 2:].view(np.int8).astype(np.int32)
    aux = xq[3 * 34:].view(np.int32).reshape(3, 2)
    assert np.array_equal(aux[:, 1], q.sum(axis=1))


@pytest.mark.parametrize("preset", CPU_PRESETS)
@settings(max_examples=12, deadline=None)
@given(groups=st.integers(1, 6), nb=st.integers(1, 9), span=st.tuples(st.integers(0, 47), st.integers(1, 48)),
       threads=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_matvec_matches_the_twin_on_any_rows(preset, groups, nb, span, threads, seed):
    rows, n_cols = 8 * groups, 32 * nb
    r0 = min(span[0], rows - 1)
    r1 = min(rows, r0 + span[1])
    cpu = cpu_of(preset)
    w = weights(rows, n_cols, seed)
    x = np.random.default_rng(seed + 1).standard_normal(n_cols).astype(np.float32)
    xq = api.quantize_activation(x, T.Q4_0, cpu)
    k = repack._kernels(cpu)
    packed = X.repack(w, rows, n_cols)
    y = np.full(rows, 7.0, np.float32)
    k["matvec_q4_0x8"](packed.ctypes.data, xq.ctypes.data, y.ctypes.data, r0, r1, n_cols)
    split = np.empty(rows, np.float32)                 # all rows, chunks cutting through groups
    Pool(threads, align=1).run(k["matvec_q4_0x8"], (packed.ctypes.data, xq.ctypes.data, split.ctypes.data),
                               rows, (n_cols,))
    assert np.array_equal(split[r0:r1], y[r0:r1])
    terms = twins.block_terms(w, T.Q4_0, n_cols, xq)
    ref = terms.sum(axis=1)
    tol = 4 * nb * np.finfo(np.float32).eps * np.abs(terms).sum(axis=1) + 1e-30
    assert np.all(np.abs(y[r0:r1] - ref[r0:r1]) <= tol[r0:r1])
    assert np.all(y[:r0] == 7.0) and np.all(y[r1:] == 7.0)          # rows outside the range untouched


@pytest.mark.parametrize("preset", CPU_PRESETS)
@pytest.mark.parametrize("n_tok", [1, 3, 4, 9])
def test_batch_gives_the_matvecs_bits(preset, n_tok):
    rows, n_cols = 40, 32 * 5
    cpu = cpu_of(preset)
    w = weights(rows, n_cols, n_tok)
    packed = X.repack(w, rows, n_cols)
    k = repack._kernels(cpu)
    xs = np.random.default_rng(n_tok).standard_normal((n_tok, n_cols)).astype(np.float32)
    xq = np.stack([api.quantize_activation(x, T.Q4_0, cpu) for x in xs])
    p = np.zeros(6, np.int64)
    p[P_XQ], p[P_NTOK], p[P_XSTRIDE], p[P_YSTRIDE] = xq.ctypes.data, n_tok, xq.shape[1], 4 * rows
    batch = np.zeros((n_tok, rows), np.float32)
    k["mm_q4_0x8"](packed.ctypes.data, p.ctypes.data, batch.ctypes.data, 3, 37, n_cols)   # partial groups
    for t in range(n_tok):
        one = np.zeros(rows, np.float32)
        k["matvec_q4_0x8"](packed.ctypes.data, xq[t].ctypes.data, one.ctypes.data, 3, 37, n_cols)
        assert np.array_equal(batch[t], one)


def tensor(rows: int, n_cols: int, seed: int = 0) -> Tensor:
    return Tensor("w", T.Q4_0, (n_cols, rows), weights(rows, n_cols, seed))


def test_the_engine_repacks_q4_0_with_whole_groups_only(monkeypatch):
    x = np.random.default_rng(0).standard_normal((5, 96)).astype(np.float32)
    for rows, packed in ((48, True), (44, False)):
        w = tensor(rows, 96, rows)
        op = LinearOp(w)
        assert op.repacked is packed
        with monkeypatch.context() as mp:
            mp.setenv("LECTERN_KERNELS", "numpy")
            ref = ops.linear(w, x)
        assert np.abs(op(x) - ref).max() <= 2e-5 * np.abs(ref).max()
        assert np.array_equal(op(x)[2], op(x[2]))                       # batch and decode agree
    monkeypatch.setenv("LECTERN_REPACK", "0")
    assert not LinearOp(tensor(48, 96)).repacked
    assert not repack.applies(T.Q8_0, 64)


def test_release_gives_back_only_read_only_mapped_pages(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, 5 * mmap.PAGESIZE + 123, np.uint8)
    f = tmp_path / "w.bin"
    f.write_bytes(data.tobytes())
    with open(f, "rb") as fh:
        m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = np.frombuffer(m, np.uint8)[100:]
    repack.release(view)
    assert np.array_equal(view, data[100:])                    # read again from the file
    mine = data.copy()
    repack.release(mine)                                       # ordinary memory: left alone
    assert np.array_equal(mine, data)
    del view
    m.close()
