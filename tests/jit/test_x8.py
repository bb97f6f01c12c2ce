"""Q4_0 / Q8_0 repacked 8 rows at a time (jit/kernels/x8.py, jit/repack.py): the layout holds
the file's weights (checked against gguf's own dequantization), the matvec agrees with the twin
on every CPU path it runs on, any row range and thread count, the batch kernel gives the
matvec's bits, and the engine repacks exactly the weights it should."""
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
from jit.cpu import detect
from jit.kernels import x8 as X
from jit.kernels.tiles import P_NTOK, P_XQ, P_XSTRIDE, P_YSTRIDE
from jit.linear import LinearOp
from jit.pool import Pool
from tests.jit.conftest import CPU_PRESETS, cpu_of, random_weights


NAMES = ["Q4_0", "Q8_0"]


def weights(rows: int, n_cols: int, seed: int, name: str = "Q4_0") -> np.ndarray:
    return random_weights(np.random.default_rng(seed), T[name], rows, n_cols)


def values_from_layout(packed: np.ndarray, rows: int, n_cols: int, name: str) -> np.ndarray:
    """The weights as the layout's docstring defines them, read byte by byte (float32 [rows, n_cols])."""
    nb = n_cols // 32
    p = packed.reshape(rows // 8, nb, X.GROUP_BYTES[name])
    out = np.empty((rows, n_cols), np.float32)
    for g in range(rows // 8):
        for b in range(nb):
            d = p[g, b, :16].view(np.float16).astype(np.float32)
            for r in range(8):
                for m in range(4):
                    if name == "Q8_0":
                        for j in range(8):
                            q = int(p[g, b, 16 + 32 * j + 4 * r + m:][:1].view(np.int8)[0])
                            out[8 * g + r, 32 * b + 4 * j + m] = d[r] * q
                        continue
                    for j in range(4):
                        byte = int(p[g, b, 16 + 32 * j + 4 * r + m])
                        for h, q in ((0, byte & 15), (1, byte >> 4)):
                            out[8 * g + r, 32 * b + 8 * j + 4 * h + m] = d[r] * (q - 8)
    return out


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15, deadline=None)
@given(groups=st.integers(1, 3), nb=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_the_layout_holds_the_files_weights(name, groups, nb, seed):
    rows, n_cols = 8 * groups, 32 * nb
    w = weights(rows, n_cols, seed, name)
    packed = X.repack(w, rows, n_cols, name)
    assert packed.size == w.size
    want = gq.dequantize(w.reshape(rows, -1), T[name])
    assert np.array_equal(values_from_layout(packed, rows, n_cols, name), want)
    assert np.array_equal(X.unpack(packed, rows, n_cols, name), w)


@pytest.mark.parametrize("name, preset", [(n, p) for n in NAMES for p in CPU_PRESETS])
@settings(max_examples=10, deadline=None)
@given(groups=st.integers(1, 40), nb=st.integers(1, 6), threads=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_the_repack_kernel_matches_its_twin(name, preset, groups, nb, threads, seed):
    rows, n_cols = 8 * groups, 32 * nb
    w = weights(rows, n_cols, seed, name)
    got = repack.repacked(T[name], w, rows, n_cols, cpu_of(preset), pool=Pool(threads, align=1))
    assert np.array_equal(got, X.repack(w, rows, n_cols, name))


@pytest.mark.parametrize("name", NAMES)
def test_the_repack_kernel_goes_in_slices(monkeypatch, name):
    rows, n_cols = 8 * 11, 64
    w = weights(rows, n_cols, 3, name)
    monkeypatch.setattr(repack, "SLICE_BYTES", 3 * 8 * 2 * X.SRC_BYTES[name])      # 3 groups a slice
    got = repack.repacked(T[name], w, rows, n_cols, give_back=True)
    assert np.array_equal(got, X.repack(w, rows, n_cols, name)) and np.array_equal(X.unpack(got, rows, n_cols, name), w)


def test_the_repack_kernel_refuses_a_wrong_size():
    with pytest.raises(ValueError, match="groups of 8 rows"):
        repack.repacked(T.Q4_0, weights(8, 64, 0)[:-1], 8, 64)


def test_repack_refuses_a_partial_group():
    with pytest.raises(ValueError, match="multiple of 8"):
        X.repack(weights(12, 32, 0), 12, 32)


CASES = [(n, p) for n in NAMES for p in CPU_PRESETS]


def test_q8_0_activations_carry_their_integer_sums():
    x = np.random.default_rng(3).standard_normal(96).astype(np.float32)
    xq = api.quantize_activation(x, T.Q4_0)
    assert np.array_equal(xq, twins.quantize_q8_0(x))
    q = xq[:3 * 34].reshape(3, 34)[:, 2:].view(np.int8).astype(np.int32)
    aux = xq[3 * 34:].view(np.int32).reshape(3, 2)
    assert np.array_equal(aux[:, 1], q.sum(axis=1))


@pytest.mark.parametrize("name, preset", CASES)
@settings(max_examples=12, deadline=None)
@given(groups=st.integers(1, 6), nb=st.integers(1, 9), span=st.tuples(st.integers(0, 47), st.integers(1, 48)),
       threads=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_matvec_matches_the_twin_on_any_rows(name, preset, groups, nb, span, threads, seed):
    rows, n_cols = 8 * groups, 32 * nb
    r0 = min(span[0], rows - 1)
    r1 = min(rows, r0 + span[1])
    cpu = cpu_of(preset)
    w = weights(rows, n_cols, seed, name)
    x = np.random.default_rng(seed + 1).standard_normal(n_cols).astype(np.float32)
    xq = api.quantize_activation(x, T[name], cpu)
    mv, _, _ = repack.kernels(name, cpu)
    packed = X.repack(w, rows, n_cols, name)
    y = np.full(rows, 7.0, np.float32)
    mv(packed.ctypes.data, xq.ctypes.data, y.ctypes.data, r0, r1, n_cols)
    split = np.empty(rows, np.float32)                 # all rows, chunks cutting through groups
    Pool(threads, align=1).run(mv, (packed.ctypes.data, xq.ctypes.data, split.ctypes.data), rows, (n_cols,))
    assert np.array_equal(split[r0:r1], y[r0:r1])
    ref = twins.block_terms(w, T[name], n_cols, xq).sum(axis=1)
    # float32 sums of at most nb + 8 partial sums of exact integer products
    mag = np.abs(gq.dequantize(w.reshape(rows, -1), T[name]).astype(np.float64)) @ np.abs(
        twins.dequantize_activation(xq, "q8_0"))
    tol = 2 * (nb + 8) * np.finfo(np.float32).eps * mag + 1e-30
    assert np.all(np.abs(y[r0:r1] - ref[r0:r1]) <= tol[r0:r1])
    assert np.all(y[:r0] == 7.0) and np.all(y[r1:] == 7.0)          # rows outside the range untouched


@pytest.mark.parametrize("name, preset", CASES)
@pytest.mark.parametrize("n_tok", [1, 3, 4, 9])
def test_batch_gives_the_matvecs_bits(name, preset, n_tok):
    rows, n_cols = 40, 32 * 5
    cpu = cpu_of(preset)
    w = weights(rows, n_cols, n_tok, name)
    packed = X.repack(w, rows, n_cols, name)
    mv, mm, _ = repack.kernels(name, cpu)
    xs = np.random.default_rng(n_tok).standard_normal((n_tok, n_cols)).astype(np.float32)
    xq = np.stack([api.quantize_activation(x, T[name], cpu) for x in xs])
    p = np.zeros(6, np.int64)
    p[P_XQ], p[P_NTOK], p[P_XSTRIDE], p[P_YSTRIDE] = xq.ctypes.data, n_tok, xq.shape[1], 4 * rows
    batch = np.zeros((n_tok, rows), np.float32)
    mm(packed.ctypes.data, p.ctypes.data, batch.ctypes.data, 3, 37, n_cols)   # partial groups
    for t in range(n_tok):
        one = np.zeros(rows, np.float32)
        mv(packed.ctypes.data, xq[t].ctypes.data, one.ctypes.data, 3, 37, n_cols)
        assert np.array_equal(batch[t], one)


def tensor(rows: int, n_cols: int, seed: int = 0, name: str = "Q4_0") -> Tensor:
    return Tensor("w", T[name], (n_cols, rows), weights(rows, n_cols, seed, name))


@pytest.mark.parametrize("name", NAMES)
def test_the_engine_repacks_whole_groups_only(monkeypatch, name):
    x = np.random.default_rng(0).standard_normal((5, 96)).astype(np.float32)
    for rows, packed in ((48, True), (44, False)):
        w = tensor(rows, 96, rows, name)
        op = LinearOp(w)
        assert op.repacked is packed
        with monkeypatch.context() as mp:
            mp.setenv("LECTERN_KERNELS", "numpy")
            ref = ops.linear(w, x)
        assert np.abs(op(x) - ref).max() <= 2e-5 * np.abs(ref).max()
        assert np.array_equal(op(x)[2], op(x[2]))                       # batch and decode agree
    monkeypatch.setenv("LECTERN_REPACK", "0")
    assert not LinearOp(tensor(48, 96, 0, name)).repacked


def test_which_weights_are_repacked(monkeypatch):
    assert all(repack.applies(q, 16) for q in (T.Q4_0, T.Q8_0, T.Q4_K))
    assert not any(repack.applies(q, 16, "token_embd.weight") for q in (T.Q4_0, T.Q8_0, T.Q4_K))
    assert repack.applies(T.Q8_0, 16, "blk.0.attn_k.weight") and repack.applies(T.Q8_0, 16, "output.weight")
    assert not any(repack.applies(q, 64) for q in (T.Q4_1, T.Q5_0, T.Q5_K, T.Q6_K, T.F16))
    assert not repack.applies(T.Q4_0, 60)
    monkeypatch.setenv("LECTERN_REPACK", "1")                               # every layout there is
    assert all(repack.applies(q, 16) for q in (T.Q4_0, T.Q8_0, T.Q4_K, T.Q5_K))
    monkeypatch.setenv("LECTERN_REPACK", "q4_k, Q8_0")
    assert repack.applies(T.Q4_K, 8) and repack.applies(T.Q8_0, 8) and not repack.applies(T.Q4_0, 8)
    monkeypatch.setenv("LECTERN_REPACK", "0")
    assert not any(repack.applies(q, 16) for q in (T.Q4_0, T.Q8_0, T.Q4_K, T.Q5_K))


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_q8_0_keeps_the_file_layouts_bits(preset):
    """Repacked Q8_0 runs llama.cpp's vec_dot_q8_0_q8_0 order, as the file-layout kernel does:
    the same bits, decode and batch (weights with -128 and extreme scales included)."""
    from tests.jit.conftest import finite_f16

    rows, n_cols = 24, 32 * 7
    cpu = cpu_of(preset)
    rng = np.random.default_rng(11)
    w = weights(rows, n_cols, 11, "Q8_0").reshape(rows * 7, 34)
    w[::5, 2:] = 0x80                                               # -128 weights
    w[:, :2] = finite_f16(rng, rows * 7, True).view(np.uint8).reshape(-1, 2)
    w = w.reshape(-1)
    x = rng.standard_normal(n_cols).astype(np.float32)
    want = api.matvec_raw(w, T.Q8_0, rows, n_cols, x, cpu=cpu, pool=Pool(1))
    mv, _, _ = repack.kernels("Q8_0", cpu)
    packed = X.repack(w, rows, n_cols, "Q8_0")
    xq = api.quantize_activation(x, T.Q8_0, cpu)
    y = np.empty(rows, np.float32)
    Pool(2, align=1).run(mv, (packed.ctypes.data, xq.ctypes.data, y.ctypes.data), rows, (n_cols,))
    assert np.array_equal(y, want, equal_nan=True)


def rss_file() -> int:
    status = open("/proc/self/status").read()
    return int(status.split("RssFile:")[1].split()[0]) * 1024


def test_release_gives_back_only_read_only_mapped_pages(tmp_path):
    """The pages of a read-only map (as the GGUF reader makes them: np.frombuffer over an mmap)
    leave the resident set and read back from the file; ordinary memory is left alone."""
    data = np.random.default_rng(1).integers(0, 256, (32 << 20) + 123, np.uint8)
    f = tmp_path / "w.bin"
    f.write_bytes(data.tobytes())
    with open(f, "rb") as fh:
        m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = np.frombuffer(m, np.uint8)[100:]
    assert int(view.sum(dtype=np.uint64)) == int(data[100:].sum(dtype=np.uint64))   # every page touched
    before = rss_file()
    repack.release(view)
    assert before - rss_file() > 24 << 20                      # the map's pages left the resident set
    assert np.array_equal(view, data[100:])                    # and read back from the file
    mine = data.copy()
    repack.release(mine)                                       # ordinary memory: left alone
    assert np.array_equal(mine, data)
    del view
    m.close()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("r0, r1", [(0, 8 * 23), (3, 8 * 23 - 5), (8 * 7 + 1, 8 * 19 + 3)])
def test_matvec_reads_many_groups_as_streams_with_the_same_bits(name, r0, r1):
    """23 groups read as STREAMS runs side by side, then the groups left over, give each row the bits
    of a call that has only its own group (one stream), within the twin's bound."""
    rows, n_cols = 8 * 23, 32 * 5
    w = weights(rows, n_cols, r0 + r1, name)
    xq = api.quantize_activation(np.random.default_rng(r1).standard_normal(n_cols).astype(np.float32), T[name])
    mv = repack.kernels(name, detect())[0]
    packed = X.repack(w, rows, n_cols, name)
    alone = np.empty(rows, np.float32)
    for g in range(rows // 8):
        mv(packed.ctypes.data, xq.ctypes.data, alone.ctypes.data, 8 * g, 8 * g + 8, n_cols)
    y = np.full(rows, 7.0, np.float32)
    mv(packed.ctypes.data, xq.ctypes.data, y.ctypes.data, r0, r1, n_cols)
    assert np.array_equal(y[r0:r1], alone[r0:r1])
    assert np.all(y[:r0] == 7.0) and np.all(y[r1:] == 7.0)
    ref = twins.block_terms(w, T[name], n_cols, xq).sum(axis=1)
    mag = np.abs(gq.dequantize(w.reshape(rows, -1), T[name]).astype(np.float64)) @ np.abs(
        twins.dequantize_activation(xq, "q8_0"))
    assert np.all(np.abs(y - ref)[r0:r1] <= (2 * (5 + 8) * np.finfo(np.float32).eps * mag + 1e-30)[r0:r1])
