"""IR -> optimised module -> object code (cached on disk) -> loaded machine code -> ctypes.

Three separate steps:
  build   a kernel builder returns LLVM IR text (pure, cached per process);
  compile `compile_object(ir, cpu)` optimises with LLVM's new pass manager at O3 for the
          target CPU and emits an ELF/COFF/Mach-O object;
  load    `load_object(obj, cpu)` links it into an MCJIT engine and returns symbol addresses.
`kernel(key, build, symbols, cpu)` strings them together with the on-disk cache:
  <cache_dir>/kernels/<sha256>.o, sha256 over (llvmlite, LLVM, CPU name, features, key, source),
where source is a digest of the code that writes IR (every jit/ module, and inference/kv_cache.py
whose type table the attention kernels use): a warm start loads its kernels without building
their IR (~20k lines of it for Gemma 3), and any edit of that code makes every entry new.
`object_for(key, ir, cpu)` keys by the IR text itself (for IR that no builder wrote).
An entry is MAGIC + sha256(payload) + payload; anything that does not check out is rebuilt, and
entries unused for STALE_DAYS are removed (`prune`, once per process).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import llvmlite
import llvmlite.binding as llvm

from inference.errors import LecternError

from . import tables
from .cpu import CpuInfo

MAGIC = b"LECTERN-KERNEL-1\n"
_lock = threading.RLock()
_engines: list = []   # every loaded engine stays alive as long as the process: its code is in use


class JitError(LecternError):
    """A kernel could not be compiled or loaded; the engine falls back to numpy."""


@functools.cache
def _init() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@functools.cache
def target_machine(cpu: CpuInfo) -> llvm.TargetMachine:
    """One O3 target machine per CPU description (host name and feature string)."""
    _init()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(
        cpu=cpu.name, features=cpu.features, opt=3, reloc="default", codemodel="jitdefault"
    )


def optimize(mod: llvm.ModuleRef, cpu: CpuInfo) -> None:
    """The standard O3 pipeline (new pass manager) with loop and SLP vectorisation."""
    tm = target_machine(cpu)
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


def parse(ir_text: str, cpu: CpuInfo) -> llvm.ModuleRef:
    _init()
    tm = target_machine(cpu)
    try:
        mod = llvm.parse_assembly(ir_text)
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        mod.verify()
    except RuntimeError as e:
        raise JitError(f"kernel IR does not verify: {e}") from e
    return mod


def compile_object(ir_text: str, cpu: CpuInfo) -> bytes:
    """Optimise IR for `cpu` and return the object code."""
    mod = parse(ir_text, cpu)
    optimize(mod, cpu)
    return target_machine(cpu).emit_object(mod)


def assembly(ir_text: str, cpu: CpuInfo) -> str:
    """The machine code as assembly text (for inspecting what LLVM selected)."""
    mod = parse(ir_text, cpu)
    optimize(mod, cpu)
    return target_machine(cpu).emit_assembly(mod)


def load_object(obj: bytes, cpu: CpuInfo, names: list[str]) -> dict[str, int]:
    """Link an object into a fresh MCJIT engine; return name -> function address."""
    tm = target_machine(cpu)
    tables.bind()
    with _lock:
        empty = llvm.parse_assembly("")
        empty.triple = tm.triple
        engine = llvm.create_mcjit_compiler(empty, tm)
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        addrs = {n: engine.get_function_address(n) for n in names}
        _engines.append(engine)
    missing = [n for n, a in addrs.items() if not a]
    if missing:
        raise JitError(f"compiled kernel object lacks the symbols {missing}")
    return addrs


# --------------------------------------------------------------------------- disk cache

CACHE_OVERRIDE: Path | None = None   # tests point this at a temporary directory


def cache_root() -> Path:
    """<inference.paths.cache_dir()>/kernels (LECTERN_CACHE_DIR or the platform's user cache)."""
    if CACHE_OVERRIDE is not None:
        return CACHE_OVERRIDE
    from inference.paths import cache_dir

    return cache_dir() / "kernels"


def cache_key(key: tuple, ir_text: str, cpu: CpuInfo) -> str:
    h = hashlib.sha256()
    for part in (
        llvmlite.__version__,
        ".".join(map(str, llvm.llvm_version_info)),
        cpu.name,
        cpu.features,
        repr(key),
        ir_text,
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def cache_read(path: Path) -> bytes | None:
    """The payload of a cache entry, or None if missing, unreadable or corrupt."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + 32
    if len(blob) <= head or not blob.startswith(MAGIC):
        return None
    payload = blob[head:]
    if hashlib.sha256(payload).digest() != blob[len(MAGIC):head]:
        return None
    return payload


def cache_write(path: Path, payload: bytes) -> None:
    """Atomic: write a temporary file next to it, then rename over. Failures only warn."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(f"could not write the kernel cache entry {path} ({e}); kernels will be recompiled next time")
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


# Counters for tests and benchmarks: how the kernels of this process were obtained.
stats = {"compiled": 0, "disk_hits": 0, "rebuilt_corrupt": 0}


# Settings the kernel builders read from the environment when they are imported (jit/__init__.py
# lists them): they key the cache with the source, so a kernel built under one is never loaded
# under another.
BUILD_SETTINGS = ("LECTERN_PREFETCH", "LECTERN_MV_ROWS", "LECTERN_MV_PREFETCH", "LECTERN_MV_GROUP_MIN_BYTES",
                  "LECTERN_MV_STREAMS")


@functools.cache
def source_digest() -> str | None:
    """sha256 of the code a kernel's IR is a function of, besides its key and CPU: the jit
    package's modules and inference/kv_cache.py (read once per process, ~2 ms). None where that
    source is not there to read (a PyInstaller build keeps bytecode in an archive): kernels are
    then keyed by their IR text."""
    here = Path(__file__).resolve().parent
    files = sorted(here.rglob("*.py"))
    extra = here.parent / "inference" / "kv_cache.py"
    if getattr(sys, "frozen", False) or not files or not extra.is_file():
        return None
    h = hashlib.sha256()
    try:
        for path in files + [extra]:
            h.update(str(path.relative_to(here.parent)).encode() + b"\0")
            h.update(path.read_bytes())
    except OSError:
        return None
    h.update(repr([(k, os.environ.get(k)) for k in BUILD_SETTINGS]).encode())
    return "source " + h.hexdigest()


def object_for(key: tuple, ir_text: str | Callable[[], str], cpu: CpuInfo, use_cache: bool = True) -> bytes:
    """The object code for `ir_text`, from the disk cache or freshly compiled (and stored). Given
    the builder instead of the text, the entry is keyed by source_digest() and the IR is built
    only on a miss (without a digest: built first, and keyed by its text)."""
    build = ir_text if callable(ir_text) else None
    digest = source_digest() if build else None
    if build is not None and digest is None:
        ir_text, build = build(), None
    path = cache_root() / f"{cache_key(key, digest or ir_text, cpu)}.o"
    if use_cache:
        _prune_once(path.parent)
    if use_cache and path.exists():
        obj = cache_read(path)
        if obj is not None:
            stats["disk_hits"] += 1
            _touch(path)
            return obj
        stats["rebuilt_corrupt"] += 1
        warnings.warn(f"kernel cache entry {path} is corrupt; recompiling it")
    obj = compile_object(build() if build else ir_text, cpu)
    stats["compiled"] += 1
    if use_cache:
        cache_write(path, obj)
    return obj


# Every edit of the kernel builders (every release) keys a new set of entries; the old sets are
# removed once no process has used them for STALE_DAYS (a hit renews an entry's time).
STALE_DAYS = 30
_pruned: set = set()


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:                   # a read-only cache still serves its entries
        pass


def prune(root: Path, max_age_s: float = STALE_DAYS * 86400.0, now: float | None = None) -> int:
    """Remove the entries (and temporaries of interrupted writes) under root unused for longer
    than max_age_s; -> how many. What cannot be read or removed is left alone."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(root.iterdir())
    except OSError:
        return 0
    for p in entries:
        if p.suffix != ".o" and not p.name.endswith(".tmp"):
            continue
        try:
            if now - p.stat().st_mtime > max_age_s:
                p.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def _prune_once(root: Path) -> None:
    """prune(root) once per process, on a background thread (~600 entries: a few ms)."""
    with _lock:
        if root in _pruned:
            return
        _pruned.add(root)
    threading.Thread(target=prune, args=(root,), daemon=True, name="lectern-kernel-cache-prune").start()


_loaded: dict = {}


def kernel(key: tuple, build: Callable[[], str], symbols: dict[str, ctypes._CFuncPtr], cpu: CpuInfo):
    """Compiled functions (name -> ctypes function) for the IR `build()` returns.

    `symbols` maps each exported function name to its ctypes prototype (CFUNCTYPE(...)).
    Loaded once per process per (key, cpu); compiled once per machine thanks to the disk cache.
    """
    memo = (key, cpu)
    with _lock:
        if memo in _loaded:
            return _loaded[memo]
    try:
        obj = object_for(key, build, cpu)
        addrs = load_object(obj, cpu, list(symbols))
    except JitError:
        raise
    except Exception as e:  # noqa: BLE001 - any LLVM failure means: no JIT for this kernel
        raise JitError(f"kernel {key} for {cpu.tag} failed to compile or load: {e}") from e
    funcs = {n: proto(addrs[n]) for n, proto in symbols.items()}
    with _lock:
        _loaded.setdefault(memo, funcs)
        return _loaded[memo]
