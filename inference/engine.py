"""Engine (a loaded model) and Session (one conversation's state, reused between turns).

A Session holds the model State and the tokens it covers (`session.tokens`, len == state.n_past)
and the logits after the last of them. A new prompt reuses the longest common prefix:
- attention-only states (KV cache) rewind to it;
- states with recurrent or sliding-window parts cannot always rewind: the session keeps a
  snapshot of those parts at the end of the previous prompt and resumes from it (the KV part
  below the snapshot's position is never overwritten later), else it starts over.
Generation streams text pieces; see `Generation`.
"""
from __future__ import annotations

import hashlib
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import interrupt
from .errors import ContextOverflowError, LecternError, TokenizerError
from .generation import PREFILL_CHUNK, Cancel, Generation, GenerationStats, Progress  # noqa: F401 (re-exported)
from .kv_cache import DEFAULT_KV_TYPE, check_kv_type
from .models.base import Model, State
from .sampling import SamplingParams

DEFAULT_N_CTX = 4096
PROGRESS_EVERY = 0.2    # seconds: progress reports inside a prefill chunk, at most this often


class _Stopped(Exception):
    """A cancel seen between the layers of a prefill chunk."""


class SessionFileError(LecternError):
    """A saved session file is unreadable or belongs to another model."""


# --- the engine ---------------------------------------------------------------------------------
class Engine:
    """A model loaded once: weights (memory-mapped), tokenizer, chat template."""

    def __init__(self, model: Model):
        self.model = model
        self.gguf = model.gguf
        self.path = Path(model.gguf.path)
        self._template = None
        self._identity: dict | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, kv_type: str = DEFAULT_KV_TYPE) -> "Engine":
        """kv_type: the KV cache type of its sessions, "f16" (llama.cpp's default) or "f32"
        (inference.kv_cache); anything else is refused (KVTypeError) before the file is read."""
        from .models import load_model

        kv_type = check_kv_type(kv_type)
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p} (pass the path of a .gguf file)")
        return cls(load_model(p, kv_type=kv_type))

    @property
    def kv_type(self) -> str:
        """The KV cache type of new sessions ("f16" | "f32")."""
        return self.model.kv_type

    def kv_bytes_per_token(self) -> int:
        """Bytes the caches of a session grow by per token of context (model_info's estimate
        for this model and cache type)."""
        from .model_info import memory_estimate

        return memory_estimate(self.gguf, 1, self.kv_type)["kv_bytes_per_token"]

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def template(self):
        if self._template is None:
            from .chat_template import ChatTemplate

            self._template = ChatTemplate.from_gguf(self.gguf)
        return self._template

    @property
    def n_ctx_train(self) -> int:
        return self.model.n_ctx_train

    @property
    def identity(self) -> dict:
        """What a saved session must match: file size and a hash of metadata and tensor layout."""
        if self._identity is None:
            self._identity = model_identity(self.model)
        return self._identity

    def session(self, n_ctx: int | None = None) -> "Session":
        return Session(self, n_ctx)

    # --- text -> tokens -------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Raw text, special tokens parsed, BOS as the vocabulary asks."""
        return self._dedupe_bos(list(self.tokenizer.encode(text, add_bos=True, special=True)))

    def encode_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
        """Messages rendered with the model's chat template, then tokenized like llama.cpp."""
        text = self.template.render(list(messages), add_generation_prompt=add_generation_prompt)
        protect = _content_spans(text, messages, self.tokenizer)
        ids = self.tokenizer.encode(text, add_bos=True, special=True, protect=protect)
        return self._dedupe_bos(list(ids))

    def _dedupe_bos(self, ids: list[int]) -> list[int]:
        # A template that writes {{ bos_token }} itself plus a vocabulary that adds one: keep one.
        bos = getattr(self.tokenizer, "bos_id", None)
        if bos is not None and len(ids) >= 2 and ids[0] == ids[1] == bos:
            return ids[1:]
        return ids


def _content_spans(text: str, messages: Sequence[dict], tokenizer) -> list[tuple[int, int]]:
    """Where the rendered prompt holds message contents that contain a special token's text.

    Such a content (a pasted document quoting "<|im_end|>") must stay text, not end the turn:
    its span is tokenized without special parsing. Contents without special texts are left to
    the plain path, so ordinary prompts tokenize exactly as llama.cpp does."""
    spans, pos = [], 0
    for m in messages:
        content = m.get("content")
        if not isinstance(content, str) or not content:
            continue
        at = text.find(content, pos)
        if at < 0:                                  # the template changed it (trim): try that
            content = content.strip()
            at = text.find(content, pos) if content else -1
        if at < 0:
            continue
        pos = at + len(content)
        if tokenizer.specials.present(content, True):
            spans.append((at, pos))
    return spans


def model_identity(model: Model) -> dict:
    g = model.gguf
    h = hashlib.sha256()
    for key in sorted(g.metadata):
        v = g.metadata[key]
        h.update(key.encode())
        if isinstance(v, np.ndarray):
            h.update(str(v.dtype).encode() + str(v.shape).encode() + v.tobytes())
        elif isinstance(v, (list, tuple)):
            h.update(str(len(v)).encode() + "\x00".join(map(str, v)).encode("utf-8", "replace"))
        else:
            h.update(repr(v).encode("utf-8", "replace"))
    for name in sorted(g.tensors):
        t = g.tensors[name]
        h.update(f"{name}:{t.type_name}:{t.shape_ggml}".encode())
    return {"file": Path(g.path).name, "size": Path(g.path).stat().st_size, "sha256": h.hexdigest()}


def weight_bytes_per_token(model: Model) -> int:
    """Bytes of weights one decoded token reads: every dense tensor whole, expert stacks
    (ffn_*_exps) only the used experts' share, and one row of token_embd (all of it as well
    when it doubles as the output matrix)."""
    g = model.gguf
    n_expert = int(g.arch_get("expert_count", 0) or 0)
    n_used = int(g.arch_get("expert_used_count", 0) or 0)
    total = 0
    for name, t in g.tensors.items():
        if name == "token_embd.weight":
            rows = t.n_elements // t.shape_ggml[0]
            total += t.nbytes // rows + (0 if "output.weight" in g.tensors else t.nbytes)
        elif "_exps" in name and n_expert > 0:
            total += t.nbytes * n_used // n_expert
        else:
            total += t.nbytes
    return total


# --- results ------------------------------------------------------------------------------------
@dataclass
class PrefillResult:
    n_tokens: int        # length of the prompt
    n_reused: int        # prefix already in the state
    n_evaluated: int     # tokens run through the model now
    seconds: float
    cancelled: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.n_evaluated / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Snapshot:
    n_past: int
    arrays: dict[str, np.ndarray]     # copies of the non-KV (recurrent, ring) buffers
    logits: np.ndarray


# --- the session --------------------------------------------------------------------------------
class Session:
    """One conversation: the model state, the tokens it covers, and the next-token logits."""

    def __init__(self, engine: Engine, n_ctx: int | None = None):
        self.engine = engine
        self.model = engine.model
        n_ctx = int(n_ctx) if n_ctx else min(DEFAULT_N_CTX, engine.n_ctx_train)
        if n_ctx < 1:
            raise ValueError(f"context size must be at least 1 token, got {n_ctx}")
        self.n_ctx = n_ctx
        self.state: State = self.model.new_state(n_ctx)
        self.tokens: list[int] = []
        self.logits: np.ndarray | None = None   # [n_vocab] after the last token
        self._snap: _Snapshot | None = None

    @property
    def n_past(self) -> int:
        return self.state.n_past

    def reset(self) -> None:
        self.state = self.model.new_state(self.n_ctx)
        self.tokens, self.logits, self._snap = [], None, None

    # --- prefill ------------------------------------------------------------------------------
    def prefill(self, tokens: Sequence[int], progress: Progress | None = None,
                cancel: Cancel | None = None, chunk: int | None = None) -> PrefillResult:
        """Make the state cover exactly `tokens`, reusing what it already holds.

        Evaluates in chunks of `chunk` tokens (None: the model's prefill_chunk); progress(done,
        total) after each and, at most every PROGRESS_EVERY s, between a chunk's layers. cancel()
        is checked before each chunk and between its layers; a cancelled prefill leaves the state
        consistent at a chunk boundary, a cancelled chunk undone (a later prefill of the same
        tokens continues there).
        """
        t0 = time.perf_counter()
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ValueError("nothing to evaluate: the prompt has no tokens")
        self._check_ids(tokens)
        if len(tokens) > self.n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(tokens)} tokens but the context holds {self.n_ctx}; "
                "shorten the prompt or the conversation, or use a larger context size")
        if chunk is None:
            chunk = self.model.prefill_chunk
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1 token, got {chunk}")
        if tokens == self.tokens and self.logits is not None:
            return PrefillResult(len(tokens), len(tokens), 0, time.perf_counter() - t0)
        # keep at least one token to evaluate: its logits are the next-token distribution
        n_keep = self._resume(min(_common_prefix(self.tokens, tokens), len(tokens) - 1))
        total = len(tokens) - n_keep
        if progress:
            progress(0, total)
        for start in range(n_keep, len(tokens), chunk):
            if cancel is not None and cancel():
                return PrefillResult(len(tokens), n_keep, start - n_keep, time.perf_counter() - t0, True)
            part = tokens[start:start + chunk]
            try:
                logits = self._forward_chunk(part, start - n_keep, total, progress, cancel)
            except _Stopped:                      # cancelled between two layers: back at `start`
                return PrefillResult(len(tokens), n_keep, start - n_keep, time.perf_counter() - t0, True)
            self.tokens.extend(part)
            self.logits = np.asarray(logits[-1], np.float32)
            if progress:
                progress(start + len(part) - n_keep, total)
        self._take_snapshot()
        return PrefillResult(len(tokens), n_keep, total, time.perf_counter() - t0)

    def _forward_chunk(self, part: list[int], done: int, total: int, progress: Progress | None,
                       cancel: Cancel | None) -> np.ndarray:
        """One chunk's forward. Between its layers a cancel abandons it and the state goes back to
        before the chunk (raises _Stopped), and progress moves on (at most every PROGRESS_EVERY s),
        so a Stop or a progress bar never waits for a whole chunk: chunks can be as long as
        the kernels want them (a long prefill runs several times faster in 512-token chunks
        than in 64-token ones)."""
        st, ids = self.state, np.asarray(part, np.int64)
        if cancel is None and progress is None:
            with self._recovering():
                return self.model.forward(ids, st, last_only=True)
        point = st.undo_point() if cancel is not None else None
        shown, layers = [time.perf_counter()], [0, 0]       # last report; layers done, n_layer

        def poll(inside: float = 0.0) -> None:
            if cancel is not None and cancel():
                raise _Stopped
            k, n = layers
            if progress is not None and n and time.perf_counter() - shown[0] >= PROGRESS_EVERY:
                shown[0] = time.perf_counter()
                progress(done + int(len(part) * (k + inside) / n), total)

        def on_layer(k: int, n: int) -> None:
            layers[:] = k, n
            if k < n:
                poll()

        with self._recovering(point), interrupt.watching(interrupt.Hooks(on_layer, poll)):
            return self.model.forward(ids, st, last_only=True)

    def _resume(self, n: int) -> int:
        """Set the state back to hold tokens[:m] for the largest m <= n it can; return m."""
        st = self.state
        if st.can_rewind(n):
            if n != st.n_past:
                st.rewind(n)
                self.logits = None
            if self._snap is not None and self._snap.n_past > n:
                self._snap = None
            del self.tokens[n:]
            return n
        return self._back_to_snapshot(n)

    def _back_to_snapshot(self, n: int) -> int:
        """Set the state back to the snapshot of the last prompt if it holds at most n tokens,
        else start over; return the tokens it then holds."""
        snap = self._snap
        if snap is not None and snap.n_past <= n:
            self.state.undo((snap.n_past, snap.arrays))     # the snapshot is an undo point
            del self.tokens[snap.n_past:]
            self.logits = snap.logits.copy()
            return snap.n_past
        self.reset()
        return 0

    @contextmanager
    def _recovering(self, point=None):
        """Around a forward: if it fails half-way (a Stop, an error, Ctrl+C), nothing half-written
        stays. With an undo point (State.undo_point) the state goes back to it. Without one, the
        buffers a forward overwrites in place (recurrent states, sliding-window rings) may hold
        part of a token, so the session goes back to the snapshot of the last prompt, or starts
        over, and a later prefill recomputes the rest; position-indexed caches are only written
        past n_past, so a state made of them alone only goes back to its n_past."""
        n0 = self.state.n_past
        try:
            yield
        except BaseException:
            st = self.state
            if point is not None:
                st.undo(point)
            elif not st.in_place():
                st.n_past = min(st.n_past, n0)
            else:
                self._back_to_snapshot(n0)
            raise

    def _take_snapshot(self) -> None:
        st = self.state
        parts = st.undo_point()[1]          # the parts a later forward overwrites in place
        self._snap = _Snapshot(st.n_past, parts, self.logits.copy()) if parts else None

    def eval_token(self, token: int) -> np.ndarray:
        """Append one token (decode step); returns and keeps the logits after it."""
        if self.state.n_past >= self.n_ctx:
            raise ContextOverflowError(
                f"the context is full ({self.n_ctx} tokens); start a new conversation or use a "
                "larger context size")
        self._check_ids([token])
        with self._recovering():
            logits = self.model.forward(np.asarray([token], np.int64), self.state, last_only=True)
        self.tokens.append(int(token))
        self.logits = np.asarray(logits[-1], np.float32)
        return self.logits

    def _check_ids(self, ids: Sequence[int]) -> None:
        n_vocab = self.model.n_vocab
        bad = [t for t in ids if not 0 <= t < n_vocab]
        if bad:
            raise TokenizerError(f"token id {bad[0]} is outside the vocabulary [0, {n_vocab})")

    # --- generation ---------------------------------------------------------------------------
    def generate(self, prompt, params: SamplingParams | None = None,
                 on_token: Callable[[str], None] | None = None, progress: Progress | None = None,
                 cancel: Cancel | None = None, chunk: int | None = None) -> "Generation":
        """prompt: token ids, chat messages ([{"role", "content"}]) or raw text.

        Returns a Generation: iterate it for the text pieces as they are produced (or call
        .run()); its .text, .tokens and .stats are filled as it goes.
        """
        if isinstance(prompt, str):
            tokens = self.engine.encode_text(prompt)
        elif len(prompt) and isinstance(prompt[0], dict):
            tokens = self.engine.encode_chat(prompt)
        else:
            tokens = [int(t) for t in prompt]
        return Generation(self, tokens, params or SamplingParams(), on_token, progress, cancel, chunk)

    def chat(self, messages: Sequence[dict], params: SamplingParams | None = None, **kw) -> "Generation":
        """Render the conversation with the chat template and answer its last message."""
        return Generation(self, self.engine.encode_chat(messages), params or SamplingParams(), **kw)

    # --- save / restore -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        from .session_file import save_session

        save_session(self, Path(path))

    @classmethod
    def restore(cls, engine: Engine, path: str | os.PathLike, n_ctx: int | None = None) -> "Session":
        """A saved session; n_ctx: another context size to hold it (at least its tokens)."""
        from .session_file import load_session

        return load_session(cls, engine, Path(path), n_ctx)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n
