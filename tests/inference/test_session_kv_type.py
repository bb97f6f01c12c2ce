"""Saved sessions and the KV cache type: each type saves and restores exactly; a file of the other
type is refused with a clear error; version 1 files (no kv_type; float32 arrays holding half
values; kimi-linear / step35 marker arrays) restore into f16 sessions exactly."""
from __future__ import annotations

import json
import zipfile
from functools import lru_cache

import numpy as np
import pytest

from inference.engine import Engine, SessionFileError
from inference.models.base import KV
from tests.conftest import golden_dir

ARCHS = ["tiny-llama-F16", "tiny-gemma3-F16", "tiny-kimi-linear-F16", "tiny-step35-F16"]


@lru_cache(maxsize=None)
def engine(stem: str, kv_type: str) -> Engine:
    return Engine.load(golden_dir() / "models" / f"{stem}.gguf", kv_type=kv_type)


def prompt(stem: str, n: int) -> list[int]:
    return [int(t) for t in np.load(golden_dir() / "ref" / f"{stem}.npz")["tokens"][:n]]


def session(stem: str, kv_type: str, n: int = 40):
    s = engine(stem, kv_type).session(96)
    s.prefill(prompt(stem, n))
    return s


def cache_names(st) -> list[str]:
    return [k for k, kind in st.kinds.items() if kind == KV or (k.startswith(("k.", "v.")))]


@pytest.mark.parametrize("kv_type", ["f16", "f32"])
@pytest.mark.parametrize("stem", ARCHS)
def test_each_type_saves_and_restores_exactly(stem, kv_type, tmp_path):
    s = session(stem, kv_type)
    s.save(tmp_path / "s.lectern")
    with zipfile.ZipFile(tmp_path / "s.lectern") as zf:
        meta = json.loads(np.load(zf.open("meta.npy")).tobytes())
    assert meta["kv_type"] == kv_type and meta["version"] == 2
    r = type(s).restore(engine(stem, kv_type), tmp_path / "s.lectern")
    assert r.state.kv_type == kv_type
    for k in cache_names(s.state):
        assert r.state.arrays[k].dtype == s.state.arrays[k].dtype
        np.testing.assert_array_equal(r.state.arrays[k], s.state.arrays[k])
    np.testing.assert_array_equal(r.eval_token(7), s.eval_token(7))


def test_a_file_of_the_other_cache_type_is_refused(tmp_path):
    s = session("tiny-llama-F16", "f16", 10)
    s.save(tmp_path / "s16.lectern")
    with pytest.raises(SessionFileError, match="saved with an f16 KV cache.*loaded with an f32.*--kv-type f16"):
        type(s).restore(engine("tiny-llama-F16", "f32"), tmp_path / "s16.lectern")
    s = session("tiny-kimi-linear-F16", "f32", 10)
    s.save(tmp_path / "s32.lectern")
    with pytest.raises(SessionFileError, match="saved with an f32 KV cache"):
        type(s).restore(engine("tiny-kimi-linear-F16", "f16"), tmp_path / "s32.lectern")


def as_version_1(src, dst, marker: str | None = None) -> None:
    """Rewrite a saved file as Lectern wrote it before the cache type setting: version 1, no
    kv_type, float16 buffers as float32 arrays, and (kimi-linear, step35) the F16 marker array."""
    with zipfile.ZipFile(src) as zf:
        arrays = {n[:-4]: np.load(zf.open(n)) for n in zf.namelist()}
    meta = json.loads(arrays.pop("meta").tobytes())
    meta["version"] = 1
    del meta["kv_type"]
    for i in range(len(meta["arrays"])):
        if arrays[f"a{i}"].dtype == np.float16:
            arrays[f"a{i}"] = arrays[f"a{i}"].astype(np.float32)
    if marker:
        arrays[f"a{len(meta['arrays'])}"] = np.ones(1, np.int8)
        meta["arrays"].append({"name": marker, "kind": "", "rows": 1})
    with open(dst, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)


@pytest.mark.parametrize("stem, marker", [("tiny-llama-F16", None), ("tiny-gemma3-F16", None),
                                          ("tiny-kimi-linear-F16", "mla_half"), ("tiny-step35-F16", "kv_half")])
def test_a_version_1_file_restores_into_an_f16_session_exactly(stem, marker, tmp_path):
    s = session(stem, "f16")
    s.save(tmp_path / "new.lectern")
    as_version_1(tmp_path / "new.lectern", tmp_path / "old.lectern", marker)
    r = type(s).restore(engine(stem, "f16"), tmp_path / "old.lectern")
    for k in cache_names(s.state):
        assert r.state.arrays[k].dtype == np.float16
        np.testing.assert_array_equal(r.state.arrays[k], s.state.arrays[k])
    np.testing.assert_array_equal(r.eval_token(7), s.eval_token(7))
    with pytest.raises(SessionFileError, match="f16 KV cache"):
        type(s).restore(engine(stem, "f32"), tmp_path / "old.lectern")


def test_a_version_1_exact_kimi_file_is_f32(tmp_path):
    """Version 1 kimi-linear / step35 states without the marker had float32 (exact) caches."""
    s = session("tiny-kimi-linear-F16", "f32", 20)
    s.save(tmp_path / "new.lectern")
    as_version_1(tmp_path / "new.lectern", tmp_path / "old.lectern")
    r = type(s).restore(engine("tiny-kimi-linear-F16", "f32"), tmp_path / "old.lectern")
    np.testing.assert_array_equal(r.eval_token(7), s.eval_token(7))
    with pytest.raises(SessionFileError, match="f32 KV cache"):
        type(s).restore(engine("tiny-kimi-linear-F16", "f16"), tmp_path / "old.lectern")
