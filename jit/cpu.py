"""The CPU the kernels are compiled for, as LLVM sees it.

`host()` asks LLVM (get_host_cpu_name / get_host_cpu_features); LECTERN_CPU forces a
smaller instruction set so the portable paths can be run and tested on any machine:
  LECTERN_CPU=host     the CPU we run on (default)
  LECTERN_CPU=avx2     x86-64-v3 (AVX2 + FMA + F16C, no AVX-512): the vpmaddubsw path
  LECTERN_CPU=generic  baseline x86-64 (SSE2): the portable vector path
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import llvmlite.binding as llvm


@dataclass(frozen=True)
class CpuInfo:
    name: str               # LLVM CPU name, e.g. "znver4", "emeraldrapids", "x86-64"
    features: str           # LLVM feature string "+avx2,+fma,-amx-int8,..." ("" = the CPU's defaults)
    has_avx2: bool
    has_fma: bool
    has_f16c: bool
    has_avx512: bool        # avx512f + bw + vl: 512-bit integer ops on bytes
    has_avx512_vnni: bool   # vpdpbusd on 512-bit (and, with VL, 256-bit) registers
    has_avx_vnni: bool      # the VEX-encoded vpdpbusd of AVX-VNNI (256-bit)

    @property
    def vnni(self) -> bool:
        """A 256-bit vpdpbusd is available (AVX512-VNNI with VL, or AVX-VNNI)."""
        return (self.has_avx512_vnni and self.has_avx512) or self.has_avx_vnni

    @property
    def dot_path(self) -> str:
        """Which integer dot product the kernels emit: vnni | avx2 | generic."""
        if self.vnni:
            return "vnni"
        if self.has_avx2:
            return "avx2"
        return "generic"

    @property
    def vector_bits(self) -> int:
        return 512 if self.has_avx512 else 256 if self.has_avx2 else 128

    @property
    def tag(self) -> str:
        """Short description for logs and benchmark output."""
        return f"{self.name} ({self.dot_path}, {self.vector_bits}-bit)"


def _from_features(name: str, features: str) -> CpuInfo:
    on = {f[1:] for f in features.split(",") if f.startswith("+")}
    avx512 = {"avx512f", "avx512bw", "avx512vl"} <= on
    return CpuInfo(
        name=name,
        features=features,
        has_avx2="avx2" in on,
        has_fma="fma" in on,
        has_f16c="f16c" in on,
        has_avx512=avx512,
        has_avx512_vnni="avx512vnni" in on,
        has_avx_vnni="avxvnni" in on,
    )


# x86-64-v3 spelled out, so the AVX2 path never depends on what a named CPU implies.
_AVX2_FEATURES = "+avx,+avx2,+bmi,+bmi2,+cx16,+f16c,+fma,+lzcnt,+movbe,+popcnt,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"


def usable_presets() -> list[str]:
    """The presets this machine can run (for tests and benchmarks)."""
    h = host()
    out = ["host", "generic"]
    if is_x86() and h.has_avx2 and h.has_fma and h.has_f16c:
        out.insert(1, "avx2")
    return out


def host() -> CpuInfo:
    """The CPU we run on, exactly as LLVM reports it."""
    return _from_features(llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten())


def is_x86() -> bool:
    return llvm.get_process_triple().split("-")[0] in ("x86_64", "i386", "i686", "amd64")


def generic() -> CpuInfo:
    """The architecture's baseline (x86-64: SSE2 only): the portable path."""
    return _from_features("x86-64" if is_x86() else "generic", "")


def avx2() -> CpuInfo:
    """x86-64-v3: AVX2/FMA/F16C without AVX-512 or VNNI."""
    return _from_features("x86-64-v3", _AVX2_FEATURES)


PRESETS = {"host": host, "generic": generic, "avx2": avx2}


@functools.cache
def _selected(choice: str) -> CpuInfo:
    if choice not in PRESETS:
        raise ValueError(f"LECTERN_CPU={choice!r} is not one of {sorted(PRESETS)}")
    cpu = PRESETS[choice]()
    if choice != "host":  # never ask for more than the machine has
        h = host()
        if cpu.has_avx2 and not (h.has_avx2 and h.has_fma and h.has_f16c):
            raise ValueError(f"LECTERN_CPU={choice}: this CPU ({h.name}) lacks AVX2/FMA")
    return cpu


# os.environ.get encodes the key and decodes the value on every call; the engine asks for its
# settings once per operation of a decode step (hundreds per token), so read CPython's POSIX
# mapping directly where it exists (the same dict os.environ and monkeypatch.setenv write)
_RAW = getattr(os.environ, "_data", None) if os.name == "posix" else None


def env_raw(key: bytes):
    """The environment variable `key` (bytes) as stored (bytes on POSIX) or None; changes show at once."""
    if _RAW is not None:
        return _RAW.get(key)
    v = os.environ.get(key.decode())
    return None if v is None else v.encode()


_by_raw: dict = {}


def detect() -> CpuInfo:
    """The CPU to compile for: LECTERN_CPU (host | avx2 | generic), default host."""
    raw = env_raw(b"LECTERN_CPU")
    cpu = _by_raw.get(raw)
    if cpu is None:
        cpu = _by_raw[raw] = _selected((raw or b"host").decode().strip().lower() or "host")
    return cpu
