"""`lectern serve`: an OpenAI-compatible HTTP server for one model (until Ctrl-C).

Prints "Lectern server listening on URL" once it accepts connections (port 0: a free port).
"""
from __future__ import annotations

import signal
import sys
import threading

from .engine_args import add_model_args, load_engine


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a model over an OpenAI-compatible HTTP API",
        description="Serve /v1/models, /v1/chat/completions, /v1/completions and /health. "
                    "Binds 127.0.0.1 unless told otherwise; any other address needs --api-key.")
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (0 = any free port; default 8080)")
    p.add_argument("--api-key", metavar="KEY", default=None,
                   help="require 'Authorization: Bearer KEY' on /v1/ requests")
    p.add_argument("--queue-size", type=int, default=8, metavar="N",
                   help="requests that may wait while one is generated (more get 503; default 8)")
    p.set_defaults(func=run)


def run(args) -> int:
    from inference import LecternError
    from inference.server import Server

    if not 0 <= args.port <= 65535:
        raise LecternError(f"--port must be between 0 and 65535, got {args.port}")
    if args.queue_size < 1:
        raise LecternError(f"--queue-size must be at least 1, got {args.queue_size}")
    engine = load_engine(args)
    srv = Server(engine, args.host, args.port, args.api_key, n_ctx=args.ctx_size or None,
                 queue_size=args.queue_size).start()
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(f"Lectern server listening on {srv.url}", flush=True)
    print(f"lectern serve: {engine.path.name}, {srv.worker.n_ctx} tokens of context; Ctrl-C stops",
          file=sys.stderr, flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        srv.stop()
    return 0
