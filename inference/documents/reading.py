"""Reading a long prompt once: resume from saved states, checkpoint while reading.

read_tokens(session, tokens, store) makes the session hold `tokens` (like Session.prefill) but
1. starts from the longest state in the store whose tokens are a prefix of `tokens` when that
   is longer than what the session itself can reuse (a follow-up after a restart, a new
   conversation about a read document, a grown document, a read that was interrupted);
2. evaluates the rest in segments ending at every multiple of `checkpoint_every`, at each
   `keep_at` position (the ends of documents) and at the end, saving the state after each
   (the end too: after a restart the conversation continues from it);
   a checkpoint replaces the previous one on the same tokens, so the store holds one
   resumable checkpoint per read plus the kept states.
A cancel (seen between layers) leaves the state at a chunk boundary with the last checkpoint on disk; calling
read_tokens again continues from whichever is longer.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from typing import Sequence

from ..errors import ContextOverflowError
from ..engine import PrefillResult, Session, SessionFileError, _common_prefix
from ..generation import Cancel, Progress
from .state_store import StateStore

log = logging.getLogger(__name__)
STORE_ERRORS = (OSError, sqlite3.Error)   # a full disk or locked index: read on without saving


def reusable(session: Session, tokens: Sequence[int]) -> int:
    """How many of `tokens` the session can keep without re-reading (a lower bound)."""
    n = _common_prefix(session.tokens, tokens)
    if session.state.can_rewind(n):
        return n
    snap = session._snap
    return snap.n_past if snap is not None and snap.n_past <= n else 0


def restore_best(session: Session, tokens: Sequence[int], store: StateStore) -> int:
    """Load the store's longest usable prefix of `tokens` into `session` if it beats what the
    session holds; damaged states are skipped. Returns the tokens the session now reuses."""
    have = reusable(session, tokens)
    for entry in store.prefixes(session.engine, tokens):
        if entry.n_tokens <= have or entry.n_tokens > session.n_ctx:
            if entry.n_tokens <= have:
                break
            continue
        try:
            loaded = store.restore(session.engine, entry, session.n_ctx)
        except SessionFileError:
            continue
        _adopt(session, loaded)
        return entry.n_tokens
    return have


def _adopt(session: Session, loaded: Session) -> None:
    session.state, session.tokens, session.logits = loaded.state, loaded.tokens, loaded.logits
    session._snap = loaded._snap


def checkpoints(n_start: int, n_total: int, every: int, keep_at: Sequence[int] = (),
                min_gap: int | None = None) -> list[int]:
    """Positions in (n_start, n_total] to save at: multiples of `every`, the keep positions
    (a keep position within min_gap, default every // 4, after a kept one is left out: the
    earlier state serves both), and the end."""
    gap = every // 4 if min_gap is None else min_gap
    kept: list[int] = []
    for k in sorted({k for k in keep_at if n_start < k < n_total}):
        if not kept or k - kept[-1] >= gap:
            kept.append(k)
    marks = set(range((n_start // every + 1) * every, n_total, every)) if every > 0 else set()
    return sorted(marks | set(kept) | {n_total})


def read_tokens(session: Session, tokens: Sequence[int], store: StateStore | None,
                checkpoint_every: int = 4096, progress: Progress | None = None,
                cancel: Cancel | None = None, keep_at: Sequence[int] = (),
                chunk: int | None = None) -> PrefillResult:
    """Make the session hold `tokens`, reusing and saving states; see the module docstring.
    progress(done, total) counts the tokens evaluated now against those left to evaluate."""
    t0 = time.perf_counter()
    tokens = [int(t) for t in tokens]
    if not tokens:
        raise ValueError("nothing to evaluate: the prompt has no tokens")
    if len(tokens) > session.n_ctx:
        raise ContextOverflowError(
            f"the prompt is {len(tokens):,} tokens but the context holds {session.n_ctx:,}; raise "
            "the context size, use a model with a longer context, or trim the documents")
    n_reused = reusable(session, tokens)
    if store is not None:
        try:
            n_reused = restore_best(session, tokens, store)
        except STORE_ERRORS as e:
            log.warning("state store unusable, reading without it: %s", e)
            store = None
    if tokens == session.tokens and session.logits is not None:
        return PrefillResult(len(tokens), len(tokens), 0, time.perf_counter() - t0)
    n_reused = min(n_reused, len(tokens) - 1)
    total = len(tokens) - n_reused
    keep = set(keep_at)
    done = 0
    first = True
    for end in checkpoints(n_reused, len(tokens), checkpoint_every, keep_at):
        base = done

        def seg_progress(d, _t, base=base):
            if progress:
                progress(base + d, total)

        r = session.prefill(tokens[:end], seg_progress, cancel, chunk)
        if first:                     # what the session really kept (a rewind may keep less)
            n_reused, first = r.n_reused, False
        done += r.n_evaluated
        if r.cancelled:
            return PrefillResult(len(tokens), n_reused, done, time.perf_counter() - t0, True)
        if store is not None:
            kind = "final" if end == len(tokens) else "keep" if end in keep else "checkpoint"
            try:
                store.save(session, kind)
                store.supersede(session.engine, tokens, end)
            except STORE_ERRORS as e:
                log.warning("could not save a checkpoint, reading on without: %s", e)
                store = None
    return PrefillResult(len(tokens), n_reused, done, time.perf_counter() - t0)
