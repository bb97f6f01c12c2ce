"""Limits of one chat-template render: a deadline, a largest value, a total of text built.

The deadline is checked by the rendering thread itself (Python threads cannot be killed): the
sandbox compiles a `tick()` call into the top of every block of the template (each loop
iteration, macro call and branch), and the sandbox's call, operator and filter hooks tick too,
so pure-jinja loops and recursive macros stop on time; everything else a template can do in
one step is bounded by the size limits. (A sys.settrace hook would catch the same loops but
slows real templates 5x: a 200-message conversation with Gemma 4's template took 5 s instead
of 0.9 s.)
Sizes are checked by the sandbox (chat_template_sandbox.py) *before* an operation that could
allocate gigabytes in one C call. A violation raises `Abort`, a BaseException, so that no
`except Exception` inside jinja2 can swallow it.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from jinja2.utils import Namespace

MAX_INT_BITS = 10_000         # integers beyond ~3000 decimal digits have no place in a prompt


class Abort(BaseException):
    """The render broke a limit. BaseException: jinja2's own `except Exception` must not catch it."""


class FoldRefused(Exception):
    """A limit hit while jinja folds constants at compile time: an ordinary Exception, so the
    compiler leaves that expression to run time, where it is refused if it is ever reached."""


def refuse(message: str) -> None:
    b = getattr(_active, "budget", None)
    raise (FoldRefused if b is not None and b.what == "compile" else Abort)(message)


class Budget:
    """Limits of one render: a deadline, the largest value, the total text built."""

    def __init__(self, time_limit: float, max_chars: int, max_work: int, what: str = "render"):
        self.what = what
        self.time_limit = time_limit
        self.deadline = time.monotonic() + time_limit
        self.max_chars = max_chars
        self.max_work = max_work
        self.work = 0
        self._weights: dict[int, tuple[Any, int]] = {}

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            refuse(
                f"the chat template took too long to {self.what} (over {self.time_limit:g} s); "
                "it may loop forever: use another template"
            )

    def check_size(self, n: int) -> None:
        """A value of n characters (or items) is about to be built."""
        if n > self.max_chars:
            refuse(
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
                refuse(
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
    """Run the body (a compile or a render) under budget b, on this thread."""
    prev = getattr(_active, "budget", None)
    _active.budget = b
    try:
        yield b
    finally:
        _active.budget = prev


def tick() -> None:
    """The deadline check the generated code runs at the top of every block (each loop
    iteration, each macro call, each branch taken)."""
    b = getattr(_active, "budget", None)
    if b is not None:
        b.tick()


def check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        refuse(
            f"the chat template computes an integer of about {bits:,} bits: "
            "it produces absurd output, use another template"
        )
