"""What every architecture provides: Config from metadata, weights bound by GGUF name, State.

An architecture module (llama.py, gemma3.py, kimi_linear.py, step35.py) defines a `Model`
subclass with `arch` names, builds its config in `__init__`, binds its weights as Tensor views
(attributes named after the GGUF tensors: `attn_q`, `ffn_gate_exps`, ...), and implements
`new_state` and `forward`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import ContextOverflowError, UnsupportedModelError
from ..generation import PREFILL_CHUNK
from ..gguf_file import GGUFFile, Tensor
from ..kv_cache import DEFAULT_KV_TYPE, check_kv_type

# Kinds of per-layer state buffers, which decide how a State can be rewound:
KV = "kv"                # indexed by absolute position, [n_ctx, ...]; any rewind is fine
RING = "ring"            # sliding-window ring buffer, positions kept in `pos.<name>`
RECURRENT = "recurrent"  # conv / delta-rule state: only valid exactly at n_past


def cached_plan(model, state: "State", module: str, cls: str):
    """The JIT decode plan jit.<module>.<cls> for state, kept on the model (a plan holds the run
    state's buffers and points into the state's caches): the kept one while it still belongs to
    state, a new one where jit.<module>.plannable(model, state), else None (the per-op path)."""
    try:
        import importlib

        from jit import api
        jp = importlib.import_module(f"jit.{module}")
    except ImportError:
        return None
    plan = getattr(model, "_plan", None)
    if plan is not None and plan.refs.matches(state):
        return plan if api.enabled() else None
    model._plan = None
    if not jp.plannable(model, state):
        return None
    model._plan = getattr(jp, cls)(model, state)
    return model._plan


@dataclass
class State:
    """Everything a sequence carries between forward calls (llama2.c's RunState)."""
    n_ctx: int
    n_past: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)   # name -> buffer
    kinds: dict[str, str] = field(default_factory=dict)           # name -> KV | RING | RECURRENT
    windows: dict[str, int] = field(default_factory=dict)         # ring name -> attention window
    kv_type: str = DEFAULT_KV_TYPE    # what the K/V (or MLA latent) caches hold: "f16" | "f32"

    def add(self, name: str, arr: np.ndarray, kind: str, window: int | None = None) -> np.ndarray:
        self.arrays[name] = arr
        self.kinds[name] = kind
        if kind == RING:
            assert window is not None
            self.windows[name] = window
            self.arrays[f"pos.{name}"] = np.full(arr.shape[0], -1, np.int64)
            self.kinds[f"pos.{name}"] = RING
        return arr

    def check_room(self, T: int) -> None:
        """Refuse T new tokens that would not fit in the context (ContextOverflowError)."""
        if self.n_past + T > self.n_ctx:
            raise ContextOverflowError(
                f"context is full: {self.n_past} tokens held + {T} new > context size {self.n_ctx}; "
                "start a new conversation, shorten the input or raise the context size")

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def can_rewind(self, n: int) -> bool:
        """Whether the state can be set back to hold exactly the first n tokens."""
        if n == self.n_past:
            return True
        if n > self.n_past or n < 0:
            return False
        for name, kind in self.kinds.items():
            if kind == RECURRENT:
                return False
            if kind == RING and name in self.windows:
                need = np.arange(max(0, n - self.windows[name] + 1), n)
                if not np.isin(need, self.arrays[f"pos.{name}"]).all():
                    return False
        return True

    def rewind(self, n: int) -> None:
        if not self.can_rewind(n):
            raise ValueError(f"state at {self.n_past} tokens cannot be rewound to {n}")
        for name in self.windows:
            pos = self.arrays[f"pos.{name}"]
            pos[pos >= n] = -1
        self.n_past = n

    def undo_point(self) -> tuple[int, dict[str, np.ndarray]]:
        """What undo() needs to take back a forward abandoned half-way (inference.interrupt):
        n_past and copies of the buffers a forward overwrites in place (recurrent states,
        sliding-window rings). Position-indexed caches are only written past n_past: no copy."""
        return self.n_past, {k: self.arrays[k].copy() for k in self.in_place()}

    def in_place(self) -> list[str]:
        """The arrays a forward overwrites in place (recurrent states, rings, their positions):
        all but the position-indexed caches, which are only written past n_past."""
        return [k for k in self.arrays if self.kinds.get(k) != KV]

    def undo(self, point: tuple[int, dict[str, np.ndarray]]) -> None:
        n_past, saved = point
        for k, a in saved.items():
            self.arrays[k][...] = a
        self.n_past = n_past

    def copy(self) -> "State":
        return State(self.n_ctx, self.n_past, {k: v.copy() for k, v in self.arrays.items()},
                     dict(self.kinds), dict(self.windows), self.kv_type)


def in_row_parts(f, x: np.ndarray, rows: int) -> np.ndarray:
    """f(x) for a per-row f, computed `rows` rows at a time when x is longer: a long prefill chunk
    (which attention wants) keeps each part's temporaries small (in cache, and under glibc's 32 MB
    mmap threshold, past which every temporary is fresh pages faulted in on each call)."""
    if x.shape[0] <= rows:
        return f(x)
    return np.concatenate([f(x[t:t + rows]) for t in range(0, x.shape[0], rows)])


class Model:
    """Base of the architectures. `forward` is the one method the engine drives."""
    arch: ClassVar[tuple[str, ...]] = ()
    prefill_chunk: ClassVar[int] = PREFILL_CHUNK     # tokens per prefill forward (Session.prefill's default)

    def __init__(self, gguf: GGUFFile, kv_type: str = DEFAULT_KV_TYPE):
        self.gguf = gguf
        self._tokenizer = None
        self.kv_type = kv_type

    @property
    def kv_type(self) -> str:
        """The KV cache type of the states new_state makes ("f16" | "f32", inference.kv_cache)."""
        return self._kv_type

    @kv_type.setter
    def kv_type(self, value: str) -> None:
        self._kv_type = check_kv_type(value)

    # --- metadata and weights -------------------------------------------------------------
    def meta(self, key: str, default: Any = ...) -> Any:
        """`{arch}.{key}`; a missing required key is refused with a clear message."""
        full = f"{self.gguf.architecture}.{key}"
        if full in self.gguf.metadata:
            return self.gguf.metadata[full]
        if default is ...:
            raise UnsupportedModelError(f"{self.gguf.path}: required metadata key {full!r} is missing")
        return default

    def tensor(self, name: str, required: bool = True) -> Tensor | None:
        t = self.gguf.tensors.get(name)
        if t is None and required:
            raise UnsupportedModelError(f"{self.gguf.path}: tensor {name!r} is missing")
        return t

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from ..tokenizer import Tokenizer

            self._tokenizer = Tokenizer.from_gguf(self.gguf)
        return self._tokenizer

    @property
    def n_vocab(self) -> int:
        return self.tensor("token_embd.weight").shape[0]

    @property
    def n_ctx_train(self) -> int:
        return int(self.meta("context_length", 4096))

    # --- the engine's interface ------------------------------------------------------------
    def new_state(self, n_ctx: int | None = None) -> State:
        raise NotImplementedError

    def forward(self, tokens: np.ndarray, state: State, last_only: bool = False) -> np.ndarray:
        """Run `tokens` at positions state.n_past.. and advance the state.

        tokens: [T] int -> logits [T, n_vocab] float32 ([1, n_vocab] with last_only).
        """
        raise NotImplementedError

    def logits(self, tokens) -> np.ndarray:
        """Logits at every position, the tokens evaluated as one batch from an empty state."""
        tokens = np.asarray(tokens, dtype=np.int64)
        return self.forward(tokens, self.new_state(max(1, len(tokens))))
