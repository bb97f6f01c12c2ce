"""OpenAI-compatible HTTP server for one loaded Engine (stdlib only, no Qt).

    from inference.server import Server
    srv = Server(engine, host="127.0.0.1", port=0, api_key=None).start()
    srv.url      # "http://127.0.0.1:PORT"
    srv.stats    # counters: requests, completed, cancelled, refused_busy, failed, queued, busy, ...
    srv.stop()

Endpoints: GET /health, GET /v1/models, POST /v1/chat/completions, POST /v1/completions
(streaming as server-sent events or one JSON answer). One generation at a time; waiting
requests are queued up to queue_size, beyond that 503 with Retry-After.
"""
from .app import Server
from .schema import ApiError

__all__ = ["Server", "ApiError"]
