"""The inference worker on its QThread: commands in, events out, the GUI thread never blocked."""
from __future__ import annotations

import time

import pytest

from app.worker import LOAD_STAGES, WorkerThread

GREEDY = {"temperature": 0.0, "max_tokens": 12}
HELLO = [{"role": "user", "content": "Hello there"}]


class Events:
    def __init__(self, w):
        self.items = []
        for name in ("loadProgress", "loaded", "loadFailed", "token", "done", "error"):
            getattr(w, name).connect(lambda *a, n=name: self.items.append((n, a, time.perf_counter())))

    def of(self, name):
        return [a for n, a, _ in self.items if n == name]


def load(qtbot, wt, path, n_ctx=256, lid=1):
    with qtbot.waitSignal(wt.worker.loaded, timeout=60_000):
        wt.load(lid, str(path), n_ctx)


def test_load_reports_each_stage_then_loaded(qtbot, wt, tiny_model):
    ev = Events(wt.worker)
    load(qtbot, wt, tiny_model, 128)
    steps = [a[1] for a in ev.of("loadProgress")]
    assert steps == list(range(len(LOAD_STAGES)))
    [(lid, info)] = ev.of("loaded")
    assert lid == 1 and info["n_ctx"] == 128 and info["architecture"] == "llama"


def test_stream_matches_the_engine(qtbot, wt, tiny_model):
    from inference.engine import Engine
    from inference.sampling import SamplingParams

    load(qtbot, wt, tiny_model)
    ev = Events(wt.worker)
    with qtbot.waitSignal(wt.worker.done, timeout=60_000):
        wt.prompt(5, HELLO, GREEDY)
    pieces = [a[1] for a in ev.of("token") if a[0] == 5]
    [(rid, text, stats)] = ev.of("done")
    assert rid == 5 and "".join(pieces) == text and len(pieces) >= 2
    ref = Engine.load(tiny_model).session(256).chat(HELLO, SamplingParams(**GREEDY)).run()
    assert text == ref.text
    assert stats["generated_tokens"] == 12 and stats["stop_reason"] == "length"
    assert stats["used"] == stats["prompt_tokens"] + 12 and stats["n_ctx"] == 256
    assert stats["tokens_per_s"] > 0 and stats["ttft"] > 0


def test_stop_ends_generation_at_the_next_token(qtbot, wt, tiny_model):
    load(qtbot, wt, tiny_model, 1024)
    ev = Events(wt.worker)
    wt.prompt(1, HELLO, {"temperature": 0.0, "max_tokens": 900})
    qtbot.waitUntil(lambda: len(ev.of("token")) >= 3, timeout=30_000)
    wt.stop(1)
    qtbot.waitUntil(lambda: bool(ev.of("done")), timeout=5_000)
    [(_rid, _text, stats)] = ev.of("done")
    assert stats["stop_reason"] == "cancelled" and stats["generated_tokens"] < 900
    # the answer ends where the worker stopped: every generated piece was delivered, none after
    assert len(ev.of("token")) <= stats["generated_tokens"] + 1


def test_event_loop_keeps_turning_during_load_and_generation(qtbot, wt, smollm2_path, tiny_model):
    """The worker is held mid-load and mid-answer until the GUI thread's timer has ticked: both
    finish only because the event loop keeps turning while the worker works (no clock involved)."""
    from tests.app.tick_gate import TickGate

    gate = TickGate(wt.worker.loadProgress)
    load(qtbot, wt, smollm2_path, 512)               # the real default model: ~100 MB of weights
    gate.close()
    assert gate.held, "the GUI timer did not tick while the model was loading"
    wt.load(2, str(tiny_model), 512)
    gate = TickGate(wt.worker.token)
    with qtbot.waitSignal(wt.worker.done, timeout=90_000):
        wt.prompt(1, HELLO, {"temperature": 0.0, "max_tokens": 60})
    gate.close()
    assert gate.held, "the GUI timer did not tick while the answer was generated"


def test_errors_are_events_and_the_worker_keeps_working(qtbot, wt, tiny_model, tmp_path):
    ev = Events(wt.worker)
    with qtbot.waitSignal(wt.worker.error):
        wt.prompt(1, HELLO, GREEDY)
    assert ev.of("error")[-1][:2] == (1, "nomodel")
    with qtbot.waitSignal(wt.worker.loadFailed):
        wt.load(1, str(tmp_path / "gone.gguf"), 128)
    assert ev.of("loadFailed")[-1][1] == "missing" and "gone.gguf" in ev.of("loadFailed")[-1][2]
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF but not really")
    with qtbot.waitSignal(wt.worker.loadFailed):
        wt.load(2, str(bad), 128)
    assert ev.of("loadFailed")[-1][1] == "error"
    load(qtbot, wt, tiny_model, 96, lid=3)
    with qtbot.waitSignal(wt.worker.error):
        wt.prompt(2, [{"role": "user", "content": "word " * 200}], GREEDY)
    rid, kind, msg = ev.of("error")[-1]
    assert (rid, kind) == (2, "context") and "context" in msg
    n = len(ev.items)
    wt.prompt(3, HELLO, {"temperature": 0.0, "max_tokens": 4})      # still alive
    qtbot.waitUntil(lambda: any(x[0] in ("done", "error") for x in ev.items[n:]), timeout=30_000)
    assert ev.of("done") and ev.of("done")[-1][0] == 3, ev.items[n:]


def test_memory_estimate_refuses_a_model_too_big_for_ram(qtbot, tiny_model):
    t = WorkerThread(ram_bytes=1 << 20)
    try:
        with qtbot.waitSignal(t.worker.loadFailed) as sig:
            t.load(1, str(tiny_model), 4096)
        assert sig.args[1] == "memory" and "RAM" in sig.args[2]
    finally:
        t.shutdown()


def test_cancelled_load_leaves_no_model(qtbot, wt, tiny_model):
    wt.cancel_load(1)
    with qtbot.waitSignal(wt.worker.loadFailed) as sig:
        wt.load(1, str(tiny_model), 128)
    assert sig.args[1] == "cancelled" and wt.worker.session is None


def test_count_reports_conversation_tokens(qtbot, wt, tiny_model):
    from inference.engine import Engine

    load(qtbot, wt, tiny_model)
    with qtbot.waitSignal(wt.worker.done) as sig:
        wt.count(9, HELLO)
    n = len(Engine.load(tiny_model).encode_chat(HELLO, add_generation_prompt=False))
    assert sig.args[0] == 9 and sig.args[2] == {"used": n, "n_ctx": 256, "stop_reason": "count"}


def test_emit_helper_keeps_the_true_singleton_alive(qapp):
    """PySide6 6.12.0's Signal.emit returns True without a reference; app.qt_compat.emit gives it
    back, so thousands of streamed tokens cannot free True (a fatal error at exit before)."""
    import sys

    from PySide6.QtCore import QObject, Signal

    from app.qt_compat import emit

    class O(QObject):
        s = Signal(int, str)

    o = O()
    before = sys.getrefcount(True)
    for _ in range(5000):
        emit(o.s, 1, "x")
    assert abs(sys.getrefcount(True) - before) <= 2
