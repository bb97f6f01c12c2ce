"""A remote OpenAI-compatible endpoint as a model in the window: our own Server in-process on
127.0.0.1 (port 0) over the golden tiny llama (Q8_0); the window's streamed answer must equal
the server engine's greedy answer; with the server stopped, the error banner shows, the app
keeps working and the user's message is kept."""
from __future__ import annotations

import pytest

from .conftest import fast_settings
from .test_main_window import type_and_send, wait_idle

Q8 = "tiny-llama-Q8_0.gguf"


@pytest.fixture
def served(tiny_model):
    from inference.engine import Engine
    from inference.server import Server

    engine = Engine.load(tiny_model.with_name(Q8))
    srv = Server(engine, host="127.0.0.1", port=0, api_key="sekrit").start()
    yield srv, engine
    srv.stop()


def greedy(engine, messages, max_tokens):
    from inference.sampling import SamplingParams

    p = SamplingParams(temperature=0.0, repeat_penalty=1.1, max_tokens=max_tokens)
    return engine.session(2048).chat(messages, p).run().text


def test_remote_endpoint_answers_like_the_server_engine_then_fails_cleanly(qtbot, make_window,
                                                                           served):
    from inference.remote import RemoteError

    srv, engine = served
    win = make_window(load=False)
    with pytest.raises(RemoteError, match="401|API key|nauthori"):
        win.add_remote(srv.url, "wrong-key")
    entry = win.add_remote(srv.url, "sekrit")
    assert entry.path in win.picker.paths()
    assert win.store.get("remote_endpoints")[0]["api_key"] == "sekrit"
    win.load_model(entry.path)
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=30_000)
    assert win.model_path == entry.path and "remote" in win.model_label.text()
    fast_settings(win, max_tokens=12)

    tokens = []
    win.worker.worker.token.connect(lambda rid, piece: tokens.append(piece))
    type_and_send(qtbot, win, "Hello there")
    wait_idle(qtbot, win)
    msgs = win.store.messages(win.current)
    assert [m.role for m in msgs] == ["user", "assistant"]
    want = greedy(engine, [{"role": "user", "content": "Hello there"}], 12)
    assert msgs[-1].content == want and "".join(tokens) == want and len(tokens) > 1
    assert msgs[-1].state == "complete"
    assert msgs[-1].stats["generated_tokens"] == 12 or msgs[-1].stats["stop_reason"] == "eog"

    srv.stop()                                  # the endpoint goes away
    type_and_send(qtbot, win, "Are you there?")
    wait_idle(qtbot, win)
    assert win.banner_box.isVisible() and win.banner.text()
    msgs = win.store.messages(win.current)
    assert [m.role for m in msgs] == ["user", "assistant", "user"]
    assert msgs[-1].content == "Are you there?"
    assert not win.busy and win.input.edit.isEnabled()


def test_picker_add_remote_dialog_and_restart_keeps_the_endpoint(qtbot, make_window, served,
                                                                 monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from app.model_picker import REMOTE
    from app.remote_models import remote_path

    srv, _ = served
    win = make_window(load=False)
    answers = iter([(srv.url, True), ("sekrit", True)])       # what the user types: URL, key
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: next(answers)))
    i = win.picker.findData(REMOTE)
    assert i >= 0 and win.picker.itemText(i) == "Add remote endpoint…"
    win.picker.activated.emit(i)               # one model served: chosen without asking
    entry_path = remote_path(srv.url, srv.model_id)
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=30_000)
    assert win.model_path == entry_path
    win2 = make_window(load=False)              # same data dir: the endpoint is remembered
    assert entry_path in win2.picker.paths()


def test_stop_a_remote_answer(qtbot, make_window, served):
    srv, _ = served
    win = make_window(load=False)
    win.load_model(win.add_remote(srv.url, "sekrit").path)
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=30_000)
    fast_settings(win, max_tokens=4000)
    type_and_send(qtbot, win, "Tell me a long story")
    qtbot.waitUntil(lambda: bool(win.writer and win.writer.text), timeout=30_000)
    win.stop()
    wait_idle(qtbot, win, timeout=5_000)
    m = win.store.messages(win.current)[-1]
    assert m.role == "assistant" and m.state == "stopped" and m.content
    qtbot.waitUntil(lambda: srv.stats.get("queued", 0) == 0, timeout=10_000)
