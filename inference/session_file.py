"""Saved sessions: one .npz file (numpy's zip of .npy arrays, read with allow_pickle=False).

Members:
  meta.npy    uint8: UTF-8 JSON {"format", "version", "model": identity, "n_ctx", "n_past",
              "kv_type": "f16" | "f32" (the KV cache type, version 2), "arrays": [{"name", "kind", "rows"}]}
  tokens.npy  int64 [n_past]: the tokens the state covers
  logits.npy  float32 [n_vocab] (or [0]): next-token logits after them
  a<i>.npy    the i-th state buffer; KV buffers ([n_ctx, ...] by position) only their first n_past
              rows, other buffers (rings, recurrent state) whole
Every array's header is checked against the model's own state layout before it is read, so a
damaged or hostile file cannot make us allocate more than the state itself.

A file restores only into a session of its own KV cache type (a clear error otherwise: its tokens
were computed with that cache's rounding). Version 1 files (no kv_type) are F16: their llama and
gemma caches are float32 arrays holding half values (read into the float16 cache exactly); their
kimi-linear / step35 states carried a marker array ("mla_half" / "kv_half") when F16, none when F32.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .engine import Engine, Session, SessionFileError
from .kv_cache import KV_TYPES
from .models.base import KV

FORMAT, VERSION = "lectern-session", 2
READS = (1, 2)                                      # versions this Lectern restores
LEGACY_MARKERS = ("mla_half", "kv_half")            # version 1: "this state's caches are F16"
LEGACY_EXACT_ARCHS = ("kimi-linear", "step35")      # version 1 without a marker: F32 caches


def save_session(session: Session, path: Path) -> None:
    """Written to path.tmp then renamed, so a crash never leaves a half-written file."""
    st = session.state
    arrays, entries = {}, []
    for i, (name, arr) in enumerate(st.arrays.items()):
        kind = st.kinds.get(name, "")
        rows = st.n_past if kind == KV and arr.shape[:1] == (st.n_ctx,) else arr.shape[0]
        arrays[f"a{i}"] = arr[:rows]
        entries.append({"name": name, "kind": kind, "rows": int(rows)})
    meta = {"format": FORMAT, "version": VERSION, "model": session.engine.identity,
            "n_ctx": session.n_ctx, "n_past": st.n_past, "kv_type": st.kv_type, "arrays": entries}
    logits = session.logits if session.logits is not None else np.zeros(0, np.float32)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                 tokens=np.asarray(session.tokens, np.int64), logits=logits.astype(np.float32),
                 **arrays)
    os.replace(tmp, path)


def load_session(cls: type[Session], engine: Engine, path: Path, n_ctx: int | None = None) -> Session:
    """The saved session, in a context of n_ctx tokens (default: the one it was saved with)."""
    if not path.is_file():
        raise SessionFileError(f"session file not found: {path}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise SessionFileError(f"{path} is not a Lectern session file ({e})") from None
    with zf:
        meta = _meta(zf, path)
        _check_model(meta, engine, path)
        saved_ctx, n_past = int(meta["n_ctx"]), int(meta["n_past"])
        if not 0 <= n_past <= saved_ctx:
            raise SessionFileError(f"{path}: damaged ({n_past} tokens in a context of {saved_ctx})")
        n_ctx = int(n_ctx or saved_ctx)
        if n_past > n_ctx:
            raise SessionFileError(f"{path} holds {n_past} tokens, more than a context of {n_ctx}; "
                                   f"use a context size of at least {n_past}")
        session = cls(engine, n_ctx)
        st = session.state
        _check_kv_type(meta, st.kv_type, engine, path)
        tokens = _read(zf, "tokens", np.dtype(np.int64), (n_past,), path)
        n_vocab = engine.model.n_vocab
        if n_past and (tokens.min() < 0 or tokens.max() >= n_vocab):
            raise SessionFileError(f"{path}: damaged (token ids outside the vocabulary)")
        names = [e["name"] for e in meta["arrays"] if e["name"] not in LEGACY_MARKERS]
        if sorted(names) != sorted(st.arrays):
            raise SessionFileError(f"{path}: its state buffers do not match this model's; "
                                   "it was saved by another version of the engine")
        for i, e in enumerate(meta["arrays"]):
            if e["name"] in LEGACY_MARKERS:
                continue
            dst = st.arrays[e["name"]]
            kind = st.kinds.get(e["name"], "")
            rows = n_past if kind == KV and dst.shape[:1] == (n_ctx,) else dst.shape[0]
            if kind != KV and e.get("rows") != rows and n_ctx != saved_ctx:
                raise SessionFileError(f"{path} was saved with a context of {saved_ctx} tokens and "
                                       f"cannot be opened with {n_ctx}; use {saved_ctx}")
            dst[:rows] = _read_rows(zf, f"a{i}", dst, rows, path)
        logits = _read_logits(zf, n_vocab, path)
    st.n_past = n_past
    session.tokens = [int(t) for t in tokens]
    session.logits = logits
    if logits is not None:
        session._take_snapshot()
    return session


def _meta(zf: zipfile.ZipFile, path: Path) -> dict:
    try:
        raw = _read(zf, "meta", np.dtype(np.uint8), None, path, limit=1 << 24)
        meta = json.loads(raw.tobytes().decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise SessionFileError(f"{path} is not a Lectern session file ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SessionFileError(f"{path} is not a Lectern session file")
    if meta.get("version") not in READS:
        raise SessionFileError(f"{path}: session format version {meta.get('version')} is not "
                               f"supported (this Lectern reads versions {', '.join(map(str, READS))})")
    return meta


def saved_kv_type(meta: dict, architecture: str) -> str:
    """The KV cache type a file was saved with (version 1 files: from their marker arrays)."""
    if "kv_type" in meta:
        return meta["kv_type"]
    names = {e.get("name") for e in meta.get("arrays", []) if isinstance(e, dict)}
    if names & set(LEGACY_MARKERS) or architecture not in LEGACY_EXACT_ARCHS:
        return "f16"
    return "f32"


def _check_kv_type(meta: dict, ours: str, engine: Engine, path: Path) -> None:
    saved = saved_kv_type(meta, engine.gguf.architecture)
    if saved not in KV_TYPES:
        raise SessionFileError(f"{path}: damaged (unknown KV cache type {saved!r})")
    if saved != ours:
        raise SessionFileError(
            f"{path} was saved with an {saved} KV cache, but the model is loaded with an {ours} cache; "
            f"load it with KV cache type {saved} (--kv-type {saved}, or the setting) to continue it, "
            "or start a new conversation")


def _check_model(meta: dict, engine: Engine, path: Path) -> None:
    saved, ours = meta.get("model") or {}, engine.identity
    if saved.get("size") != ours["size"] or saved.get("sha256") != ours["sha256"]:
        raise SessionFileError(
            f"{path} was saved with another model ({saved.get('file')}, {saved.get('size')} bytes) "
            f"than the one loaded ({ours['file']}, {ours['size']} bytes); load that model, or "
            "start a new conversation")


def _read_rows(zf: zipfile.ZipFile, key: str, dst: np.ndarray, rows: int, path: Path) -> np.ndarray:
    """The first `rows` rows of a state buffer. A float16 buffer also takes the float32 rows of
    files from before the cache was half (they hold half-rounded values: exact)."""
    shape = (rows,) + dst.shape[1:]
    try:
        return _read(zf, key, dst.dtype, shape, path)
    except SessionFileError:
        if dst.dtype != np.float16:
            raise
        return _read(zf, key, np.dtype(np.float32), shape, path)


def _read(zf: zipfile.ZipFile, key: str, dtype: np.dtype, shape: tuple | None, path: Path,
          limit: int = 0) -> np.ndarray:
    """Member key.npy, its header checked (dtype, shape or size limit) before the data is read."""
    try:
        f = zf.open(key + ".npy")
    except KeyError:
        raise SessionFileError(f"{path}: damaged ({key} is missing)") from None
    with f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            got_shape, fortran, got_dtype = read_header(f)
        except ValueError as e:
            raise SessionFileError(f"{path}: damaged ({key}: {e})") from None
        if got_dtype != dtype or fortran or got_dtype.hasobject:
            raise SessionFileError(f"{path}: damaged ({key} is {got_dtype}, expected {dtype})")
        if shape is not None and tuple(got_shape) != tuple(shape):
            raise SessionFileError(f"{path}: damaged ({key} has shape {got_shape}, expected {shape})")
        count = int(np.prod(got_shape, dtype=np.int64))
        if shape is None and count > limit:
            raise SessionFileError(f"{path}: damaged ({key} too large)")
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise SessionFileError(f"{path}: damaged ({key} is truncated)")
        return np.frombuffer(data, dtype).reshape(got_shape)


def _read_logits(zf: zipfile.ZipFile, n_vocab: int, path: Path) -> np.ndarray | None:
    try:
        arr = _read(zf, "logits", np.dtype(np.float32), (n_vocab,), path)
    except SessionFileError:
        arr = _read(zf, "logits", np.dtype(np.float32), (0,), path)
    return arr.copy() if arr.size else None
