"""Our dequantizers bit-for-bit against gguf.quants.dequantize (and ggml's C loops where gguf has none)."""
from __future__ import annotations


import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf import quants as gq
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import UnsupportedModelError
from inference.gguf_file import open_gguf
from inference.quants import BLOCK_SIZES, dequantize, quantized_types
from tests.conftest import golden_models


def _gguf_has(q: T) -> bool:
    bs, bb = BLOCK_SIZES[q]
    try:
        gq.dequantize(np.zeros((1, bb), np.uint8), q)
        return True
    except NotImplementedError:
        return False


WITH_GGUF_REF = [q for q in T if _gguf_has(q)]


def _q1_0_reference(raw: np.ndarray) -> np.ndarray:
    """dequantize_row_q1_0 (ggml-quants.c), element by element."""
    out = []
    for blk in raw.reshape(-1, 18):
        d = float(blk[0:2].view(np.float16)[0])
        for j in range(128):
            bit = (int(blk[2 + j // 8]) >> (j % 8)) & 1
            out.append(d if bit else -d)
    return np.array(out, np.float32)


def _q8_k_reference(raw: np.ndarray) -> np.ndarray:
    """dequantize_row_q8_K: y = d * qs[j] with d float32, qs int8 (bsums unused)."""
    out = []
    for blk in raw.reshape(-1, 292):
        d = blk[0:4].view(np.float32)[0]
        out.extend(np.float32(d) * np.float32(q) for q in blk[4:260].view(np.int8))
    return np.array(out, np.float32)


def reference(raw: np.ndarray, q: T) -> np.ndarray:
    """The outside truth for uint8 blocks [n, block_bytes]: gguf.quants, else ggml's own loops."""
    if q in WITH_GGUF_REF:
        return gq.dequantize(raw, q).astype(np.float32).reshape(-1)
    if q == T.Q1_0:
        return _q1_0_reference(raw)
    if q == T.Q8_K:
        return _q8_k_reference(raw)
    plain = {T.I8: "<i1", T.I16: "<i2", T.I32: "<i4", T.I64: "<i8", T.F64: "<f8"}
    return raw.reshape(-1).view(plain[q]).astype(np.float32)  # numpy's own conversion


# byte offsets of float16 scale fields (for "finite" blocks: clear the top exponent bit)
_F16_FIELDS = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.Q2_K: [80, 82],
               T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ2_XXS: [0],
               T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0], T.IQ1_S: [0], T.IQ1_M: [54],
               T.IQ4_NL: [0], T.IQ4_XS: [0], T.TQ1_0: [52], T.TQ2_0: [64], T.Q1_0: [0], T.F16: [0],
               T.BF16: [0]}
_TOP_BYTE = {T.F32: 3, T.Q8_K: 3, T.F64: 7, T.MXFP4: 0}


def finite(raw: np.ndarray, q: T) -> np.ndarray:
    """The same blocks with every float scale made finite (so that no inf or NaN arises)."""
    raw = raw.copy()
    for off in _F16_FIELDS.get(q, []):
        raw[:, off + 1] &= 0xBF
    if q in _TOP_BYTE:
        raw[:, _TOP_BYTE[q]] &= 0x7F if q == T.MXFP4 else 0xBF
    return raw


def assert_bit_identical(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    if not np.array_equal(ours.view(np.uint32), ref.view(np.uint32)):
        bad = np.flatnonzero(ours.view(np.uint32) != ref.view(np.uint32))
        raise AssertionError(f"{bad.size} elements differ, first at {bad[0]}: "
                             f"{ours[bad[0]]!r} vs {ref[bad[0]]!r}")


def test_every_type_gguf_dequantizes_is_supported():
    ours = set(quantized_types())
    assert set(WITH_GGUF_REF) <= ours
    # beyond gguf.quants: ggml's Q1_0 and Q8_K, and plain integer / float64 tensors
    assert {T.Q1_0, T.Q8_K, T.I8, T.I16, T.I32, T.I64, T.F64} <= ours
    assert T.Q8_1 not in ours  # ggml itself has no dequantizer for it (dot-product only)


@pytest.mark.parametrize("q", quantized_types(), ids=lambda q: q.name)
@settings(max_examples=25, deadline=None)
@given(n_blocks=st.integers(1, 48), seed=st.integers(0, 2**32 - 1))
def test_random_blocks_bit_identical(q, n_blocks, seed):
    bs, bb = BLOCK_SIZES[q]
    raw = np.random.default_rng(seed).integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
    fin = finite(raw, q)
    assert_bit_identical(dequantize(fin.reshape(-1), q), reference(fin, q))
    with np.errstate(all="ignore"):  # arbitrary bytes: inf and NaN where ggml gets them too
        np.testing.assert_array_equal(dequantize(raw.reshape(-1), q), reference(raw, q))


@pytest.mark.parametrize("q", quantized_types(), ids=lambda q: q.name)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_drawn_bytes_bit_identical(q, data):
    bs, bb = BLOCK_SIZES[q]
    n = data.draw(st.integers(1, max(1, 1024 // bb)))
    raw = np.frombuffer(data.draw(st.binary(min_size=n * bb, max_size=n * bb)), np.uint8).reshape(n, bb)
    raw = finite(raw, q)
    assert_bit_identical(dequantize(raw.reshape(-1), q), reference(raw, q))


@pytest.mark.parametrize("q", quantized_types(), ids=lambda q: q.name)
@pytest.mark.parametrize("byte", [0x00, 0xFF, 0x55, 0xAA, 0x3C])
def test_constant_blocks(q, byte):
    bs, bb = BLOCK_SIZES[q]
    raw = np.full((3, bb), byte, np.uint8)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(dequantize(raw.reshape(-1), q), reference(raw, q))


@pytest.mark.parametrize("q", [T.Q4_0, T.Q4_K, T.F16, T.Q6_K, T.IQ2_XXS], ids=lambda q: q.name)
def test_n_elements_prefix_and_bounds(q):
    bs, bb = BLOCK_SIZES[q]
    raw = finite(np.random.default_rng(1).integers(0, 256, size=(5, bb), dtype=np.uint8), q)
    full = dequantize(raw.reshape(-1), q)
    assert full.size == 5 * bs
    for n in (1, bs, 2 * bs + 1, 5 * bs):
        assert_bit_identical(dequantize(raw.reshape(-1), q, n), full[:n])
    with pytest.raises(ValueError):
        dequantize(raw.reshape(-1), q, 5 * bs + 1)
    with pytest.raises(ValueError):
        dequantize(raw.reshape(-1)[:-1], q)


def test_chunked_large_input_matches_reference():
    """Inputs larger than one internal chunk are decoded chunk by chunk: same bits."""
    for q in (T.Q4_K, T.Q8_0, T.IQ4_XS):
        bs, bb = BLOCK_SIZES[q]
        n_blocks = (1 << 18) // bs + 7  # several chunks and a partial one
        raw = finite(np.random.default_rng(2).integers(0, 256, size=(n_blocks, bb), dtype=np.uint8), q)
        assert_bit_identical(dequantize(raw.reshape(-1), q), reference(raw, q))


def test_unsupported_types_raise_a_clear_error():
    with pytest.raises(UnsupportedModelError, match="Q8_1"):
        dequantize(np.zeros(36, np.uint8), T.Q8_1)
    with pytest.raises(UnsupportedModelError, match="unknown ggml weight type 99"):
        dequantize(np.zeros(36, np.uint8), 99)


@pytest.mark.parametrize("stem", golden_models())
def test_golden_model_tensors_bit_identical(golden, stem):
    path = golden / "models" / f"{stem}.gguf"
    ours = open_gguf(path)
    seen = set()
    for t in GGUFReader(path).tensors:
        o = ours.tensors[t.name]
        seen.add(o.type_name)
        ref = gq.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1)
        assert_bit_identical(o.numpy().reshape(-1), ref)
    assert seen  # every file holds tensors


@pytest.mark.slow
@pytest.mark.parametrize("which", ["smollm2_path", "gemma3_path"])
def test_real_model_tensors_bit_identical(request, which):
    path = request.getfixturevalue(which)
    ours = open_gguf(path)
    types = set()
    for t in GGUFReader(path).tensors:
        types.add(t.tensor_type.name)
        if t.n_elements > 8_000_000:  # the embedding tables: check their first 64 rows
            o = ours.tensors[t.name]
            n = 64 * o.shape_ggml[0]
            raw = np.asarray(t.data)[:64]
            assert_bit_identical(dequantize(o.data, o.ggml_type, n),
                                 gq.dequantize(raw, t.tensor_type).astype(np.float32).reshape(-1))
            continue
        ref = gq.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1)
        assert_bit_identical(ours.tensors[t.name].numpy().reshape(-1), ref)
    assert len(types) >= 3


