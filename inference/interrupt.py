"""Stop and progress inside one forward call.

The engine runs a prefill chunk inside `watching(hooks)` (on its own thread). The architectures
call `layer_done(il, n_layer)` after each layer, and loops that can run for seconds (attention
over a long cache, once per block) call `poll(part)` with the part of their layer done. A hook may raise to abandon the forward;
the engine then sets the state back to before the chunk (State.undo). Outside `watching`, both
calls cost one attribute lookup.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_local = threading.local()


class Hooks:
    def __init__(self, on_layer: Callable[[int, int], None], poll: Callable[[float], None]):
        self.on_layer, self.poll = on_layer, poll      # on_layer(layers done, n_layer), poll(part)


@contextmanager
def watching(hooks: Hooks) -> Iterator[None]:
    prev = getattr(_local, "hooks", None)
    _local.hooks = hooks
    try:
        yield
    finally:
        _local.hooks = prev


def layer_done(il: int, n_layer: int) -> None:
    """Layer il of a forward is done."""
    hooks = getattr(_local, "hooks", None)
    if hooks is not None:
        hooks.on_layer(il + 1, n_layer)


def poll(part: float = 0.0) -> None:
    """A point inside a layer where a Stop may end the forward; part (0..1): how much of the
    layer is done, for progress."""
    hooks = getattr(_local, "hooks", None)
    if hooks is not None:
        hooks.poll(part)
