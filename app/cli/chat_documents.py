"""`lectern chat --attach PATH... [--ask QUESTION]`: questions about whole documents.

Steps: extract the files (unreadable ones reported and skipped), lay out the prompt, check that
it fits (context and memory; the remedies and exit code 1 if not), read it with a progress line
on stderr, then answer. Reading goes through the state store in cache_dir()/states, so the same
documents are read once: a second --ask restores the saved state ("reused N tokens").
Without -c the context grows to what the documents need (up to the model's training context).
Ctrl-C while reading stops at the last checkpoint; the next run resumes from there.
"""
from __future__ import annotations

import signal
import sys
import time

ANSWER_ROOM = 512      # tokens kept free for the answer when -n is not given


def run_documents(args, params) -> int:
    from inference.documents import StateStore, available_ram, chat_tokens, extract_paths, fit_check
    from inference.engine import DEFAULT_N_CTX
    from inference.paths import cache_dir

    from .engine_args import load_engine

    docs, errors = extract_paths([p for group in args.attach for p in group])
    for path, err in errors:
        print(f"lectern: not attached: {err}", file=sys.stderr)
    if args.attach and not docs:
        print("lectern: error: no document could be read; see the messages above", file=sys.stderr)
        return 1
    engine = load_engine(args)
    question = args.ask or ""
    tokens, keep = chat_tokens(engine, question, docs, args.system)
    if args.ask is None and keep:          # interactive: read the documents before any question
        tokens = tokens[:keep[-1]]
    room = args.max_tokens if args.max_tokens and args.max_tokens > 0 else ANSWER_ROOM
    need = len(tokens) + room
    n_ctx = args.ctx_size or min(max(DEFAULT_N_CTX, need), engine.n_ctx_train)
    report = fit_check(engine, need, n_ctx, available_ram())
    names = f"{len(docs)} document(s) ({', '.join(d.name for d in docs)}): " if docs else ""
    print(f"lectern: {names}{len(tokens):,} prompt tokens + {room} for the answer. "
          f"{report.message}", file=sys.stderr)
    if not report.fits:
        return 1
    session = engine.session(n_ctx)
    store = StateStore(cache_dir() / "states")
    if not _read(session, tokens, store, keep, args):
        return 130
    if args.ask is None:
        return _interactive(session, docs, params, args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    from inference.documents import build_prompt

    messages.append({"role": "user", "content": build_prompt(args.ask, docs)})
    from .cmd_chat import _answer

    _answer_text, stats = _answer(session, messages, params)
    if args.stats:
        print(stats.summary(), file=sys.stderr)
    return 0


def _read(session, tokens, store, keep, args) -> bool:
    """Read the prompt with a progress line; False if Ctrl-C stopped it."""
    from inference.documents import read_tokens

    stop: list[bool] = []
    line = _ProgressLine()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    try:
        r = read_tokens(session, tokens, store, progress=line, cancel=lambda: bool(stop),
                        keep_at=keep)
    finally:
        signal.signal(signal.SIGINT, previous)
        line.finish()
    if r.n_reused:
        print(f"lectern: reused {r.n_reused:,} tokens (read before); read {r.n_evaluated:,} new",
              file=sys.stderr)
    if r.cancelled:
        print(f"lectern: stopped after {session.n_past:,} of {len(tokens):,} tokens; the next run "
              "resumes from the last checkpoint", file=sys.stderr)
        return False
    return True


class _ProgressLine:
    """progress(done, total) -> "reading: done/total tokens, N tok/s, M s left" on stderr."""

    def __init__(self, every: float = 0.25):
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.every = every
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        rate = done / (now - self.t0) if now > self.t0 else 0.0
        left = f", {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
        sys.stderr.write(f"\rreading: {done:,}/{total:,} tokens, {rate:.0f} tok/s{left}   ")
        sys.stderr.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _interactive(session, docs, params, args) -> int:
    from inference import ContextOverflowError
    from inference.documents import build_prompt

    from .cmd_chat import _answer

    start = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(start)
    tty = sys.stdin.isatty()
    print("lectern: documents read; ask your questions (/exit to quit)", file=sys.stderr)
    while True:
        try:
            text = input("> " if tty else "").strip()
        except (EOFError, KeyboardInterrupt):
            return 0
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        first = len(messages) == len(start)
        messages.append({"role": "user", "content": build_prompt(text, docs) if first else text})
        try:
            answer, stats = _answer(session, messages, params)
        except ContextOverflowError as e:
            messages.pop()
            print(f"lectern: {e}", file=sys.stderr)
            continue
        messages.append({"role": "assistant", "content": answer})
        if args.stats:
            print(stats.summary(), file=sys.stderr)
