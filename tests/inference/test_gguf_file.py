"""Our GGUF reader against gguf.GGUFReader on real files, and against malformed files of every kind."""
from __future__ import annotations

import itertools
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.errors import GGUFError
from inference.gguf_file import open_gguf
from inference.quants import BLOCK_SIZES
from tests.conftest import golden_models

from . import gguf_bytes as gb

# gguf.GGUFReader needs ~20 s for the 150k-token vocabulary file (ours: 0.2 s): slow.
GOLDEN_FILES = [f"models/{m}.gguf" for m in golden_models()] + [
    pytest.param("real/qwen2-bpe-vocab.gguf", marks=pytest.mark.slow)]


def plain(v):
    """Metadata value -> nested python lists/scalars, as GGUFReader's field.contents() gives."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def _leaves(v) -> list:
    return [x for item in v for x in _leaves(item)] if isinstance(v, list) else [v]


def _reference_value(f):
    """GGUFReader's field as python values; arrays of strings and numbers read from its parts
    directly (field.contents() takes most of a minute on a 150k-token vocabulary)."""
    if f.types[0] == GGUFValueType.ARRAY and len(f.types) == 2:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]
        return np.concatenate([f.parts[i] for i in f.data]).tolist() if f.data else []
    return f.contents()


def assert_same_as_gguf_reader(path: Path, ours) -> None:
    ref = GGUFReader(path)
    keys = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert list(ours.metadata) == keys
    for k in keys:
        f = ref.fields[k]
        if f.types[:2] == [GGUFValueType.ARRAY, GGUFValueType.ARRAY]:
            # GGUFReader flattens arrays of arrays; compare the leaves (the shape is tested below)
            assert _leaves(plain(ours.metadata[k])) == f.contents(), k
        else:
            assert plain(ours.metadata[k]) == _reference_value(f), k
    assert list(ours.tensors) == [t.name for t in ref.tensors]
    for t in ref.tensors:
        o = ours.tensors[t.name]
        assert o.ggml_type == t.tensor_type, t.name
        assert o.shape_ggml == tuple(int(x) for x in t.shape), t.name
        assert o.nbytes == t.n_bytes, t.name
        assert np.array_equal(o.data, np.asarray(t.data).view(np.uint8).reshape(-1)), t.name


@pytest.mark.parametrize("rel", GOLDEN_FILES)
def test_golden_files_agree_with_gguf_reader(golden, rel):
    path = golden / rel
    g = open_gguf(path)
    assert_same_as_gguf_reader(path, g)
    assert g.paths == [path] and g.file_size == path.stat().st_size
    assert g.architecture == GGUFReader(path).fields["general.architecture"].contents()


def test_tensors_are_read_only_views_into_the_map(golden):
    g = open_gguf(golden / "models" / "tiny-llama-Q4_K_M.gguf")
    for t in g.tensors.values():
        assert t.data.dtype == np.uint8 and t.data.ndim == 1
        assert not t.data.flags.owndata and not t.data.flags.writeable
        bs, bb = t.block
        assert t.nbytes == t.n_elements // bs * bb
        assert t.shape == tuple(reversed(t.shape_ggml))
    tokens = g.get("tokenizer.ggml.scores")
    assert isinstance(tokens, np.ndarray) and not tokens.flags.owndata  # zero-copy number arrays
    assert isinstance(g.get("tokenizer.ggml.tokens"), list)


def _write_all_value_types(path: Path) -> None:
    w = GGUFWriter(path, "llama")
    w.add_uint8("v.u8", 200)
    w.add_int8("v.i8", -100)
    w.add_uint16("v.u16", 60000)
    w.add_int16("v.i16", -30000)
    w.add_uint32("v.u32", 4_000_000_000)
    w.add_int32("v.i32", -2_000_000_000)
    w.add_float32("v.f32", 0.1)
    w.add_uint64("v.u64", 2**64 - 1)
    w.add_int64("v.i64", -2**63)
    w.add_float64("v.f64", 1e300)
    w.add_bool("v.true", True)
    w.add_bool("v.false", False)
    w.add_string("v.str", "héllo \u2603")
    w.add_array("v.arr_i32", [1, -2, 3])
    w.add_array("v.arr_f32", [0.5, 1.5])
    w.add_array("v.arr_bool", [True, False, True])
    w.add_array("v.arr_str", ["a", "", "ü"])
    w.add_array("v.nested", [[1, 2], [3, 4, 5]])
    w.add_array("v.nested_str", [["x"], ["y", "z"]])
    w.add_tensor("t.f32", np.arange(6, dtype=np.float32).reshape(2, 3))
    w.add_tensor("t.f16", np.ones((4, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_every_value_type(tmp_path):
    path = tmp_path / "types.gguf"
    _write_all_value_types(path)
    g = open_gguf(path)
    assert_same_as_gguf_reader(path, g)
    m = g.metadata
    assert m["v.u64"] == 2**64 - 1 and m["v.i64"] == -2**63 and m["v.str"] == "héllo \u2603"
    assert m["v.true"] is True and m["v.false"] is False
    assert m["v.f32"] == float(np.float32(0.1))
    assert m["v.arr_i32"].dtype == np.int32 and m["v.arr_bool"].dtype == np.bool_
    assert m["v.nested"][1].tolist() == [3, 4, 5] and m["v.nested_str"] == [["x"], ["y", "z"]]
    assert np.array_equal(g.tensors["t.f32"].numpy(), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert g.tensors["t.f16"].shape == (4, 8)


def test_byte_builder_sample_is_valid(tmp_path):
    p = tmp_path / "s.gguf"
    p.write_bytes(gb.sample().build())
    g = open_gguf(p)
    assert_same_as_gguf_reader(p, g)
    assert g.tensors["a"].data.tolist() == list(range(16))
    assert g.get("tokenizer.ggml.tokens") == ["<s>", "a", "é"]


def test_invalid_utf8_is_replaced(tmp_path):
    s = gb.sample()
    s.kvs.append(gb.kv("bad.text", gb.STRING, b"ok\xff\xfe"))
    p = tmp_path / "u.gguf"
    p.write_bytes(s.build())
    assert open_gguf(p).get("bad.text") == "ok\ufffd\ufffd"


def test_context_manager_and_close(golden):
    path = golden / "models" / "tiny-llama-F16.gguf"
    with open_gguf(path) as g:
        t = g.tensors["token_embd.weight"]
    assert g.tensors == {} and g.metadata == {}
    ref = next(r for r in GGUFReader(path).tensors if r.name == "token_embd.weight")
    assert np.array_equal(t.data, np.asarray(ref.data).view(np.uint8).reshape(-1))  # views outlive close


# ---- malformed files: each raises GGUFError naming the file and the problem ------------------
def _bad(tmp_path, data: bytes, *needles: str) -> str:
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    with pytest.raises(GGUFError) as e:
        open_gguf(p)
    msg = str(e.value)
    assert str(p) in msg
    for n in needles:
        assert n in msg, msg
    return msg


def _spec(**kw) -> gb.Spec:
    s = gb.sample()
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_wrong_magic(tmp_path):
    _bad(tmp_path, _spec(magic=b"GGML").build(), "not a GGUF file")
    _bad(tmp_path, b"", "not a GGUF file")
    _bad(tmp_path, b"GG", "not a GGUF file")


@pytest.mark.parametrize("version,needle", [(1, "version 1 is no longer supported"),
                                            (4, "unsupported GGUF version 4"),
                                            (0, "unsupported GGUF version 0")])
def test_unsupported_version(tmp_path, version, needle):
    _bad(tmp_path, _spec(version=version).build(), needle)


def test_big_endian_is_rejected_clearly(tmp_path):
    data = bytearray(gb.sample().build())
    data[4:8] = (3).to_bytes(4, "big")
    _bad(tmp_path, bytes(data), "big-endian")


def test_truncated_at_every_offset(tmp_path):
    data = gb.sample().build()
    p = tmp_path / "cut.gguf"
    for cut in range(len(data)):
        p.write_bytes(data[:cut])
        with pytest.raises(GGUFError) as e:
            open_gguf(p)
        msg = str(e.value)
        assert str(p) in msg
        assert any(w in msg for w in ("truncated", "not a GGUF file", "past the end", "remain")), (cut, msg)


@pytest.mark.parametrize("field", ["n_tensors", "n_kv"])
@pytest.mark.parametrize("count", [2**63, 2**64 - 1, 10**6])
def test_huge_counts_fail_fast(tmp_path, field, count):
    # A hang guard, not a speed measurement: the count must be refused before any loop over it.
    t0 = time.perf_counter()
    _bad(tmp_path, _spec(**{field: count}).build(), "count", "remain")
    assert time.perf_counter() - t0 < 10


def test_absurd_string_length(tmp_path):
    s = gb.sample()
    s.kvs[0] = gb.string("general.architecture") + gb.u32(gb.STRING) + gb.u64(2**62) + b"llama"
    _bad(tmp_path, s.build(), "truncated", "general.architecture")
    s = gb.sample()
    s.kvs[0] = gb.u64(2**64 - 1) + b"key"
    _bad(tmp_path, s.build(), "truncated", "key of metadata entry 0")
    s = gb.sample()
    s.infos[0] = gb.u64(2**40) + b"a"
    _bad(tmp_path, s.build(), "truncated", "name of tensor 0")


def test_absurd_array_lengths(tmp_path):
    for itype, needle in ((gb.F32, "length of value of 'x'"), (gb.STRING, "length of value of 'x'"),
                          (gb.ARRAY, "length of value of 'x'")):
        s = gb.sample()
        s.kvs.append(gb.string("x") + gb.u32(gb.ARRAY) + gb.u32(itype) + gb.u64(2**61))
        _bad(tmp_path, s.build(), needle, "remain")
    s = gb.sample()  # a string array whose count fits but whose strings run past the end
    s.kvs.append(gb.string("x") + gb.u32(gb.ARRAY) + gb.u32(gb.STRING) + gb.u64(3) + gb.string("a")
                 + gb.u64(10**9) + b"b")
    _bad(tmp_path, s.build(), "value of 'x'[1]", "truncated")


def test_unknown_value_types(tmp_path):
    s = gb.sample()
    s.kvs.append(gb.string("x") + gb.u32(13) + gb.u32(0))
    _bad(tmp_path, s.build(), "unknown value type 13", "'x'")
    s = gb.sample()
    s.kvs.append(gb.string("x") + gb.u32(gb.ARRAY) + gb.u32(99) + gb.u64(1) + gb.u32(0))
    _bad(tmp_path, s.build(), "unknown value type 99", "'x'")


def test_deeply_nested_arrays(tmp_path):
    s = gb.sample()
    s.kvs.append(gb.string("x") + gb.u32(gb.ARRAY) + (gb.u32(gb.ARRAY) + gb.u64(1)) * 10_000 + gb.u32(0) * 4)
    _bad(tmp_path, s.build(), "nested")


def test_duplicate_and_empty_keys(tmp_path):
    s = gb.sample()
    s.kvs.append(gb.kv("llama.block_count", gb.U32, 3))
    _bad(tmp_path, s.build(), "duplicate metadata key 'llama.block_count'")
    s = gb.sample()
    s.kvs.append(gb.kv("", gb.U32, 3))
    _bad(tmp_path, s.build(), "empty key")


def test_duplicate_tensor_names(tmp_path):
    s = gb.sample()
    s.infos[1] = gb.tensor_info("a", [32, 2], 8, 32)
    _bad(tmp_path, s.build(), "duplicate tensor name 'a'")


def test_bad_tensor_names(tmp_path):
    s = gb.sample()
    s.infos[0] = gb.tensor_info("x" * 64, [4], 0, 0)
    _bad(tmp_path, s.build(), "invalid name")
    s.infos[0] = gb.tensor_info("", [4], 0, 0)
    _bad(tmp_path, s.build(), "invalid name")


def test_unknown_ggml_type(tmp_path):
    s = gb.sample()
    s.infos[0] = gb.tensor_info("a", [4], 4, 0)  # 4 was Q4_2, removed from ggml
    _bad(tmp_path, s.build(), "tensor 'a' has unknown ggml type 4")
    s.infos[0] = gb.tensor_info("a", [4], 1000, 0)
    _bad(tmp_path, s.build(), "unknown ggml type 1000")


def test_too_many_dimensions(tmp_path):
    s = gb.sample()
    s.infos[0] = gb.tensor_info("a", [1, 1, 1, 1, 4], 0, 0)
    _bad(tmp_path, s.build(), "tensor 'a' has 5 dimensions")
    s.infos[0] = gb.string("a") + gb.u32(2**32 - 1) + gb.u64(4) + gb.u32(0) + gb.u64(0)
    _bad(tmp_path, s.build(), "tensor 'a' has 4294967295 dimensions")


@pytest.mark.parametrize("ne,needle", [([0], "dimension 0 is 0"), ([4, 0], "dimension 1 is 0"),
                                       ([2**64 - 4], "dimension 0 is -4")])
def test_zero_and_negative_dimensions(tmp_path, ne, needle):
    s = gb.sample()
    s.infos[0] = gb.tensor_info("a", ne, 0, 0)
    _bad(tmp_path, s.build(), needle)


def test_row_not_a_multiple_of_the_block(tmp_path):
    s = gb.sample()
    s.infos[1] = gb.tensor_info("b", [33, 2], 8, 32)
    _bad(tmp_path, s.build(), "rows of 33 elements", "block size 32")


def test_element_count_overflow(tmp_path):
    s = gb.sample()
    s.infos[0] = gb.tensor_info("a", [2**31, 2**31, 2**31], 0, 0)
    _bad(tmp_path, s.build(), "more than 2^63 elements")


def test_tensor_data_past_end_of_file(tmp_path):
    s = gb.sample()
    s.data = s.data[:-1]
    _bad(tmp_path, s.build(), "tensor 'b'", "runs past the end")
    s = gb.sample()
    s.infos[1] = gb.tensor_info("b", [32, 2], 8, 2**63)
    _bad(tmp_path, s.build(), "runs past the end")
    s = gb.sample()
    s.infos[1] = gb.tensor_info("b", [32, 2**40], 8, 32)
    _bad(tmp_path, s.build(), "runs past the end")


def test_overlapping_and_misaligned_offsets(tmp_path):
    s = gb.sample()
    s.infos[1] = gb.tensor_info("b", [32, 2], 8, 0)
    _bad(tmp_path, s.build(), "overlaps tensor")
    s = gb.sample()
    s.infos[1] = gb.tensor_info("b", [32, 2], 8, 16)
    _bad(tmp_path, s.build(), "offset 16 is not a multiple of the alignment 32")


def test_bad_alignment(tmp_path):
    s = gb.sample()
    s.kvs.append(gb.kv("general.alignment", gb.U32, 24))
    _bad(tmp_path, s.build(), "not a power of two")
    s = gb.sample()
    s.kvs.append(gb.kv("general.alignment", gb.U64, 32))
    _bad(tmp_path, s.build(), "general.alignment must be a uint32")


def test_custom_alignment(tmp_path):
    s = gb.sample()
    s.kvs.append(gb.kv("general.alignment", gb.U32, 64))
    s.alignment = 64
    s.infos[1] = gb.tensor_info("b", [32, 2], 8, 64)
    s.data = bytes(range(16)) + bytes(48) + bytes(68)
    p = tmp_path / "a64.gguf"
    p.write_bytes(s.build())
    g = open_gguf(p)
    assert g.alignment == 64 and g.tensors["a"].data.tolist() == list(range(16))
    assert_same_as_gguf_reader(p, g)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(GGUFError, match="no such file"):
        open_gguf(tmp_path / "nope.gguf")
    with pytest.raises(GGUFError, match="not a regular file"):
        open_gguf(tmp_path)


# ---- split models ------------------------------------------------------------------------------
def _write_model(path: Path, split_max_tensors: int = 0) -> None:
    rng = np.random.default_rng(0)
    w = GGUFWriter(path, "llama", split_max_tensors=split_max_tensors)
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    w.add_tensor("token_embd.weight", rng.standard_normal((3, 32)).astype(np.float32))
    for i in range(2):
        raw = rng.integers(0, 256, size=(8, 2 * 34), dtype=np.uint8)  # 8 rows of 64 Q8_0 values
        raw[:, 1::34] &= 0x3B                                           # finite f16 scales
        w.add_tensor(f"blk.{i}.attn_q.weight", raw, raw_dtype=GGMLQuantizationType.Q8_0)
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(64, np.float32))
    w.add_tensor("output_norm.weight", np.full(32, 2.0, np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture()
def split_model(tmp_path):
    whole = tmp_path / "whole" / "m.gguf"
    whole.parent.mkdir()
    _write_model(whole)
    _write_model(tmp_path / "m.gguf", split_max_tensors=2)
    parts = sorted(tmp_path.glob("m-*-of-*.gguf"))
    assert [p.name for p in parts] == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    return whole, parts


def test_split_model_opens_as_one_from_any_part(split_model):
    whole, parts = split_model
    ref = open_gguf(whole)
    for p in parts:
        g = open_gguf(p)
        assert g.path == parts[0] and g.paths == parts
        assert g.file_size == sum(q.stat().st_size for q in parts)
        assert list(g.tensors) == list(ref.tensors)
        for name, t in ref.tensors.items():
            o = g.tensors[name]
            assert (o.ggml_type, o.shape_ggml) == (t.ggml_type, t.shape_ggml)
            assert np.array_equal(o.data, t.data)
            assert np.array_equal(o.numpy(), t.numpy())
        assert g.get("split.count") == 3 and g.get("split.no") == 0
        assert g.get("tokenizer.ggml.tokens") == ["a", "b", "c"] and g.arch_get("block_count") == 2
    # each tensor is a view into its own part's map, not a copy
    g = open_gguf(parts[1])
    assert all(not t.data.flags.owndata for t in g.tensors.values())


def test_split_model_missing_part(split_model):
    _, parts = split_model
    parts[1].unlink()
    for p in (parts[0], parts[2]):
        with pytest.raises(GGUFError) as e:
            open_gguf(p)
        assert str(parts[1]) in str(e.value) and "missing part 2 of 3" in str(e.value)


def test_split_part_renamed(split_model):
    _, parts = split_model
    other = parts[0].with_name("renamed.gguf")
    parts[0].rename(other)
    with pytest.raises(GGUFError, match="does not follow the pattern") as e:
        open_gguf(other)
    assert str(other) in str(e.value)


def test_split_part_from_another_model(split_model, tmp_path):
    whole, parts = split_model
    parts[2].write_bytes(whole.read_bytes())  # not a split part at all
    with pytest.raises(GGUFError, match="expected part 3 of 3") as e:
        open_gguf(parts[0])
    assert str(parts[2]) in str(e.value)


def test_split_tensor_count_mismatch(tmp_path):
    s = gb.sample()
    s.kvs += [gb.kv("split.no", gb.U16, 0), gb.kv("split.count", gb.U16, 2),
              gb.kv("split.tensors.count", gb.I32, 5)]
    (tmp_path / "x-00001-of-00002.gguf").write_bytes(s.build())
    t = gb.Spec(kvs=[gb.kv("split.no", gb.U16, 1), gb.kv("split.count", gb.U16, 2)],
                infos=[gb.tensor_info("c", [4], 0, 0)], data=bytes(16))
    (tmp_path / "x-00002-of-00002.gguf").write_bytes(t.build())
    with pytest.raises(GGUFError, match="split.tensors.count is 5 but the 2 parts hold 3 tensors"):
        open_gguf(tmp_path / "x-00002-of-00002.gguf")
    s.kvs[-1] = gb.kv("split.tensors.count", gb.I32, 3)
    (tmp_path / "x-00001-of-00002.gguf").write_bytes(s.build())
    g = open_gguf(tmp_path / "x-00002-of-00002.gguf")
    assert list(g.tensors) == ["a", "b", "c"]


# ---- fuzzing: any mutation of a valid header parses or raises GGUFError, fast and small --------
def _fuzz_bases() -> list[bytes]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.gguf"
        _write_all_value_types(p)
        written = p.read_bytes()
    return [gb.sample().build(), written]


_BASES = _fuzz_bases()
_HUGE = [2**63, 2**64 - 1, 2**32, 2**40, 2**31 - 1, 0xFFFF_FFFF_0000_0000]
_counter = itertools.count()

mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 2000), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, 2000), st.integers(0, 7)),
    st.tuples(st.just("u64"), st.integers(0, 2000), st.sampled_from(_HUGE)),
    st.tuples(st.just("u32"), st.integers(0, 2000), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("cut"), st.integers(0, 2000), st.just(0)),
)


def _mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, pos, val in muts:
        if not b:
            break
        pos %= len(b)
        if kind == "set":
            b[pos] = val
        elif kind == "flip":
            b[pos] ^= 1 << val
        elif kind == "u64":
            b[pos:pos + 8] = val.to_bytes(8, "little")
        elif kind == "u32":
            b[pos:pos + 4] = val.to_bytes(4, "little")
        else:
            del b[pos:]
    return bytes(b)


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(range(len(_BASES))), muts=st.lists(mutation, min_size=1, max_size=4))
def test_fuzzed_headers_parse_or_raise_gguf_error(tmp_path_factory, base, muts):
    data = _mutate(_BASES[base], muts)
    p = tmp_path_factory.getbasetemp() / f"fuzz-{next(_counter)}.gguf"
    p.write_bytes(data)
    tracemalloc.start()
    try:
        g = open_gguf(p)
    except GGUFError as e:
        assert str(p) in str(e)
        g = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 2_000_000, f"parsing a {len(data)}-byte file allocated {peak} bytes"
    if g is not None:  # a file that parses is consistent: every view lies inside the file
        for t in g.tensors.values():
            bs, bb = BLOCK_SIZES[t.ggml_type]
            assert t.nbytes == t.n_elements // bs * bb <= len(data)
            if t.nbytes:
                t.data[-1]
    p.unlink()


# ---- real models -------------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_agrees_with_gguf_reader(smollm2_path):
    assert_same_as_gguf_reader(smollm2_path, open_gguf(smollm2_path))


@pytest.mark.slow
def test_gemma3_agrees_with_gguf_reader(gemma3_path):
    g = open_gguf(gemma3_path)
    assert_same_as_gguf_reader(gemma3_path, g)
    assert len(g.get("tokenizer.ggml.tokens")) == 262144

