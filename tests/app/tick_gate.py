"""A deterministic check that the GUI event loop turns while the worker is busy.

TickGate holds the worker thread inside the first emission of a worker signal (a direct
connection runs in the emitting thread) until the GUI thread's timer has ticked `n` more times.
The worker can only finish if the event loop kept running meanwhile; no clock is read."""
from __future__ import annotations

import threading

from PySide6.QtCore import Qt, QTimer


class TickGate:
    def __init__(self, signal, n: int = 5, wait_s: float = 60.0):
        self.signal, self.n, self.wait_s = signal, n, wait_s
        self.ticks, self.start, self.held = 0, None, False
        self.gate = threading.Event()
        self.timer = QTimer(interval=5)
        self.timer.timeout.connect(self._tick)
        signal.connect(self._hold, Qt.DirectConnection)
        self.timer.start()

    def _tick(self) -> None:                    # GUI thread
        self.ticks += 1
        if self.start is not None and self.ticks >= self.start + self.n:
            self.gate.set()

    def _hold(self, *_args) -> None:            # worker thread, inside its emit
        if self.start is None:
            self.start = self.ticks
            self.held = self.gate.wait(self.wait_s)

    def close(self) -> None:
        self.timer.stop()
        self.signal.disconnect(self._hold)
