"""The SQLite store: schema and migrations, conversations and messages, partial flushes, export."""
from __future__ import annotations

import json
import sqlite3

import pytest

from app import store as st


def test_fresh_database_is_wal_at_current_schema(tmp_path):
    s = st.Store(tmp_path / "x.db")
    assert s.version == st.SCHEMA_VERSION == len(st.MIGRATIONS)
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"conversations", "messages", "attachments", "settings", "model_settings",
            "imported_models"} <= tables


def test_migrates_a_version_1_database_keeping_its_data(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(st.MIGRATIONS[0] + "\nPRAGMA user_version=1;")
    db.execute("INSERT INTO conversations (title, model, created, updated) VALUES ('kept', '', 1, 1)")
    db.commit()
    db.close()
    s = st.Store(path)
    assert s.version == st.SCHEMA_VERSION
    assert [c.title for c in s.conversations()] == ["kept"]
    s.set_model_settings("/m.gguf", {"temperature": 0.1})      # table from migration 2
    assert s.model_settings("/m.gguf") == {"temperature": 0.1}


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={st.SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(st.StoreError, match="newer Lectern"):
        st.Store(path)


def test_conversations_messages_search_delete(tmp_path):
    s = st.Store(tmp_path / "x.db")
    a = s.new_conversation("Apples")
    b = s.new_conversation("Pears")
    s.add_message(a.id, "user", "tell me about 100% juice_box")
    s.add_message(b.id, "user", "hello")
    s.add_message(b.id, "assistant", "hi there")
    assert [c.id for c in s.conversations()][0] == b.id           # newest activity first
    assert [c.title for c in s.conversations("pear")] == ["Pears"]
    assert [c.title for c in s.conversations("THERE")] == ["Pears"]      # message text, any case
    assert [c.title for c in s.conversations("100%")] == ["Apples"]     # LIKE wildcards escaped
    assert s.conversations("0%j") == []
    assert [c.title for c in s.conversations("e_b")] == ["Apples"]
    assert s.conversations("x_y") == []
    s.rename_conversation(a.id, "Fruit")
    assert s.conversation(a.id).title == "Fruit"
    m = s.messages(b.id)
    s.delete_messages_from(b.id, m[1].id)
    assert [x.content for x in s.messages(b.id)] == ["hello"]
    s.delete_conversation(b.id)
    assert s.messages(b.id) == [] and s.conversation(b.id) is None


def test_attachments_metadata_and_settings(tmp_path):
    s = st.Store(tmp_path / "x.db")
    c = s.new_conversation()
    m = s.add_message(c.id, "user", "see file")
    f = tmp_path / "doc.txt"
    f.write_text("abc")
    s.add_attachment(m.id, f, "text/plain")
    assert [(a["name"], a["size"], a["mime"]) for a in s.attachments(m.id)] == [("doc.txt", 3, "text/plain")]
    s.set("window", {"w": 3})
    assert s.get("window") == {"w": 3} and s.get("nothing", 7) == 7
    s.set("window", [1])
    assert s.get("window") == [1]


def test_partial_writer_flushes_and_reopen_marks_interrupted(tmp_path):
    path = tmp_path / "x.db"
    s = st.Store(path)
    c = s.new_conversation()
    m = s.add_message(c.id, "assistant", "", state="streaming")
    w = st.PartialWriter(s, m.id, every=3, seconds=60)
    for piece in ["a", "b"]:
        w.add(piece)
    other = sqlite3.connect(path)                  # what another process would see after a crash
    read = lambda: other.execute("SELECT content, state FROM messages WHERE id=?", (m.id,)).fetchone()
    assert read() == ("", "streaming")
    w.add("c")
    assert read() == ("abc", "streaming")
    w.add("d")
    # "crash": no finish; a new Store (next start) keeps the text and marks it interrupted
    s2 = st.Store(path)
    [msg] = s2.messages(c.id)
    assert (msg.content, msg.state) == ("abc", "interrupted")


def test_partial_writer_time_based_flush(tmp_path):
    s = st.Store(tmp_path / "x.db")
    m = s.add_message(s.new_conversation().id, "assistant", "", state="streaming")
    w = st.PartialWriter(s, m.id, every=1000, seconds=0.0)
    w.add("x")
    assert s.messages(m.conversation_id)[0].content == "x"
    w.finish("complete", {"generated_tokens": 1})
    got = s.messages(m.conversation_id)[0]
    assert (got.state, got.stats) == ("complete", {"generated_tokens": 1})


def test_export_markdown_and_json(tmp_path):
    s = st.Store(tmp_path / "x.db")
    c = s.new_conversation("Capitals", "/models/m.gguf")
    s.add_message(c.id, "user", "Capital of France?")
    s.add_message(c.id, "assistant", "Paris.", state="stopped", stats={"generated_tokens": 2})
    md = st.export_markdown(s, c.id)
    assert md.startswith("# Capitals\n")
    assert "## You\n\nCapital of France?" in md and "## Assistant (stopped)\n\nParis." in md
    assert "m.gguf" in md
    data = json.loads(st.export_json(s, c.id))
    assert data["title"] == "Capitals"
    assert [(m["role"], m["content"], m["state"]) for m in data["messages"]] == [
        ("user", "Capital of France?", "complete"), ("assistant", "Paris.", "stopped")]
    assert data["messages"][1]["stats"] == {"generated_tokens": 2}
    with pytest.raises(st.StoreError):
        st.export_json(s, 999)
