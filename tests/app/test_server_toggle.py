"""Tools > Local API server in the real window: the loaded model answers over HTTP (the real
`openai` client) with the same greedy text the engine gives; the URL shows in the status bar;
toggling off (or quitting) frees the port; a busy port is refused with a clear banner."""
from __future__ import annotations

import socket
import threading

from .test_main_window import reference_answer, type_and_send, wait_idle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    """Nobody listens and a new server could bind it (SO_REUSEADDR, as http.server sets: closed
    client connections may linger in TIME_WAIT)."""
    with socket.socket() as c:
        if c.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_toggle_serves_the_loaded_model_and_frees_the_port(qtbot, make_window, tiny_model):
    import openai

    win = make_window()
    port = _free_port()
    win.store.set("server_port", port)
    win.act_server.trigger()                    # the Tools menu action, checked on
    assert win.act_server.isChecked()
    url = f"http://127.0.0.1:{port}"
    assert win.server.running and win.server.server.url == url
    assert win.server_label.isVisible() and url in win.server_label.text()

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", timeout=60, max_retries=0)
    msgs = [{"role": "user", "content": "Hello there"}]
    r = client.chat.completions.create(model="x", messages=msgs, max_tokens=8, temperature=0)
    assert r.choices[0].message.content == reference_answer(tiny_model, msgs, 8)
    # the shared lock is the worker's: the server's worker holds exactly that object
    assert win.server.server.worker.lock is win.worker.worker.engine_lock

    # a chat in the window while a streamed server request runs: both finish (one lock, no crash)
    out = []
    t = threading.Thread(target=lambda: out.append("".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="x", messages=msgs, max_tokens=8, temperature=0, stream=True))))
    t.start()
    type_and_send(qtbot, win, "Hi")
    wait_idle(qtbot, win)
    t.join(60)
    assert out and out[0] == r.choices[0].message.content
    assert win.store.messages(win.current)[-1].role == "assistant"

    win.act_server.trigger()                    # off
    assert not win.act_server.isChecked() and not win.server.running
    assert not win.server_label.isVisible()
    assert _port_free(port)


def test_busy_port_is_refused_clearly(make_window):
    win = make_window()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        win.store.set("server_port", port)
        win.act_server.trigger()
        assert not win.act_server.isChecked() and not win.server.running
        assert win.banner_box.isVisible() and f"port {port} is busy" in win.banner.text()


def test_quit_stops_the_server(make_window):
    win = make_window()
    port = _free_port()
    win.store.set("server_port", port)
    win.act_server.trigger()
    assert win.server.running and not _port_free(port)
    win.close()
    assert _port_free(port)


def test_no_model_loaded_explains(make_window):
    win = make_window(load=False)
    win.act_server.trigger()
    assert not win.act_server.isChecked() and "Load a model first" in win.banner.text()


def test_loading_another_model_serves_it(qtbot, make_window, tiny_model):
    import json
    import urllib.request

    win = make_window()
    port = _free_port()
    win.store.set("server_port", port)
    win.act_server.trigger()
    q8 = tiny_model.with_name("tiny-llama-Q8_0.gguf")
    win.load_model(str(q8))
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=60_000)
    assert win.server.running and win.act_server.isChecked()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30) as r:
        ids = [m["id"] for m in json.load(r)["data"]]
    assert ids == [q8.name]
