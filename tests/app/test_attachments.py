"""Attached documents in the real window (offscreen, the golden tiny llama): attach by the
paperclip's API and by a drop, chips with name / characters / tokens, preview, refused files,
the fit line, the prompt the model reads, reading progress with Stop, read-once reuse,
a restart, and a new conversation from a read document."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent


PARAGRAPH = ("The lighthouse keeper of Varne Island logs the weather at six every morning. "
             "In 1911 the lamp was converted from oil to acetylene, and the fog bell was retired. ")


def write_doc(tmp_path: Path, name: str = "report.txt", repeat: int = 1) -> Path:
    p = tmp_path / "docs" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(f"{i}. {PARAGRAPH}" for i in range(repeat)), encoding="utf-8")
    return p


@pytest.fixture
def win(make_window, tmp_path):
    w = make_window()
    w.worker.worker.states_dir = tmp_path / "states"
    return w


def attach(qtbot, win, *paths):
    win.attach_paths([str(p) for p in paths])
    qtbot.waitUntil(lambda: not win.extracting, timeout=30_000)


def wait_fit(qtbot, win):
    qtbot.waitUntil(lambda: win.fit is not None, timeout=60_000)


def drop(win, widget, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    ev = QDropEvent(QPoint(10, 10).toPointF(), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    widget.dropEvent(ev)
    return ev


def test_attach_shows_a_chip_with_name_characters_and_tokens(qtbot, win, tmp_path):
    from inference.engine import Engine

    p = write_doc(tmp_path)
    attach(qtbot, win, p)
    [chip] = win.input.attachments.chips
    text = p.read_text(encoding="utf-8")
    assert chip.doc.text == text and chip.doc.name == "report.txt"
    wait_fit(qtbot, win)
    want = len(Engine.load(win.model_path).tokenizer.encode(text, add_bos=False))
    assert chip.tokens == want
    label = chip.label.text()
    assert "report.txt" in label and f"{len(text):,} characters" in label and f"{want:,} tokens" in label
    assert win.input.attachments.isVisible()
    # the paperclip and the menu action say their shortcut
    assert "Ctrl+Shift+A" in win.input.attach.toolTip()
    assert win.act_attach.shortcut().toString() == "Ctrl+Shift+A"
    chip.close_button.click()
    assert win.input.attachments.chips == [] and not win.input.fit_label.isVisible()


def test_drop_attaches_files_and_folders(qtbot, win, tmp_path):
    a, b = write_doc(tmp_path, "a.md"), write_doc(tmp_path, "b.txt", 2)
    drop(win, win, [a, b])
    qtbot.waitUntil(lambda: len(win.input.attachments.chips) == 2, timeout=30_000)
    assert [c.doc.name for c in win.input.attachments.chips] == ["a.md", "b.txt"]
    # a drop onto the message box attaches too (instead of pasting the path as text)
    c = write_doc(tmp_path, "c.txt", 1)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(c))])
    assert win.input.edit.canInsertFromMimeData(mime)
    win.input.edit.insertFromMimeData(mime)
    qtbot.waitUntil(lambda: len(win.input.attachments.chips) == 3, timeout=30_000)
    assert win.input.edit.toPlainText() == ""
    # a folder brings its files
    win.input.attachments.clear()
    drop(win, win, [a.parent])
    qtbot.waitUntil(lambda: len(win.input.attachments.chips) == 3, timeout=30_000)
    assert sorted(c.doc.name for c in win.input.attachments.chips) == ["docs/a.md", "docs/b.txt",
                                                                        "docs/c.txt"]


def test_preview_dialog_shows_the_text_and_finds(qtbot, win, tmp_path):
    p = write_doc(tmp_path)
    attach(qtbot, win, p)
    chip = win.input.attachments.chips[0]
    qtbot.mouseClick(chip, Qt.LeftButton)
    d = win.preview
    assert d.isVisible() and d.text.toPlainText() == p.read_text(encoding="utf-8")
    assert d.text.isReadOnly()
    d.find_box.setText("acetylene")
    assert d.find_next(from_start=True) and d.text.textCursor().selectedText() == "acetylene"
    d.find_box.setText("zeppelin")
    assert not d.find_next(from_start=True) and d.find_note.text() == "not found"
    d.close()


def test_binary_and_unsupported_files_get_a_banner_and_no_chip(qtbot, win, tmp_path):
    blob = tmp_path / "data.bin2"
    blob.write_bytes(bytes(range(256)) * 64)
    img = tmp_path / "photo.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    good = write_doc(tmp_path, "ok.txt", 1)
    attach(qtbot, win, blob, img, good)
    assert [c.doc.name for c in win.input.attachments.chips] == ["ok.txt"]
    text = win.banner.text()
    assert win.banner_box.isVisible() and "data.bin2" in text and "photo.png" in text
    assert "ok.txt" not in text


def ask(qtbot, win, text, timeout=120_000):
    win.input.edit.setPlainText(text)
    qtbot.keyClick(win.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: not win.busy and win.send_after_measure is None, timeout=timeout)
    return win.store.messages(win.current)


def test_fit_line_refuses_a_prompt_too_long_and_offers_remedies(qtbot, win, tmp_path):
    from PySide6.QtCore import QTimer

    win.apply_settings("", dict(win.model_settings(), n_ctx=256))
    qtbot.waitUntil(lambda: win.loading_lid is None and win.n_ctx == 256, timeout=30_000)
    from inference.documents import build_prompt, extract
    from inference.engine import Engine

    p = write_doc(tmp_path)
    attach(qtbot, win, p)
    wait_fit(qtbot, win)
    f = win.fit
    line = win.input.fit_label.text()
    # the prompt as it would be sent (no question typed yet: "?") plus the longest answer
    want = len(Engine.load(win.model_path).encode_chat(
        [{"role": "user", "content": build_prompt("?", [extract(p)])}])) + 16
    assert not f["fits"] and f["n_tokens"] == want and f["n_ctx"] == 256
    assert line.startswith(f"Does not fit: {f['n_tokens']:,} tokens, the context holds 256")
    assert f"raise the context setting to at least {f['n_tokens']:,} tokens" in line
    assert "use a model with a longer context" in line and "trim the documents" in line
    assert win.input.fit_fix.isVisible() and win.input.fit_ok is False
    # Send is refused: nothing stored, the question stays in the box, the banner says why
    win.input.edit.setPlainText("What happened in 1911?")
    qtbot.keyClick(win.input.edit, Qt.Key_Return)
    assert not win.busy and win.current is None
    assert win.input.edit.toPlainText() == "What happened in 1911?"
    assert win.banner.text().startswith("Not sent. Does not fit")
    # the remedy button opens Settings at the context size
    seen = {}

    def look():
        d = win.settings_dialog
        seen["focus"] = d.focusWidget() is d.n_ctx or d.n_ctx.hasFocus()
        d.reject()

    QTimer.singleShot(200, look)
    win.input.fit_fix.click()
    assert seen == {"focus": True}
    # a large enough context makes it fit
    win.apply_settings("", dict(win.model_settings(), n_ctx=4096))
    qtbot.waitUntil(lambda: win.loading_lid is None and win.n_ctx == 4096, timeout=30_000)
    wait_fit(qtbot, win)
    assert win.fit["fits"] and win.input.fit_label.text().startswith(
        f"Fits: {win.fit['n_tokens']:,} of 4,096 tokens · state ")
    assert not win.input.fit_fix.isVisible()


def test_send_puts_the_documents_in_the_prompt_and_shows_chips(qtbot, win, tmp_path):
    from inference.documents import build_prompt, extract, layout
    from inference.engine import Engine

    p = write_doc(tmp_path)
    attach(qtbot, win, p)
    sent = []
    win.worker._prompt.connect(lambda rid, msgs, params, docs: sent.append((msgs, docs)))
    q = "What was converted in 1911?"
    [u, a] = ask(qtbot, win, q)
    [(msgs, docs)] = sent
    want = build_prompt(q, [extract(p)])
    assert msgs[-1] == {"role": "user", "content": want}
    assert "=== File: report.txt ===" in want and want.endswith("Question: " + q)
    assert docs == {"index": len(msgs) - 1, "ends": layout(q, [extract(p)])[1]}
    assert u.content == q and a.state == "complete"
    assert a.stats["prompt_tokens"] == len(Engine.load(win.model_path).encode_chat(msgs))
    assert a.stats["state_bytes"] > 0 and "saved state" in win.chat.toPlainText()
    assert win.statusBar().currentMessage().startswith("Read state saved (")
    [row] = win.store.attachments(u.id)
    assert row["name"] == "report.txt" and row["text"] == p.read_text(encoding="utf-8")
    assert row["tokens"] > 0 and row["chars"] == len(row["text"])
    shown = win.chat.toPlainText()
    assert "report.txt" in shown and q in shown and "lighthouse keeper" not in shown
    assert win.input.attachments.chips == [] and not win.input.fit_label.isVisible()
    # the chip in the chat previews the stored text
    d = win.preview_attachment(row["id"])
    assert d.text.toPlainText() == row["text"]
    d.close()
    # editing the question brings its document back as a chip
    win.chat._on_anchor(QUrl(f"lectern:edit/{u.id}"))
    assert [c.doc.text for c in win.input.attachments.chips] == [row["text"]]
    win.cancel_edit()
    win.input.attachments.clear()
    # a follow-up question reuses the read documents
    msgs2 = ask(qtbot, win, "And who logs the weather?")
    assert msgs2[-1].stats["reused_tokens"] >= a.stats["prompt_tokens"]
    assert msgs2[-2].content == "And who logs the weather?"


def common_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def test_reading_bar_stop_keeps_the_message_and_a_restart_resumes_from_the_checkpoint(
        qtbot, make_window, tmp_path, monkeypatch):
    import re
    import threading

    from inference import engine

    monkeypatch.setattr(engine, "PROGRESS_EVERY", 0.0)   # progress after every layer of a chunk
    win = make_window()
    win.worker.worker.states_dir = tmp_path / "states"
    win.worker.worker.checkpoint_every = 64            # a checkpoint on disk every 64 tokens
    gate, held = threading.Event(), []

    def hold(rid, done, total):     # on the worker thread: pause the read after 96 tokens, mid-chunk
        if done >= 96 and not gate.is_set():
            held.append(done)
            gate.wait(60)

    win.worker.worker.promptProgress.connect(hold, Qt.DirectConnection)
    attach(qtbot, win, write_doc(tmp_path))
    wait_fit(qtbot, win)
    q = "What was converted in 1911?"
    win.input.edit.setPlainText(q)
    qtbot.keyClick(win.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: bool(held) and win.reading.isVisible() and f"{held[0]} /" in win.reading.label.text(),
                    timeout=60_000)
    assert 96 <= held[0] < 128                 # inside the chunk after the checkpoint at 64
    m = re.fullmatch(rf"Reading: {held[0]} / ([\d,]+) tokens · [\d,]+ tok/s · [\d,]+ s left — Stop.*",
                     win.reading.label.text())
    assert m and int(m.group(1).replace(",", "")) > 400, win.reading.label.text()
    assert win.reading.bar.value() == held[0] and win.reading.bar.maximum() == int(m.group(1).replace(",", ""))
    assert win.input.button.text() == "Stop"
    qtbot.mouseClick(win.input.button, Qt.LeftButton)
    assert not win.busy and not win.reading.isVisible()
    gate.set()
    qtbot.waitUntil(lambda: not win.worker.worker.busy, timeout=30_000)
    cid = win.current
    [u, a] = win.store.messages(cid)
    assert (u.content, a.state, a.content) == (q, "stopped", "")
    assert [r["name"] for r in win.store.attachments(u.id)] == ["report.txt"]
    win.close()

    win2 = make_window()                       # a restart: the same data and states
    win2.worker.worker.states_dir = tmp_path / "states"
    assert win2.current == cid and "report.txt" in win2.chat.toPlainText()
    win2.regenerate()
    qtbot.waitUntil(lambda: not win2.busy, timeout=120_000)
    [u2, a2] = win2.store.messages(cid)
    assert u2.id == u.id and a2.state == "complete" and a2.content
    assert a2.stats["reused_tokens"] == 64          # continued from the checkpoint (the stopped chunk undone)


def test_restart_follow_up_and_new_chat_reuse_the_saved_state(qtbot, make_window, tmp_path):
    from inference.documents import build_prompt, extract
    from inference.engine import Engine

    p = write_doc(tmp_path)
    win = make_window()
    win.worker.worker.states_dir = tmp_path / "states"
    attach(qtbot, win, p)
    wait_fit(qtbot, win)
    q1 = "What was converted in 1911?"
    [u, a] = ask(qtbot, win, q1)
    assert a.stats["reused_tokens"] == 0 and a.state == "complete"
    cid = win.current
    win.close()

    win2 = make_window()
    win2.worker.worker.states_dir = tmp_path / "states"
    assert win2.current == cid
    assert [r["name"] for r in win2.chat.attachments[u.id]] == ["report.txt"]
    assert "report.txt" in win2.chat.toPlainText() and "New chat with this document" in \
        win2.chat.toPlainText()
    msgs = ask(qtbot, win2, "Who logs the weather?")
    assert msgs[-1].stats["reused_tokens"] >= a.stats["prompt_tokens"]    # not read again
    win2.close()

    win3 = make_window()                   # a new conversation about the same document
    win3.worker.worker.states_dir = tmp_path / "states"
    win3.chat._on_anchor(QUrl(f"lectern:branch/{u.id}"))
    assert win3.current != cid and [c.doc.name for c in win3.input.attachments.chips] == ["report.txt"]
    wait_fit(qtbot, win3)
    q3 = "How was the fog bell used?"
    [u3, a3] = ask(qtbot, win3, q3)
    assert [r["name"] for r in win3.store.attachments(u3.id)] == ["report.txt"]
    eng = Engine.load(win3.model_path)
    doc = [extract(p)]
    first = eng.encode_chat([{"role": "user", "content": build_prompt(q1, doc)}])
    now = eng.encode_chat([{"role": "user", "content": build_prompt(q3, doc)}])
    shared = common_prefix(first, now)
    footer = len(eng.tokenizer.encode("\n=== End of report.txt ===\n\nQuestion: ", add_bos=False))
    assert a3.stats["prompt_tokens"] == len(now)
    # restored where the document's text ends: only its footer and the new question are read
    assert shared - footer - 2 <= a3.stats["reused_tokens"] <= shared
    assert shared > 400


def test_a_grown_document_is_continued_where_the_old_text_ended(qtbot, make_window, tmp_path):
    from inference.documents import build_prompt, extract
    from inference.engine import Engine

    p = write_doc(tmp_path)
    win = make_window()
    win.worker.worker.states_dir = tmp_path / "states"
    attach(qtbot, win, p)
    q = "What was converted in 1911?"
    ask(qtbot, win, q)
    old = extract(p)
    win.close()
    with p.open("a", encoding="utf-8") as f:
        f.write("\n1. In 1954 electricity arrived at the island.")
    win2 = make_window()                      # a restart, then the grown file in a new chat
    win2.worker.worker.states_dir = tmp_path / "states"
    win2.new_chat()
    attach(qtbot, win2, p)
    [_u, a] = ask(qtbot, win2, q)
    eng = Engine.load(win2.model_path)
    before = eng.encode_chat([{"role": "user", "content": build_prompt(q, [old])}])
    now = eng.encode_chat([{"role": "user", "content": build_prompt(q, [extract(p)])}])
    shared = common_prefix(before, now)           # up to where the old text ended
    assert a.stats["prompt_tokens"] == len(now) and shared > 400
    assert shared - 2 <= a.stats["reused_tokens"] <= shared


def test_right_click_on_a_document_in_the_chat_offers_a_new_conversation(qtbot, win, tmp_path):
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtWidgets import QApplication

    from inference.documents import extract

    cid = win.store.new_conversation("about a report").id
    u = win.store.add_message(cid, "user", "What is in it?")
    aid = win.store.add_document(u.id, extract(write_doc(tmp_path)), 123)
    win.refresh_list(select=cid)
    win.open_conversation(cid)
    view = win.chat
    spot = next((QPoint(x, y) for y in range(0, 200, 2) for x in range(0, 400, 3)
                 if view.anchorAt(QPoint(x, y)) == f"lectern:doc/{aid}"), None)
    assert spot is not None, view.toHtml()
    assert "123 tokens" in view.toPlainText()
    picked = []

    def pick():
        menu = QApplication.activePopupWidget()
        picked.append([a.text() for a in menu.actions()])
        menu.actions()[1].trigger()
        menu.close()

    QTimer.singleShot(100, pick)
    view.contextMenuEvent(QContextMenuEvent(QContextMenuEvent.Mouse, spot, view.mapToGlobal(spot)))
    assert picked == [["Preview text…", "New conversation from this document"]]
    assert win.current != cid and [c.doc.name for c in win.input.attachments.chips] == ["report.txt"]
    assert win.input.attachments.chips[0].doc.text == win.store.attachment(aid)["text"]


def test_pdf_chip_shows_pages_and_scanned_or_locked_pdfs_are_refused(qtbot, win, tmp_path):
    from tests.inference.documents.makers import encrypt_pdf, write_pdf

    good = write_pdf(tmp_path / "minutes.pdf", [["Item one: the roof."], ["Item two: the lens."],
                                               ["Item three: visitors."]])
    scanned = write_pdf(tmp_path / "scan.pdf", [[], []])
    locked = encrypt_pdf(good, tmp_path / "locked.pdf", "secret")
    attach(qtbot, win, good, scanned, locked)
    [chip] = win.input.attachments.chips
    assert chip.doc.pages == 3 and "Item two: the lens." in chip.doc.text
    assert chip.label.text().startswith(f"minutes.pdf · 3 pages · {chip.doc.chars:,} characters")
    lines = win.banner.text().splitlines()
    assert lines[0] == "Not attached:" and len(lines) == 3
    assert any("scan.pdf" in x for x in lines) and any("locked.pdf" in x for x in lines)
    d = win.preview_document(chip.doc)
    assert "3 pages" in d.info.text() and "Item three: visitors." in d.text.toPlainText()
    d.close()


def test_without_a_model_the_fit_line_says_what_to_do(qtbot, make_window, tmp_path):
    from app.worker import WorkerThread

    win = make_window(load=False)
    attach(qtbot, win, write_doc(tmp_path))
    assert win.input.fit_label.text() == "Load a local model to check whether the documents fit."
    assert win.input.fit_ok is None and [c.doc.name for c in win.input.attachments.chips] == ["report.txt"]
    wt = WorkerThread()                         # the worker itself answers a count with the reason
    try:
        with qtbot.waitSignal(wt.worker.measured, timeout=10_000) as sig:
            wt.measure(1, ["text"], [{"role": "user", "content": "text"}], 16)
        assert sig.args == [1, {"error": "no local model is loaded"}]
    finally:
        wt.shutdown()
