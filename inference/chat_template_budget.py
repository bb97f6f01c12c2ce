"""Limits of one chat-template render: a deadline, a largest value, a total of text built.

The deadline is enforced by a trace hook on the rendering thread, installed only while the
render runs (every Python call and line of jinja's generated code and of its filters), so
pure-jinja loops and recursive macros stop even though Python threads cannot be killed.
Sizes are checked by the sandbox (chat_template_sandbox.py) *before* an operation that could
allocate gigabytes in one C call. A violation raises `Abort`, a BaseException, so that no
`except Exception` inside jinja2 can swallow it.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from jinja2.utils import Namespace

MAX_INT_BITS = 10_000         # integers beyond ~3000 decimal digits have no place in a prompt


class Abort(BaseException):
    """The render broke a limit. BaseException: jinja2's own `except Exception` must not catch it."""


class Budget:
    """Limits of one render: a deadline, the largest value, the total text built."""

    def __init__(self, time_limit: float, max_chars: int, max_work: int):
        self.time_limit = time_limit
        self.deadline = time.monotonic() + time_limit
        self.max_chars = max_chars
        self.max_work = max_work
        self.work = 0
        self._weights: dict[int, tuple[Any, int]] = {}

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise Abort(
                f"the chat template took too long to render (over {self.time_limit:g} s); "
                "it may loop forever: use another template"
            )

    def check_size(self, n: int) -> None:
        """A value of n characters (or items) is about to be built."""
        if n > self.max_chars:
            raise Abort(
                f"the chat template tried to build a value of {n:,} characters (the limit is "
                f"{self.max_chars:,}): it produces absurd output, use another template"
            )

    def weight(self, value: Any) -> int:
        """Elements str() or tojson would walk: shared children counted as often as reached."""
        if isinstance(value, (str, bytes)):
            return max(1, len(value))
        if isinstance(value, Namespace):   # mutable: never memoized
            children: Any = object.__getattribute__(value, "_Namespace__attrs").values()
        elif isinstance(value, dict):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            return 1
        memo = not isinstance(value, Namespace)
        if memo and id(value) in self._weights:
            return self._weights[id(value)][1]
        types = set(map(type, children))   # fast paths in C for flat lists
        if types <= _SCALARS:
            w = 1 + len(children)
        elif types <= {str}:
            w = 1 + len(children) + sum(map(len, children))
        else:
            w = 1
            for child in children:
                w += self.weight(child)
                self.check_size(w)
        self.check_size(w)
        if memo:
            self._weights[id(value)] = (value, w)   # holds value: its id stays unique
        return w

    def charge(self, value: Any) -> Any:
        """Count a value the template built against the limits; returns it."""
        if isinstance(value, (str, bytes, list, tuple, dict, Namespace)):
            self.check_size(self.weight(value))
            n = len(value) if not isinstance(value, Namespace) else 1
            self.work += n
            if self.work > self.max_work:
                raise Abort(
                    f"the chat template built over {self.max_work:,} characters of text while "
                    "rendering: it produces absurd output, use another template"
                )
        self.tick()
        return value


_SCALARS = {int, float, bool, type(None)}
_active = threading.local()
_COMPILE_BUDGET = (5.0, 1_000_000, 50_000_000)   # constant folding at compile time


def budget() -> Budget:
    b = getattr(_active, "budget", None)
    return b if b is not None else Budget(*_COMPILE_BUDGET)   # outside limited(): a safety net


@contextmanager
def limited(b: Budget) -> Iterator[Budget]:
    """Run the body under budget b: the deadline trace hook is on for this thread only.

    Any tracer already installed (a debugger, coverage) keeps being called.
    """
    prev_budget = getattr(_active, "budget", None)
    prev_trace = sys.gettrace()
    _active.budget = b
    deadline, monotonic = b.deadline, time.monotonic

    def expired() -> None:
        if monotonic() > deadline:
            b.tick()

    if prev_trace is None:
        def local(frame, event, arg):
            expired()
            return local

        def tracer(frame, event, arg):
            expired()
            return local
    else:
        def chained(theirs):
            def local(frame, event, arg):
                nonlocal theirs
                expired()
                if theirs is not None:
                    theirs = theirs(frame, event, arg)
                return local
            return local

        def tracer(frame, event, arg):
            expired()
            return chained(prev_trace(frame, event, arg))

    sys.settrace(tracer)
    try:
        yield b
    finally:
        sys.settrace(prev_trace)
        _active.budget = prev_budget


def check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise Abort(
            f"the chat template computes an integer of about {bits:,} bits: "
            "it produces absurd output, use another template"
        )
