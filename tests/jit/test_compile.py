"""The compile pipeline and its disk cache: miss, hit, corrupt entries, an unwritable cache."""
import ctypes
import warnings

import numpy as np
import pytest

from jit import compile as jc
from jit.cpu import generic, host

IR = """
define void @scale(ptr noalias %p, i64 %n, float %k) {
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i2, %loop]
  %a = getelementptr float, ptr %p, i64 %i
  %v = load float, ptr %a
  %v2 = fmul float %v, %k
  store float %v2, ptr %a
  %i2 = add i64 %i, 1
  %c = icmp slt i64 %i2, %n
  br i1 %c, label %loop, label %exit
exit:
  ret void
}
"""
PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_float)


def run_scale(obj, cpu):
    f = PROTO(jc.load_object(obj, cpu, ["scale"])["scale"])
    a = np.arange(5, dtype=np.float32)
    f(a.ctypes.data, a.size, 3.0)
    return a


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(jc, "CACHE_OVERRIDE", tmp_path / "kernels")
    before = dict(jc.stats)
    yield tmp_path / "kernels"
    jc.stats.update(before)


def delta(key, before):
    return jc.stats[key] - before[key]


@pytest.mark.parametrize("make_cpu", [host, generic])
def test_miss_then_hit(cache, make_cpu):
    cpu = make_cpu()
    s0 = dict(jc.stats)
    obj = jc.object_for(("test", "scale"), IR, cpu)
    assert delta("compiled", s0) == 1 and delta("disk_hits", s0) == 0
    files = list(cache.glob("*.o"))
    assert len(files) == 1 and len(files[0].stem) == 64      # sha256 file name
    assert not list(cache.glob("*.tmp"))                       # atomic write left no temp file
    again = jc.object_for(("test", "scale"), IR, cpu)
    assert delta("compiled", s0) == 1 and delta("disk_hits", s0) == 1
    assert again == obj
    assert run_scale(again, cpu).tolist() == [0, 3, 6, 9, 12]


def test_cache_lives_in_the_lectern_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(jc, "CACHE_OVERRIDE", None)
    monkeypatch.setenv("LECTERN_CACHE_DIR", str(tmp_path))
    assert jc.cache_root() == tmp_path / "kernels"


def test_key_covers_cpu_and_kernel(cache):
    k = jc.cache_key(("a",), IR, host())
    assert k != jc.cache_key(("a",), IR, generic())
    assert k != jc.cache_key(("b",), IR, host())
    assert k != jc.cache_key(("a",), IR + "\n", host())


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_corrupt_entry_is_rebuilt(cache, damage):
    cpu = host()
    obj = jc.object_for(("test", "scale"), IR, cpu)
    path = next(cache.glob("*.o"))
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x40
    elif damage == "truncate":
        blob = blob[: len(blob) - 100]
    elif damage == "garbage":
        blob = bytearray(b"\x7fELF" + bytes(range(256)) * 4)
    else:
        blob = bytearray()
    path.write_bytes(bytes(blob))
    s0 = dict(jc.stats)
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = jc.object_for(("test", "scale"), IR, cpu)
    assert delta("rebuilt_corrupt", s0) == 1 and delta("compiled", s0) == 1
    assert rebuilt == obj
    assert jc.cache_read(path) == obj                          # and the entry was repaired
    assert run_scale(rebuilt, cpu).tolist() == [0, 3, 6, 9, 12]


def test_unwritable_cache_still_compiles(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(jc, "cache_root", lambda: blocker / "kernels")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        obj = jc.object_for(("test", "scale"), IR, host())
    assert any("could not write" in str(x.message) for x in w)
    assert run_scale(obj, host()).tolist() == [0, 3, 6, 9, 12]


def test_bad_ir_is_a_jit_error():
    with pytest.raises(jc.JitError, match="does not verify"):
        jc.compile_object("define void @f() { ret i32 0 }", host())


def test_a_warm_kernel_is_loaded_without_building_its_ir(cache, monkeypatch):
    """kernel() keys its entry by the builders' source digest: a second process (here: a cleared
    in-process memo) finds the object without calling build; new builder code means a new entry."""
    calls = []

    def build():
        calls.append(1)
        return IR

    def scale_of(key):
        f = jc.kernel(key, build, {"scale": PROTO}, host())["scale"]
        a = np.arange(5, dtype=np.float32)
        f(a.ctypes.data, a.size, 3.0)
        return a.tolist()

    assert scale_of(("test", "warm")) == [0, 3, 6, 9, 12] and len(calls) == 1
    monkeypatch.setattr(jc, "_loaded", {})
    s0 = dict(jc.stats)
    assert scale_of(("test", "warm")) == [0, 3, 6, 9, 12] and len(calls) == 1
    assert delta("disk_hits", s0) == 1 and delta("compiled", s0) == 0
    monkeypatch.setattr(jc, "_loaded", {})
    monkeypatch.setattr(jc, "source_digest", lambda: "source edited")
    assert scale_of(("test", "warm")) == [0, 3, 6, 9, 12] and len(calls) == 2
    assert delta("compiled", s0) == 1



def test_a_build_setting_from_the_environment_keys_the_cache(monkeypatch):
    """LECTERN_PREFETCH (say) changes the kernels built at import: a process started with another
    value must not load the entries built under the first."""
    digests = []
    for value in (None, "4096", None):
        if value is None:
            monkeypatch.delenv("LECTERN_PREFETCH", raising=False)
        else:
            monkeypatch.setenv("LECTERN_PREFETCH", value)
        jc.source_digest.cache_clear()
        digests.append(jc.source_digest())
    jc.source_digest.cache_clear()
    assert digests[0] is not None and digests[0] == digests[2] != digests[1]


def test_without_the_source_kernels_are_keyed_by_their_ir(cache, monkeypatch):
    """A frozen build has no .py files to digest: each kernel's IR is built and keys its entry."""
    monkeypatch.setattr(jc, "source_digest", lambda: None)
    built = []

    def build(text):
        built.append(text)
        return text

    s0 = dict(jc.stats)
    for text in (IR, IR + "\n", IR):
        monkeypatch.setattr(jc, "_loaded", {})
        f = jc.kernel(("test", "frozen"), lambda t=text: build(t), {"scale": PROTO}, host())["scale"]
        a = np.arange(5, dtype=np.float32)
        f(a.ctypes.data, a.size, 3.0)
        assert a.tolist() == [0, 3, 6, 9, 12]
    assert built == [IR, IR + "\n", IR]                       # built every time: the IR is the key
    assert delta("compiled", s0) == 2 and delta("disk_hits", s0) == 1


def test_entries_unused_for_a_month_are_pruned_and_a_hit_renews_one(cache, monkeypatch):
    import os
    import time

    monkeypatch.setattr(jc, "_pruned", {cache})                 # no background prune: this test's own
    jc.object_for(("test", "old"), IR, host())
    used = jc.object_for(("test", "used"), IR + "\n", host())
    entries = list(cache.glob("*.o"))
    assert len(entries) == 2
    stale = time.time() - (jc.STALE_DAYS + 1) * 86400
    for p in entries:
        os.utime(p, (stale, stale))
    (cache / "x.o.123.456.tmp").write_bytes(b"half")
    os.utime(cache / "x.o.123.456.tmp", (stale, stale))
    (cache / "notes.txt").write_text("not ours")
    os.utime(cache / "notes.txt", (stale, stale))
    s0 = dict(jc.stats)
    jc.object_for(("test", "used"), IR + "\n", host())           # a hit renews its entry
    assert delta("disk_hits", s0) == 1
    assert jc.prune(cache) == 2                                 # the other entry and the temporary
    left = sorted(p.name for p in cache.iterdir())
    assert len(left) == 2 and "notes.txt" in left
    assert jc.object_for(("test", "used"), IR + "\n", host()) == used and delta("compiled", s0) == 0
    assert jc.prune(cache, max_age_s=0.0, now=time.time() + 10) == 1      # everything ours, when stale
    assert [p.name for p in cache.iterdir()] == ["notes.txt"]
