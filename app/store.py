"""Conversations, messages, attachments' metadata and settings in SQLite (WAL), no Qt.

One file, `lectern.db`, under inference.paths.data_dir() (LECTERN_DATA_DIR isolates it). The
schema version is SQLite's `user_version`; MIGRATIONS[i] takes a database from version i to i+1.
An answer being written is saved as it streams (PartialWriter: every FLUSH_TOKENS pieces or
FLUSH_SECONDS), each flush its own committed transaction, so a crash or kill keeps everything up
to the last flush. Messages still marked `streaming` at the next start become `interrupted`.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DB_NAME = "lectern.db"
FLUSH_TOKENS = 8
FLUSH_SECONDS = 0.25

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'complete',
        stats TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    CREATE TABLE attachments (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mime TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 1 -> 2: per-model settings and imported model files
    """
    CREATE TABLE model_settings (path TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE imported_models (path TEXT PRIMARY KEY, added REAL NOT NULL);
    """,
    # 2 -> 3: attached documents keep their extracted text, so the prompt of a conversation is the
    # same after a restart (and its saved reading state still matches) even if the file changed
    """
    ALTER TABLE attachments ADD COLUMN text TEXT;
    ALTER TABLE attachments ADD COLUMN pages INTEGER;
    ALTER TABLE attachments ADD COLUMN chars INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attachments ADD COLUMN encoding TEXT NOT NULL DEFAULT '';
    ALTER TABLE attachments ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    state: str = "complete"       # complete | streaming | stopped | interrupted | error
    stats: dict = field(default_factory=dict)
    created: float = 0.0


@dataclass
class Conversation:
    id: int
    title: str
    model: str
    created: float
    updated: float


class StoreError(Exception):
    pass


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Store:
    def __init__(self, path: str | Path | None = None):
        if path is None:
            from inference.paths import data_dir

            path = data_dir() / DB_NAME
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.migrate()
        self.db.execute("UPDATE messages SET state='interrupted' WHERE state='streaming'")

    def close(self) -> None:
        self.db.close()

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        v = self.version
        if v > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer Lectern (schema {v}, this one knows "
                             f"{SCHEMA_VERSION}); update Lectern or point LECTERN_DATA_DIR elsewhere")
        for i in range(v, SCHEMA_VERSION):
            # executescript commits on its own; the version bump is part of the same script
            self.db.executescript(f"BEGIN;\n{MIGRATIONS[i]}\nPRAGMA user_version={i + 1};\nCOMMIT;")

    # --- conversations ------------------------------------------------------------------------
    def new_conversation(self, title: str = "New chat", model: str = "") -> Conversation:
        now = time.time()
        cur = self.db.execute("INSERT INTO conversations (title, model, created, updated) "
                              "VALUES (?, ?, ?, ?)", (title, model, now, now))
        return Conversation(cur.lastrowid, title, model, now, now)

    def conversation(self, cid: int) -> Conversation | None:
        r = self.db.execute("SELECT * FROM conversations WHERE id=?", (cid,)).fetchone()
        return Conversation(**dict(r)) if r else None

    def conversations(self, search: str = "") -> list[Conversation]:
        """Newest first; `search` matches titles and message text (case-insensitive)."""
        if search:
            like = "%" + _escape_like(search) + "%"
            rows = self.db.execute(
                "SELECT * FROM conversations c WHERE c.title LIKE ? ESCAPE '\\' OR EXISTS "
                "(SELECT 1 FROM messages m WHERE m.conversation_id=c.id AND m.content LIKE ? "
                "ESCAPE '\\') ORDER BY updated DESC, id DESC", (like, like)).fetchall()
        else:
            rows = self.db.execute("SELECT * FROM conversations ORDER BY updated DESC, id DESC").fetchall()
        return [Conversation(**dict(r)) for r in rows]

    def rename_conversation(self, cid: int, title: str) -> None:
        self.db.execute("UPDATE conversations SET title=? WHERE id=?", (title, cid))

    def set_conversation_model(self, cid: int, model: str) -> None:
        self.db.execute("UPDATE conversations SET model=? WHERE id=?", (model, cid))

    def delete_conversation(self, cid: int) -> None:
        self.db.execute("DELETE FROM conversations WHERE id=?", (cid,))

    def touch(self, cid: int) -> None:
        self.db.execute("UPDATE conversations SET updated=? WHERE id=?", (time.time(), cid))

    # --- messages -----------------------------------------------------------------------------
    def add_message(self, cid: int, role: str, content: str, state: str = "complete",
                    stats: dict | None = None) -> Message:
        now = time.time()
        with self.db:
            cur = self.db.execute(
                "INSERT INTO messages (conversation_id, role, content, state, stats, created) "
                "VALUES (?, ?, ?, ?, ?, ?)", (cid, role, content, state, json.dumps(stats or {}), now))
            self.db.execute("UPDATE conversations SET updated=? WHERE id=?", (now, cid))
        return Message(cur.lastrowid, cid, role, content, state, stats or {}, now)

    def messages(self, cid: int) -> list[Message]:
        rows = self.db.execute("SELECT * FROM messages WHERE conversation_id=? ORDER BY id", (cid,))
        return [Message(r["id"], r["conversation_id"], r["role"], r["content"], r["state"],
                        json.loads(r["stats"]), r["created"]) for r in rows]

    def update_message(self, mid: int, content: str | None = None, state: str | None = None,
                       stats: dict | None = None) -> None:
        sets, args = [], []
        for col, val in (("content", content), ("state", state),
                         ("stats", None if stats is None else json.dumps(stats))):
            if val is not None:
                sets.append(f"{col}=?")
                args.append(val)
        if sets:
            self.db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id=?", (*args, mid))

    def delete_messages_from(self, cid: int, mid: int) -> None:
        """Delete message `mid` and every later one of the conversation (edit / regenerate)."""
        self.db.execute("DELETE FROM messages WHERE conversation_id=? AND id>=?", (cid, mid))

    # --- attachments (metadata only; the files stay where they are) ---------------------------
    def add_attachment(self, mid: int, path: str | Path, mime: str = "") -> int:
        p = Path(path)
        cur = self.db.execute("INSERT INTO attachments (message_id, name, path, size, mime) "
                              "VALUES (?, ?, ?, ?, ?)", (mid, p.name, str(p), p.stat().st_size, mime))
        return cur.lastrowid

    def attachments(self, mid: int) -> list[dict]:
        rows = self.db.execute("SELECT * FROM attachments WHERE message_id=? ORDER BY id", (mid,))
        return [dict(r) for r in rows]

    def add_document(self, mid: int, doc, tokens: int = 0) -> int:
        """An attached document with its extracted text (doc: inference.documents.Document;
        `mime` holds its kind: pdf, docx, text, ...)."""
        try:
            size = Path(doc.path).stat().st_size
        except OSError:
            size = len(doc.text.encode("utf-8"))
        cur = self.db.execute(
            "INSERT INTO attachments (message_id, name, path, size, mime, text, pages, chars, "
            "encoding, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (mid, doc.name, str(doc.path), size, doc.kind, doc.text, doc.pages, doc.chars,
             doc.encoding or "", int(tokens or 0)))
        return cur.lastrowid

    def attachment(self, aid: int) -> dict | None:
        r = self.db.execute("SELECT * FROM attachments WHERE id=?", (aid,)).fetchone()
        return dict(r) if r else None

    def conversation_attachments(self, cid: int) -> dict[int, list[dict]]:
        """{message id: [attachment rows without their text]} for one conversation (rendering)."""
        rows = self.db.execute(
            "SELECT a.id, a.message_id, a.name, a.path, a.size, a.mime, a.pages, a.chars, "
            "a.encoding, a.tokens FROM attachments a JOIN messages m ON m.id=a.message_id "
            "WHERE m.conversation_id=? ORDER BY a.id", (cid,))
        out: dict[int, list[dict]] = {}
        for r in rows:
            out.setdefault(r["message_id"], []).append(dict(r))
        return out

    # --- settings -----------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        r = self.db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return json.loads(r[0]) if r else default

    def set(self, key: str, value: Any) -> None:
        self.db.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO "
                        "UPDATE SET value=excluded.value", (key, json.dumps(value)))

    def model_settings(self, path: str) -> dict:
        r = self.db.execute("SELECT value FROM model_settings WHERE path=?", (str(path),)).fetchone()
        return json.loads(r[0]) if r else {}

    def set_model_settings(self, path: str, value: dict) -> None:
        self.db.execute("INSERT INTO model_settings (path, value) VALUES (?, ?) ON CONFLICT(path) "
                        "DO UPDATE SET value=excluded.value", (str(path), json.dumps(value)))

    def imported_models(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM imported_models ORDER BY added")]

    def add_imported_model(self, path: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO imported_models (path, added) VALUES (?, ?)",
                        (str(path), time.time()))

    def remove_imported_model(self, path: str) -> None:
        self.db.execute("DELETE FROM imported_models WHERE path=?", (str(path),))


class PartialWriter:
    """Saves a streaming answer: the full text so far every FLUSH_TOKENS pieces or FLUSH_SECONDS."""

    def __init__(self, store: Store, mid: int, every: int = FLUSH_TOKENS, seconds: float = FLUSH_SECONDS):
        self.store, self.mid, self.every, self.seconds = store, mid, every, seconds
        self.text = ""
        self._pending = 0
        self._last = time.monotonic()

    def add(self, piece: str) -> None:
        self.text += piece
        self._pending += 1
        if self._pending >= self.every or time.monotonic() - self._last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        self.store.update_message(self.mid, content=self.text)
        self._pending, self._last = 0, time.monotonic()

    def finish(self, state: str, stats: dict | None = None) -> None:
        self.store.update_message(self.mid, content=self.text, state=state, stats=stats or {})
        self.store.touch(self.store_conversation())

    def store_conversation(self) -> int:
        r = self.store.db.execute("SELECT conversation_id FROM messages WHERE id=?", (self.mid,)).fetchone()
        return r[0] if r else -1


# --- export -------------------------------------------------------------------------------------
def export_json(store: Store, cid: int) -> str:
    c = store.conversation(cid)
    if c is None:
        raise StoreError(f"conversation {cid} does not exist")
    msgs = [{"role": m.role, "content": m.content, "state": m.state, "stats": m.stats,
             "created": m.created, "attachments": store.attachments(m.id)} for m in store.messages(cid)]
    return json.dumps({"title": c.title, "model": c.model, "created": c.created, "updated": c.updated,
                       "messages": msgs}, ensure_ascii=False, indent=2)


def export_markdown(store: Store, cid: int) -> str:
    c = store.conversation(cid)
    if c is None:
        raise StoreError(f"conversation {cid} does not exist")
    out = [f"# {c.title}", ""]
    if c.model:
        out += [f"*Model: {Path(c.model).name}*", ""]
    names = {"user": "You", "assistant": "Assistant", "system": "System"}
    for m in store.messages(cid):
        note = "" if m.state == "complete" else f" ({m.state})"
        out += [f"## {names.get(m.role, m.role)}{note}", ""]
        docs = [a["name"] for a in store.attachments(m.id)]
        if docs:
            out += ["Attached: " + ", ".join(docs), ""]
        out += [m.content.rstrip(), ""]
    return "\n".join(out)
