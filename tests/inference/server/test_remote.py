"""inference.remote against `lectern serve` running in a subprocess, and against broken endpoints."""
from __future__ import annotations

import socket
import threading

import pytest

from inference import LecternError
from inference.engine import Engine
from inference.remote import (RemoteBackend, RemoteConnectionError, RemoteError, RemoteHTTPError,
                              RemoteTimeoutError)
from inference.sampling import GREEDY, SamplingParams
from tests.inference.server.serving import TINY, health, serve_process, wait_for

KEY = "k-123"
CHAT = [{"role": "user", "content": "tell me about the city"}]


@pytest.fixture(scope="module")
def served():
    with serve_process("-m", TINY, "-c", "512", "--api-key", KEY) as (proc, url):
        yield proc, url


@pytest.fixture(scope="module")
def engine():
    return Engine.load(TINY)


def test_models(served):
    assert RemoteBackend(served[1], KEY).models() == ["tiny-llama-Q8_0.gguf"]
    assert RemoteBackend(served[1] + "/v1/", KEY).models() == ["tiny-llama-Q8_0.gguf"]


def test_chat_streams_the_engines_greedy_answer(served, engine):
    seen = []
    gen = RemoteBackend(served[1], KEY).chat(CHAT, GREEDY.with_(max_tokens=12), on_token=seen.append)
    pieces = list(gen)
    want = engine.session(512).generate(engine.encode_chat(CHAT), GREEDY.with_(max_tokens=12)).run()
    assert len(pieces) > 1 and pieces == seen and "".join(pieces) == gen.text == want.text
    st = gen.stats
    assert (st.prompt_tokens, st.generated_tokens, st.stop_reason) == \
        (len(engine.encode_chat(CHAT)), 12, "length")
    assert st.time_to_first_token > 0
    with pytest.raises(RuntimeError):
        list(gen)                                   # runs once, like a local Generation


def test_complete_with_tokens_text_and_stop(served, engine):
    b = RemoteBackend(served[1], KEY)
    ids = engine.encode_text("the city")
    full = b.complete(ids, GREEDY.with_(max_tokens=10)).run()
    assert full.text == engine.session(512).generate(ids, GREEDY.with_(max_tokens=10)).run().text
    assert b.complete("the city", GREEDY.with_(max_tokens=10)).run().text == full.text
    stop = full.text[4:6]
    cut = b.complete("the city", GREEDY.with_(max_tokens=10, stop=(stop,))).run()
    assert cut.text == full.text[:full.text.index(stop)] and cut.stats.stop_reason == "eog"


def test_sampling_parameters_reach_the_server(served):
    b = RemoteBackend(served[1], KEY)
    p = SamplingParams(temperature=1.0, top_k=5, min_p=0.0, seed=3, max_tokens=8)
    a, c = b.complete("a state", p).run().text, b.complete("a state", p).run().text
    assert a == c
    assert b.complete("a state", p.with_(top_k=1)).run().text == \
        b.complete("a state", GREEDY.with_(max_tokens=8)).run().text      # top_k=1 is greedy


def test_cancel_closes_the_stream_and_the_server_stops(served):
    url = served[1]
    before = health(url)["stats"]["cancelled"]
    pieces = []
    gen = RemoteBackend(url, KEY).complete("the", GREEDY.with_(max_tokens=400),
                                           cancel=lambda: len(pieces) >= 2)
    for piece in gen:
        pieces.append(piece)
    assert gen.stats.stop_reason == "cancelled" and len(pieces) == 2
    st = wait_for(lambda: (s := health(url)["stats"])["cancelled"] > before and not s["busy"] and s)
    assert st["last_cancelled_tokens"] < 400


def test_http_errors_carry_the_servers_message(served):
    with pytest.raises(RemoteHTTPError) as e:
        RemoteBackend(served[1]).models()           # no key
    assert e.value.status == 401 and "API key" in str(e.value)
    with pytest.raises(RemoteHTTPError) as e:
        RemoteBackend(served[1], KEY).chat(CHAT, GREEDY.with_(max_tokens=5000)).run()
    assert e.value.status == 400 and "context size of 512" in str(e.value)
    assert e.value.body["error"]["code"] == "context_length_exceeded"
    assert isinstance(e.value, LecternError)


def test_connection_refused_is_a_clear_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                       # nothing listens there now
    with pytest.raises(RemoteConnectionError, match="cannot connect"):
        RemoteBackend(f"http://127.0.0.1:{port}", timeout=5).models()


def test_a_silent_server_times_out():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)                                     # accepts connections, never answers
    try:
        b = RemoteBackend(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=0.5)
        with pytest.raises(RemoteTimeoutError, match="0.5 s"):
            b.models()
        with pytest.raises(RemoteTimeoutError):
            b.chat(CHAT).run()
    finally:
        s.close()


def test_a_stream_that_stalls_times_out():
    """Headers and one event arrive, then nothing: the read timeout applies mid-stream."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    conns = []

    def serve():
        c, _ = srv.accept()
        conns.append(c)
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                  b'data: {"choices": [{"index": 0, "text": "hi", "finish_reason": null}]}\n\n')

    t = threading.Thread(target=serve)
    t.start()
    try:
        gen = RemoteBackend(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=0.5).complete("x")
        it = iter(gen)
        assert next(it) == "hi"
        with pytest.raises(RemoteTimeoutError, match="stalled"):
            next(it)
    finally:
        t.join()
        for c in conns:
            c.close()
        srv.close()


def test_bad_url():
    with pytest.raises(RemoteError, match="http://"):
        RemoteBackend("localhost:8080")


def test_abort_from_another_thread_stops_at_once(served):
    url = served[1]
    before = health(url)["stats"]["cancelled"]
    gen = RemoteBackend(url, KEY).complete("the", GREEDY.with_(max_tokens=400))
    first = threading.Event()
    done = threading.Event()

    def consume():
        for _ in gen:
            first.set()
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    assert first.wait(60)
    gen.abort()
    assert done.wait(10), "abort() did not end the iteration"
    t.join()
    assert gen.stats.stop_reason == "cancelled" and len(gen.text) > 0
    st = wait_for(lambda: (s := health(url)["stats"])["cancelled"] > before and not s["busy"] and s)
    assert st["last_cancelled_tokens"] < 400


def test_abort_unblocks_a_silent_stream():
    """Nothing arrives after the first event: abort() must not wait for the (long) read timeout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    conns = []

    def serve():
        c, _ = srv.accept()
        conns.append(c)
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                  b'data: {"choices": [{"index": 0, "text": "hi", "finish_reason": null}]}\n\n')

    t = threading.Thread(target=serve)
    t.start()
    try:
        gen = RemoteBackend(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=60).complete("x")
        pieces, done = [], threading.Event()

        def consume():
            pieces.extend(gen)
            done.set()

        c = threading.Thread(target=consume)
        c.start()
        wait_for(lambda: pieces or gen.text)
        gen.abort()
        assert done.wait(5)
        assert gen.stats.stop_reason == "cancelled" and gen.text == "hi"
        c.join()
    finally:
        t.join()
        for c in conns:
            c.close()
        srv.close()
