"""Garbage is collected on the GUI thread while a window is open (app.gc_guard): a cycle holding
Qt objects must never be destroyed by the engine's threads (a segfault seen in CI)."""
from __future__ import annotations

import gc
import threading


class Cycle:
    died_on: list[str] = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        Cycle.died_on.append(threading.current_thread().name)


def test_an_open_window_turns_collection_to_the_gui_thread(qtbot, make_window):
    win = make_window(load=False)
    assert not gc.isenabled()
    Cycle.died_on.clear()
    gc.collect()

    def churn():                                    # a worker thread allocating a lot of cycles
        for _ in range(5 * gc.get_threshold()[0]):
            Cycle()

    t = threading.Thread(target=churn, name="engine-like")
    t.start()
    t.join()
    assert Cycle.died_on == []                      # nothing collected on that thread
    qtbot.waitUntil(lambda: len(Cycle.died_on) > 0, timeout=10_000)
    assert set(Cycle.died_on) == {threading.main_thread().name}
    win.close()
    assert gc.isenabled()


def test_loading_a_model_freezes_its_objects_and_a_new_load_unfreezes(qtbot, make_window, tiny_model):
    win = make_window()
    assert gc.get_freeze_count() > 0                # settled after the load, on the GUI thread
    win.load_model(str(tiny_model))
    assert gc.get_freeze_count() == 0
    qtbot.waitUntil(lambda: win.loading_lid is None, timeout=60_000)
    assert gc.get_freeze_count() > 0
