"""Work around a PySide6 6.12.0 bug: `Signal.emit()` returns True without a new reference, so
every emit from Python takes one reference from the True singleton and, after some thousands
of tokens, Python aborts ("bool_dealloc: deallocating True or False", usually at exit).

`emit(signal, *args)` emits and, only if a probe at import shows the bug, gives the reference
back. Use it for every emit in the app.
"""
from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    ping = Signal()


def _emit_steals_a_reference() -> bool:
    p = _Probe()
    before = sys.getrefcount(True)
    r = p.ping.emit()
    after = sys.getrefcount(True)
    broken = r is True and after == before     # a correct emit returns a new reference: +1
    if broken:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(r))
    return broken


EMIT_BUG = _emit_steals_a_reference()


def emit(signal, *args) -> None:
    r = signal.emit(*args)
    if EMIT_BUG and isinstance(r, bool):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(r))
