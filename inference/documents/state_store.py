"""Saved session states on disk, found again by (model, token prefix): read a document once.

Layout of a store directory:
  index.sqlite    one row per state: id, model (identity sha256, + ":f32" for an F32 KV cache), n_tokens, prefix (sha256 of
                  the tokens as int64 little-endian), file, bytes, n_ctx, kind, pinned, created,
                  used (LRU clock)
  <id>.state      the session file (session_file.py: KV buffers only up to n_tokens)
id = sha256(model, prefix)[:32], so saving the same tokens twice keeps one file.
kind: "checkpoint" (taken while reading; superseded by a later one on the same tokens),
"keep" (the end of a document: a new question, a grown document or a new conversation starts
from it), "final" (the whole prompt), or anything a caller names.
A missing or damaged state file or index is never an error: the entry is dropped (the index is
recreated) and the tokens are simply read again. Pruning removes least recently used unpinned
entries until the total is under the cap.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..engine import Session, SessionFileError

DEFAULT_MAX_BYTES = 8 << 30
ORPHAN_SECONDS = 3600        # a state file unknown to the index this old is deleted by prune()

SCHEMA = """CREATE TABLE IF NOT EXISTS states (
    id TEXT PRIMARY KEY, model TEXT NOT NULL, n_tokens INTEGER NOT NULL, prefix TEXT NOT NULL,
    file TEXT NOT NULL, bytes INTEGER NOT NULL, n_ctx INTEGER NOT NULL, kind TEXT NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, used REAL NOT NULL);
CREATE INDEX IF NOT EXISTS states_model ON states (model, n_tokens);"""
COLUMNS = "id, model, n_tokens, prefix, file, bytes, n_ctx, kind, pinned, created, used"


@dataclass
class StateEntry:
    id: str
    model: str
    n_tokens: int
    prefix: str
    file: str
    bytes: int
    n_ctx: int
    kind: str
    pinned: bool
    created: float
    used: float


def prefix_hash(tokens: Sequence[int] | np.ndarray) -> str:
    return hashlib.sha256(np.asarray(tokens, "<i8").tobytes()).hexdigest()


def model_key(engine) -> str:
    """The model's identity hash; with an f32 KV cache also the type (a state restores only into
    a session of its own cache type, and the f16 keys stay what they were before the setting)."""
    key = engine.identity["sha256"]
    kv_type = getattr(engine, "kv_type", "f16")
    return key if kv_type == "f16" else f"{key}:{kv_type}"


class StateStore:
    def __init__(self, directory: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._lock = threading.RLock()
        self._db = self._open()

    # --- the index ------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        path = self.dir / "index.sqlite"
        try:
            return self._connect(path)
        except sqlite3.OperationalError:
            raise                           # locked or unwritable: not damage
        except sqlite3.DatabaseError:
            # damaged index: set it aside and start a new one (the files become orphans)
            os.replace(path, path.with_name(f"index.damaged-{int(time.time())}.sqlite"))
            return self._connect(path)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        db.executescript(SCHEMA)
        db.execute("SELECT count(*) FROM states").fetchone()
        return db

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError:
                self._db.close()
                self._db = self._open()
                return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def entries(self, engine=None) -> list[StateEntry]:
        """Every entry (of engine's model), most recently used first."""
        where, args = ("WHERE model = ?", (model_key(engine),)) if engine is not None else ("", ())
        rows = self._query(f"SELECT {COLUMNS} FROM states {where} ORDER BY used DESC", args)
        return [_entry(r) for r in rows]

    def total_bytes(self) -> int:
        return int(self._query("SELECT coalesce(sum(bytes), 0) FROM states")[0][0])

    def path_of(self, entry: StateEntry) -> Path:
        return self.dir / entry.file

    def size_of(self, entry: StateEntry) -> int:
        try:
            return self.path_of(entry).stat().st_size
        except OSError:
            return 0

    # --- save / find / restore ------------------------------------------------------------------
    def save(self, session: Session, kind: str = "checkpoint", pinned: bool = False) -> StateEntry:
        """Save the session's state (the tokens it holds) unless that very state is saved."""
        model = model_key(session.engine)
        prefix = prefix_hash(session.tokens)
        sid = hashlib.sha256(f"{model}:{prefix}".encode()).hexdigest()[:32]
        now = time.time()
        old = self._get(sid)
        if old is not None and self.size_of(old) == old.bytes and old.bytes > 0:
            kind = old.kind if _rank(old.kind) >= _rank(kind) else kind
            self._query("UPDATE states SET used = ?, kind = ?, pinned = max(pinned, ?) WHERE id = ?",
                        (now, kind, int(pinned), sid))
            return self._get(sid)
        file = f"{sid}.state"
        session.save(self.dir / file)
        size = (self.dir / file).stat().st_size
        self._query(f"INSERT OR REPLACE INTO states ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (sid, model, len(session.tokens), prefix, file, size, session.n_ctx, kind,
                     int(pinned), now, now))
        entry = self._get(sid)
        self.prune(keep=sid)
        return entry

    def prefixes(self, engine, tokens: Sequence[int]):
        """Entries whose tokens are a prefix of `tokens`, longest first (files not opened)."""
        arr = np.asarray(tokens, "<i8")
        rows = self._query(f"SELECT {COLUMNS} FROM states WHERE model = ? AND n_tokens <= ? "
                           "ORDER BY n_tokens DESC", (model_key(engine), len(arr)))
        for r in rows:
            e = _entry(r)
            if e.n_tokens > 0 and prefix_hash(arr[:e.n_tokens]) == e.prefix:
                if self.path_of(e).is_file():
                    yield e
                else:
                    self.remove(e)

    def best_prefix(self, engine, tokens: Sequence[int]) -> tuple[int, StateEntry] | None:
        for e in self.prefixes(engine, tokens):
            return e.n_tokens, e
        return None

    def restore(self, engine, entry: StateEntry, n_ctx: int | None = None) -> Session:
        """The saved session in a context of n_ctx tokens. A damaged file is removed from the
        store and SessionFileError raised (the caller reads the tokens again)."""
        try:
            session = Session.restore(engine, self.path_of(entry), n_ctx or entry.n_ctx)
        except SessionFileError:
            self.remove(entry)
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, RuntimeError) as e:
            self.remove(entry)
            raise SessionFileError(f"saved state {entry.file} is damaged ({e}); it was removed "
                                   "and the text will be read again") from None
        if prefix_hash(session.tokens) != entry.prefix:
            self.remove(entry)
            raise SessionFileError(f"saved state {entry.file} does not hold the tokens its index "
                                   "entry says; it was removed and the text will be read again")
        self._query("UPDATE states SET used = ? WHERE id = ?", (time.time(), entry.id))
        return session

    # --- removal ----------------------------------------------------------------------------------
    def remove(self, entry: StateEntry) -> None:
        self._query("DELETE FROM states WHERE id = ?", (entry.id,))
        try:
            self.path_of(entry).unlink()
        except OSError:
            pass

    def pin(self, entry: StateEntry, pinned: bool = True) -> None:
        """Pinned entries (a conversation's saved state) are never pruned."""
        self._query("UPDATE states SET pinned = ? WHERE id = ?", (int(pinned), entry.id))

    def supersede(self, engine, tokens: Sequence[int], n: int) -> None:
        """Drop "checkpoint" entries on the path of `tokens` shorter than n: a later state
        on the same tokens replaces them (they only served to resume an interrupted read)."""
        for e in list(self.prefixes(engine, tokens[:n])):
            if e.kind == "checkpoint" and e.n_tokens < n and not e.pinned:
                self.remove(e)

    def prune(self, max_bytes: int | None = None, keep: str | None = None) -> int:
        """Remove least recently used unpinned entries until the total fits; orphan files and
        rows without a file go too. Returns the bytes freed."""
        cap = self.max_bytes if max_bytes is None else int(max_bytes)
        freed = self._drop_orphans()
        total = self.total_bytes()
        for e in reversed(self.entries()):          # least recently used first
            if total <= cap:
                break
            if e.pinned or e.id == keep:
                continue
            self.remove(e)
            total -= e.bytes
            freed += e.bytes
        return freed

    def _drop_orphans(self) -> int:
        known = {e.file: e for e in self.entries()}
        freed = 0
        for name, e in known.items():
            if not (self.dir / name).is_file():
                self._query("DELETE FROM states WHERE id = ?", (e.id,))
        now = time.time()
        for f in self.dir.iterdir():
            if f.suffix in (".state", ".tmp") and f.name not in known:
                try:
                    st = f.stat()
                    if now - st.st_mtime > ORPHAN_SECONDS:
                        f.unlink()
                        freed += st.st_size
                except OSError:
                    pass
        return freed

    def _get(self, sid: str) -> StateEntry | None:
        rows = self._query(f"SELECT {COLUMNS} FROM states WHERE id = ?", (sid,))
        return _entry(rows[0]) if rows else None


def _entry(row: tuple) -> StateEntry:
    e = StateEntry(*row)
    e.pinned = bool(e.pinned)
    return e


def _rank(kind: str) -> int:
    return {"checkpoint": 0, "keep": 1, "final": 2}.get(kind, 3)
