"""The real main window, offscreen, driven like a user: type, send, stream, stop, regenerate, edit,
switch and manage conversations, restart. Answers come from the golden tiny llama (fast)."""
from __future__ import annotations


import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication

from .conftest import fast_settings


def reference_answer(model, messages, max_tokens):
    from inference.engine import Engine
    from inference.sampling import SamplingParams

    p = SamplingParams(temperature=0.0, repeat_penalty=1.1, max_tokens=max_tokens)
    return Engine.load(model).session(4096).chat(messages, p).run().text


def type_and_send(qtbot, win, text):
    qtbot.keyClicks(win.input.edit, text)
    qtbot.keyClick(win.input.edit, Qt.Key_Return)


def wait_idle(qtbot, win, timeout=60_000):
    qtbot.waitUntil(lambda: not win.busy, timeout=timeout)


def test_type_send_and_stream(qtbot, make_window, tiny_model):
    win = make_window()
    seen = []
    update = win.chat.update_text      # called on the GUI thread for every streamed piece
    win.chat.update_text = lambda *a, **k: (seen.append(a[1]), update(*a, **k))
    type_and_send(qtbot, win, "Hello there")
    assert win.busy and win.input.button.text() == "Stop" and win.input.edit.toPlainText() == ""
    wait_idle(qtbot, win)
    msgs = win.store.messages(win.current)
    assert [(m.role, m.state) for m in msgs] == [("user", "complete"), ("assistant", "complete")]
    assert msgs[0].content == "Hello there"
    want = reference_answer(tiny_model, [{"role": "user", "content": "Hello there"}], 16)
    assert msgs[1].content == want and want
    assert len(seen) >= 2                                      # it arrived piece by piece
    assert msgs[1].stats["generated_tokens"] == 16 and msgs[1].stats["tokens_per_s"] > 0
    assert "16 tokens" in win.chat.toPlainText() and "tok/s" in win.chat.toPlainText()
    assert "first token" in win.chat.toPlainText()
    assert win.store.conversation(win.current).title == "Hello there"
    assert win.meter.maximum() == 4096 and win.meter.value() == msgs[1].stats["used"]
    assert win.input.button.text() == "Send"


def test_shift_enter_is_a_new_line(qtbot, make_window):
    win = make_window()
    qtbot.keyClicks(win.input.edit, "one")
    qtbot.keyClick(win.input.edit, Qt.Key_Return, Qt.ShiftModifier)
    qtbot.keyClicks(win.input.edit, "two")
    assert win.input.edit.toPlainText() == "one\ntwo" and not win.busy and win.current is None


def test_escape_stops_at_once_and_keeps_the_text(qtbot, make_window):
    win = make_window()
    fast_settings(win, max_tokens=900)
    win.apply_settings("", dict(win.model_settings(), n_ctx=1024))
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=30_000)
    type_and_send(qtbot, win, "Tell me a story")
    qtbot.waitUntil(lambda: win.writer is not None and len(win.writer.text) > 10, timeout=30_000)
    qtbot.keyClick(win, Qt.Key_Escape)
    assert not win.busy                          # idle when the key press returns, not later
    shown = win.chat.messages[-1].content
    qtbot.wait(300)                                             # late tokens are ignored
    [_u, a] = win.store.messages(win.current)
    assert a.state == "stopped" and a.content == shown == win.chat.messages[-1].content
    assert "(stopped)" in win.chat.toPlainText()
    qtbot.waitUntil(lambda: "tokens" in win.chat.toPlainText(), timeout=5_000)   # stats arrive
    type_and_send(qtbot, win, "Short one")                       # the worker is free again
    qtbot.waitUntil(lambda: win.busy, timeout=5_000)
    win.stop()


def test_regenerate_replaces_the_last_answer(qtbot, make_window):
    win = make_window()
    type_and_send(qtbot, win, "Hi")
    wait_idle(qtbot, win)
    first = win.store.messages(win.current)[-1]
    fast_settings(win, max_tokens=6)
    qtbot.keyClick(win, Qt.Key_R, Qt.ControlModifier)
    assert win.busy
    wait_idle(qtbot, win)
    msgs = win.store.messages(win.current)
    assert [m.role for m in msgs] == ["user", "assistant"] and first.stats["generated_tokens"] == 16
    assert msgs[1].stats["generated_tokens"] == 6 and first.content.startswith(msgs[1].content)


def test_edit_a_past_message_and_continue(qtbot, make_window):
    win = make_window()
    for text in ("First question", "Second question"):
        type_and_send(qtbot, win, text)
        wait_idle(qtbot, win)
    first = win.store.messages(win.current)[0]
    win.chat._on_anchor(QUrl(f"lectern:edit/{first.id}"))
    assert win.input.banner.isVisible() and win.input.edit.toPlainText() == "First question"
    win.input.edit.clear()
    type_and_send(qtbot, win, "Edited question")
    wait_idle(qtbot, win)
    msgs = win.store.messages(win.current)
    assert [(m.role, m.content if m.role == "user" else "") for m in msgs] == [
        ("user", "Edited question"), ("assistant", "")]
    assert not win.input.banner.isVisible()


def test_copy_message_code_block_and_last_answer(qtbot, make_window):
    win = make_window()
    cid = win.store.new_conversation("code").id
    win.store.add_message(cid, "user", "code please")
    a = win.store.add_message(cid, "assistant", "Here:\n```python\nprint('hi')\n```\n<think>hmm</think>done")
    win.refresh_list(select=cid)
    win.open_conversation(cid)
    clip = QGuiApplication.clipboard()
    win.chat._on_anchor(QUrl(f"lectern:code/{a.id}/0"))
    assert clip.text() == "print('hi')"
    win.chat._on_anchor(QUrl(f"lectern:copy/{a.id}"))
    assert clip.text() == a.content
    clip.setText("")
    qtbot.keyClick(win, Qt.Key_C, Qt.ControlModifier | Qt.ShiftModifier)
    assert clip.text() == a.content
    assert "hmm" not in win.chat.toPlainText() and "Thought (1 words)" in win.chat.toPlainText()
    win.chat._on_anchor(QUrl(f"lectern:think/{a.id}/0"))
    assert "hmm" in win.chat.toPlainText()


def test_conversations_new_switch_rename_delete_search(qtbot, make_window):
    win = make_window()
    type_and_send(qtbot, win, "About apples")
    wait_idle(qtbot, win)
    a = win.current
    qtbot.keyClick(win, Qt.Key_N, Qt.ControlModifier)
    b = win.current
    assert b != a and win.chat.messages == [] and win.conversations.ids()[0] == b
    type_and_send(qtbot, win, "About pears")
    wait_idle(qtbot, win)
    win.conversations.list.setCurrentRow(win.conversations.ids().index(a))
    assert win.current == a and "About apples" in win.chat.toPlainText()
    assert "About pears" not in win.chat.toPlainText()
    win.rename_conversation(a, "Fruit talk")
    assert win.conversations.list.currentItem().text() == "Fruit talk"
    qtbot.keyClick(win, Qt.Key_F, Qt.ControlModifier)
    assert win.conversations.search.hasFocus()
    qtbot.keyClicks(win.conversations.search, "pears")
    qtbot.waitUntil(lambda: win.conversations.ids() == [b], timeout=3_000)
    win.conversations.search.clear()
    qtbot.waitUntil(lambda: len(win.conversations.ids()) == 2, timeout=3_000)
    win.delete_conversation(a)
    assert a not in win.conversations.ids() and win.store.conversation(a) is None
    assert win.current is not None and win.current != a


def test_restart_restores_conversations_window_and_splitter(qtbot, make_window):
    win = make_window()
    type_and_send(qtbot, win, "Remember me")
    wait_idle(qtbot, win)
    cid, answer = win.current, win.store.messages(win.current)[-1].content
    win.resize(700, 500)
    win.splitter.setSizes([300, 600])
    sizes = win.splitter.sizes()
    win.close()
    win2 = make_window(load=False)
    assert win2.current == cid and win2.conversations.current_id() == cid
    assert "Remember me" in win2.chat.toPlainText() and answer.split()[0] in win2.chat.toPlainText()
    assert (win2.width(), win2.height()) == (700, 500)
    assert win2.splitter.sizes() == sizes


def test_ui_keeps_turning_while_answering(qtbot, make_window):
    """The worker is held inside its first streamed token until the window's event loop has
    ticked: the answer completes only because the GUI keeps turning while it is generated."""
    from tests.app.tick_gate import TickGate

    win = make_window()
    type_and_send(qtbot, win, "Warm up")        # first paint of bold/monospace text loads fonts
    wait_idle(qtbot, win)
    fast_settings(win, max_tokens=80)
    gate = TickGate(win.worker.worker.token)
    type_and_send(qtbot, win, "Go on")
    wait_idle(qtbot, win)
    gate.close()
    assert gate.held, "the window's timer did not tick while the answer streamed"

def test_missing_model_shows_a_message_and_the_app_keeps_working(qtbot, make_window, tmp_path):
    win = make_window()
    win.load_model(str(tmp_path / "deleted.gguf"))
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=10_000)
    assert win.banner_box.isVisible() and "deleted.gguf" in win.banner.text()
    assert "not found" in win.banner.text()
    type_and_send(qtbot, win, "still there?")                # the previous model still answers
    wait_idle(qtbot, win)
    assert win.store.messages(win.current)[-1].state == "complete"


def test_context_overflow_shows_a_message(qtbot, make_window):
    win = make_window()
    win.apply_settings("", dict(win.model_settings(), n_ctx=96))
    qtbot.waitUntil(lambda: win.loading_lid is None and win.n_ctx == 96, timeout=30_000)
    type_and_send(qtbot, win, "word " * 100)
    wait_idle(qtbot, win)
    assert win.banner_box.isVisible() and "context" in win.banner.text()
    assert [m.role for m in win.store.messages(win.current)] == ["user"]      # no empty answer
    qtbot.waitUntil(lambda: win.meter.value() == 96, timeout=5_000)      # the meter shows it full
    assert win.meter.property("warning") is True


def test_too_big_for_ram_shows_a_message(qtbot, data_dir, tiny_model):
    from app import gui

    _app, win, path = gui.build(model=str(tiny_model), ram_bytes=1 << 20, builtin=str(tiny_model))
    qtbot.addWidget(win)
    win.show()
    win.load_model(path)
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=30_000)
    assert "RAM" in win.banner.text() and win.model_label.text() == "No model loaded"
    type_and_send(qtbot, win, "anyone?")
    qtbot.waitUntil(lambda: "No model is loaded" in win.banner.text(), timeout=5_000)
    win.close()


def test_drop_a_gguf_to_import_and_load_it(qtbot, make_window):
    from .conftest import TINY

    other = TINY.with_name("tiny-gemma3-Q8_0.gguf")
    win = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(other))])
    ev = QDropEvent(QPoint(10, 10).toPointF(), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    win.dropEvent(ev)
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=30_000)
    assert win.model_path == str(other) and str(other) in win.picker.paths()
    assert str(other) in win.store.imported_models()
    assert "gemma3" in win.model_label.text()


def test_shortcuts_and_about(make_window):
    win = make_window(load=False)
    keys = {a.text().replace("&", ""): a.shortcut().toString() for a in win.findChildren(type(win.act_new))}
    assert keys["New chat"] == "Ctrl+N" and keys["Find chats"] == "Ctrl+F"
    assert keys["Settings…"] == "Ctrl+," and keys["Stop answer"] == "Esc"
    assert keys["Copy last answer"] == "Ctrl+Shift+C" and keys["Quit"] == "Ctrl+Q"
    assert win.act_server.isCheckable()
    win.server_toggle = lambda on: f"server {'on' if on else 'off'}"
    win.act_server.trigger()
    assert win.statusBar().currentMessage() == "server on"


@pytest.mark.slow
def test_smollm2_answers_in_the_window(qtbot, make_window, smollm2_path):
    win = make_window(model=smollm2_path)
    fast_settings(win, max_tokens=3)
    type_and_send(qtbot, win, "Hi")
    wait_idle(qtbot, win, timeout=300_000)
    a = win.store.messages(win.current)[-1]
    assert a.state == "complete" and a.stats["generated_tokens"] >= 1 and a.content.strip()


def test_settings_dialog_round_trip_and_system_prompt(qtbot, make_window):
    from app.settings_dialog import SettingsDialog

    win = make_window()
    d = SettingsDialog(str(win.library.models_dir), win.model_entry, win.model_settings(), win)
    qtbot.addWidget(d)
    assert d.values() == {k: win.model_settings()[k] for k in d.values()}
    d.system_prompt.setPlainText("Answer in French.")
    d.temperature.setValue(0.3)
    win.apply_settings(d.models_dir.text(), d.values())
    assert win.model_settings()["system_prompt"] == "Answer in French."
    assert win.sampling_params()["temperature"] == 0.3
    from app.store import Message

    msgs = win.prompt_messages([Message(1, 1, "user", "Bonjour")])
    assert msgs == [{"role": "system", "content": "Answer in French."},
                    {"role": "user", "content": "Bonjour"}]
    d._defaults()
    assert d.values()["system_prompt"] == "" and d.values()["temperature"] == 0.7


def test_context_meter_follows_the_answer_and_warns(qtbot, make_window):
    win = make_window()
    win.apply_settings("", dict(win.model_settings(), n_ctx=128, max_tokens=40))
    qtbot.waitUntil(lambda: win.loading_lid is None and win.n_ctx == 128, timeout=30_000)
    values = []
    win.meter.valueChanged.connect(values.append)
    type_and_send(qtbot, win, "Hello there")
    wait_idle(qtbot, win)
    a = win.store.messages(win.current)[-1]
    assert win.meter.value() == a.stats["used"] and win.meter.maximum() == 128
    assert values[0] == a.stats["prompt_tokens"] and len(values) > 3      # it moved while streaming
    assert "context" in win.meter.toolTip() and "nearly fills" in win.meter.toolTip()
    assert win.meter.property("warning") is True


def test_export_and_import_through_the_dialogs(qtbot, make_window, tmp_path, monkeypatch):
    import json

    from PySide6.QtWidgets import QFileDialog

    from .conftest import TINY

    win = make_window()
    type_and_send(qtbot, win, "Export me")
    wait_idle(qtbot, win)
    for kind in ("md", "json"):
        target = tmp_path / f"chat.{kind}"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, t=target, **k: (str(t), ""))
        win.export_dialog(kind)
    assert (tmp_path / "chat.md").read_text().startswith("# Export me\n")
    data = json.loads((tmp_path / "chat.json").read_text())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    other = TINY.with_name("tiny-kimi-linear-Q8_0.gguf")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(other), ""))
    win.import_dialog()
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=30_000)
    assert win.model_path == str(other) and "kimi-linear" in win.model_label.text()


def test_cancel_loading(qtbot, make_window):
    from .conftest import TINY

    win = make_window()
    fast_settings(win, max_tokens=900)
    type_and_send(qtbot, win, "Keep the worker busy")
    qtbot.waitUntil(lambda: win.writer is not None and len(win.writer.text) > 5, timeout=30_000)
    win.load_model(str(TINY.with_name("tiny-gemma3-Q8_0.gguf")))   # stops the answer, queues the load
    assert win.load_cancel.isVisible()
    qtbot.mouseClick(win.load_cancel, Qt.LeftButton)
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=30_000)
    assert win.statusBar().currentMessage() == "Loading cancelled" and not win.banner_box.isVisible()
    assert win.model_path == str(TINY) and "llama" in win.model_label.text()   # the old model stays


def test_dark_theme_recolours_the_chat(qtbot, make_window):
    from app import theme

    win = make_window()
    type_and_send(qtbot, win, "Colours")
    wait_idle(qtbot, win)
    app = QGuiApplication.instance()
    try:
        theme.apply(app, dark=True)
        qtbot.waitUntil(lambda: "#e6edf3" in win.chat.toHtml().lower(), timeout=3_000)
    finally:
        theme.apply(app, dark=False)
    qtbot.waitUntil(lambda: "#e6edf3" not in win.chat.toHtml().lower(), timeout=3_000)


def test_stop_button(qtbot, make_window):
    win = make_window()
    fast_settings(win, max_tokens=900)
    type_and_send(qtbot, win, "Count to one hundred")
    qtbot.waitUntil(lambda: win.writer is not None and len(win.writer.text) > 5, timeout=30_000)
    assert win.input.button.text() == "Stop"
    qtbot.mouseClick(win.input.button, Qt.LeftButton)
    assert not win.busy and win.input.button.text() == "Send"
    assert win.store.messages(win.current)[-1].state == "stopped"
