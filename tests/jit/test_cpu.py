import llvmlite.binding as llvm
import pytest

from jit import cpu as jcpu


def test_host_is_what_llvm_reports():
    h = jcpu.host()
    assert h.name == llvm.get_host_cpu_name()
    feats = llvm.get_host_cpu_features()
    assert h.has_avx2 == bool(feats.get("avx2"))
    assert h.has_avx512_vnni == bool(feats.get("avx512vnni"))
    assert h.dot_path in ("vnni", "avx2", "generic")


def test_generic_has_no_simd_extensions():
    g = jcpu.generic()
    assert (g.has_avx2, g.has_avx512, g.vnni, g.has_f16c) == (False, False, False, False)
    assert g.dot_path == "generic"


def test_lectern_cpu_selects_the_path(monkeypatch):
    monkeypatch.setenv("LECTERN_CPU", "generic")
    assert jcpu.detect() == jcpu.generic()
    monkeypatch.setenv("LECTERN_CPU", "host")
    assert jcpu.detect() == jcpu.host()
    monkeypatch.setenv("LECTERN_CPU", "pentium")
    with pytest.raises(ValueError, match="LECTERN_CPU"):
        jcpu.detect()


def test_cpu_info_is_frozen_and_hashable():
    h = jcpu.host()
    with pytest.raises(Exception):
        h.name = "other"
    assert {h: 1}[jcpu.host()] == 1
