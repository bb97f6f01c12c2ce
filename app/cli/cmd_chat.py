"""`lectern chat`: an interactive conversation on stdin/stdout with the model's chat template.

The session keeps its state between turns, so each turn only evaluates the new tokens.
Ctrl-C while the model answers stops that answer; Ctrl-C or Ctrl-D at the prompt quits.
With --attach the documents are read into the context first (chat_documents.py); --ask asks one
question and exits.
"""
from __future__ import annotations

import signal
import sys

from .engine_args import add_model_args, add_sampling_args, load_engine, sampling_params

HELP = "commands: /reset (forget the conversation), /exit (quit); Ctrl-C stops an answer"


def register(sub) -> None:
    p = sub.add_parser("chat", help="chat with a model in the terminal",
                       description="Interactive chat. " + HELP)
    add_model_args(p)
    add_sampling_args(p, max_tokens=None)
    p.add_argument("--system", metavar="TEXT", help="system message")
    p.add_argument("--stats", action="store_true", help="print timings to stderr after each answer")
    p.add_argument("--attach", action="append", nargs="+", default=[], metavar="PATH",
                   help="documents or folders to read into the context before the questions "
                        "(read once: later runs on the same documents reuse the saved state)")
    p.add_argument("--ask", metavar="QUESTION",
                   help="ask one question (about the attached documents), print the answer, exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from inference import ContextOverflowError

    params = sampling_params(args)
    if args.attach or args.ask is not None:
        from .chat_documents import run_documents

        return run_documents(args, params)
    engine = load_engine(args)
    session = engine.session(args.ctx_size or None)
    start = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(start)
    tty = sys.stdin.isatty()
    print(f"lectern chat: {engine.path.name} ({session.n_ctx} tokens of context). {HELP}",
          file=sys.stderr)
    while True:
        try:
            line = input("> " if tty else "")
        except (EOFError, KeyboardInterrupt):
            if tty:
                print(file=sys.stderr)
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            messages = list(start)
            print("(conversation reset)", file=sys.stderr)
            continue
        messages.append({"role": "user", "content": text})
        try:
            answer, stats = _answer(session, messages, params)
        except ContextOverflowError as e:
            messages.pop()
            print(f"lectern: {e}. Type /reset to start over.", file=sys.stderr)
            continue
        if stats.stop_reason == "cancelled":
            print("(stopped)", file=sys.stderr)
            if not answer:          # stopped before a word was said: forget the question too
                messages.pop()
                continue
        messages.append({"role": "assistant", "content": answer})
        if args.stats:
            print(stats.summary(), file=sys.stderr)


def _answer(session, messages, params):
    """Stream one answer; Ctrl-C (SIGINT) stops it at the next token and keeps what was said."""
    stop = []
    previous = signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    try:
        gen = session.chat(messages, params, cancel=lambda: bool(stop))
        for piece in gen:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        return gen.text, gen.stats
    finally:
        signal.signal(signal.SIGINT, previous)
