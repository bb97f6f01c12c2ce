"""Python's cyclic garbage collection, run on the GUI thread only while a window is open.

CPython collects in whichever thread happens to allocate past a threshold. When that is the
engine's worker thread (or a server, download or reading thread) and the garbage holds Qt
objects (a closed dialog caught in a reference cycle), their C++ destructors run off the GUI
thread and Qt crashes: CI saw a segfault inside the model-loading thread this way. So while a
window is open, automatic collection is off and a GUI-thread timer collects whenever Python's
own thresholds say it would have (the approach of pyqtgraph's GarbageCollector).
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 500


class _Collector(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.users = 0
        self.timer = QTimer(self)
        self.timer.setInterval(INTERVAL_MS)
        self.timer.timeout.connect(self.check)

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds, as CPython would."""
        t0, t1, t2 = gc.get_threshold()
        c0, c1, c2 = gc.get_count()
        if c2 > t2:
            gc.collect(2)
        elif c1 > t1:
            gc.collect(1)
        elif c0 > t0:
            gc.collect(0)


_collector: _Collector | None = None


def hold() -> None:
    """A window opened: from now on only the GUI thread collects (call on the GUI thread)."""
    global _collector
    if _collector is None:
        _collector = _Collector()
    _collector.users += 1
    if _collector.users == 1:
        gc.disable()
        _collector.timer.start()


def release() -> None:
    """A window closed: when it was the last, collection is automatic again."""
    if _collector is None or _collector.users == 0:
        return
    _collector.users -= 1
    if _collector.users == 0:
        _collector.timer.stop()
        gc.unfreeze()                   # the window's model (frozen after loading) is garbage now
        gc.collect()
        gc.enable()


def reset() -> None:
    """Back to automatic collection whatever is still open (tests call this between tests)."""
    if _collector is not None:
        _collector.users = 1
    release()
    gc.enable()


def settle_after_load() -> None:
    """A model just loaded: collect once, then keep its many long-lived small objects out of
    later full passes (which hold the GIL, and so the GUI, while they run)."""
    gc.collect()
    gc.freeze()
