"""The HTTP side: ThreadingHTTPServer, routes, authentication, SSE streaming, disconnect detection.

Routes: GET /health, GET /v1/models, POST /v1/chat/completions, POST /v1/completions.
Handlers validate and tokenize in their own thread, then hand the work to the single
generation Worker; they relay its events as one JSON answer or as server-sent events
(`data: {...}\\n\\n` ... `data: [DONE]\\n\\n`). A client that disconnects (a failed write, or the
socket reading EOF while we wait) sets the job's cancel flag.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import queue
import select
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import LecternError
from .schema import ApiError, Request, parse_chat, parse_completion, parse_json
from .worker import Job, QueueFull, Worker

MAX_BODY = 1 << 20          # bytes; larger bodies get 413
RETRY_AFTER = 2             # seconds suggested to a client refused with 503
FINISH = {"eog": "stop", "stop": "stop", "length": "length", "context": "length",
          "cancelled": "stop"}


class Server:
    """An OpenAI-compatible server for one loaded Engine.

    Server(engine, host="127.0.0.1", port=8080, api_key=None).start() -> serves in background
    threads; .url; .stats (dict); .stop(). Port 0 picks a free port. Binding to anything but a
    loopback address requires an api_key (LecternError otherwise). A Server runs once: after
    stop(), make a new one. `engine_lock`: a lock the generation worker holds during each
    request; pass the one you hold while generating with the same Engine elsewhere (the app).
    """

    def __init__(self, engine, host: str = "127.0.0.1", port: int = 8080, api_key: str | None = None,
                 n_ctx: int | None = None, queue_size: int = 8, max_body: int = MAX_BODY,
                 model_id: str | None = None, log=None, engine_lock=None):
        if not api_key and not _is_loopback(host):
            raise LecternError(f"binding to {host} exposes the model to the network: give an API "
                               "key (--api-key) or bind to 127.0.0.1")
        self.engine, self.host, self.api_key, self.max_body = engine, host, api_key or None, max_body
        self.model_id = model_id or engine.path.name
        self.worker = Worker(engine, n_ctx, queue_size, log, engine_lock)
        self.created = int(time.time())
        self._requested_port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        if self._httpd is not None:
            return self._httpd.server_address[1]
        return getattr(self, "_port_after", self._requested_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def stats(self) -> dict:
        d = self.worker.stats.as_dict()
        d["queued"] = self.worker.queued
        return d

    def start(self) -> "Server":
        if self._httpd is not None:
            return self
        if self._stopped:
            raise LecternError("this server was stopped; create a new Server to serve again")
        handler = type("Handler", (Handler,), {"server_ref": self})
        cls = _V6Server if ":" in self.host else ThreadingHTTPServer
        try:
            httpd = cls((self.host, self._requested_port), handler)
        except OSError as e:
            raise LecternError(f"cannot listen on {self.host}:{self._requested_port}: {e.strerror or e}"
                               " (is another server using the port? try --port 0)") from None
        httpd.daemon_threads = True
        self._httpd = httpd
        self.worker.start()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="lectern-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopped = True
        self._port_after = httpd.server_address[1]
        httpd.shutdown()
        httpd.server_close()
        self.worker.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ClientGone(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    server_ref: Server
    protocol_version = "HTTP/1.1"
    server_version = "Lectern"
    timeout = 300              # seconds a silent or stalled connection may hold its thread

    def log_message(self, fmt, *args):   # quiet: the worker logs what matters
        pass

    # --- plumbing ---------------------------------------------------------------------------------
    def send_json(self, status: int, obj, headers: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_error_body(self, e: ApiError) -> None:
        if self.command == "POST" and not getattr(self, "_body_read", False):
            self.close_connection = True       # an unread body would be taken for the next request
        self.send_json(e.status, e.body(), e.headers)

    def client_gone(self) -> bool:
        """True when the peer closed its side (readable with nothing to read)."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def authorized(self) -> bool:
        key = self.server_ref.api_key
        if key is None:
            return True
        got = self.headers.get("Authorization", "")
        token = got[7:].strip() if got[:7].lower() == "bearer " else ""
        return hmac.compare_digest(token.encode(), key.encode())

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            raise ApiError(411, "send the body with a Content-Length (chunked bodies are not accepted)",
                           code="length_required")
        n = self.headers.get("Content-Length")
        if n is None or not n.strip().isdigit():
            raise ApiError(411, "a Content-Length header is required", code="length_required")
        n = int(n)
        if n > self.server_ref.max_body:
            raise ApiError(413, f"the request body is {n} bytes; the limit is {self.server_ref.max_body}",
                           code="body_too_large")
        data = self.rfile.read(n)
        self._body_read = True
        return data

    # --- routes -----------------------------------------------------------------------------------
    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            srv = self.server_ref
            return self.send_json(200, {"status": "ok", "model": srv.model_id, "n_ctx": srv.worker.n_ctx,
                                        "stats": srv.stats})
        if path.startswith("/v1/") and not self.authorized():
            return self.send_error_body(_unauthorized())
        if path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [self._model_card()]})
        if path == f"/v1/models/{self.server_ref.model_id}":
            return self.send_json(200, self._model_card())
        if path in ("/v1/chat/completions", "/v1/completions"):
            return self.send_error_body(ApiError(405, f"use POST for {path}", code="method_not_allowed",
                                                 headers={"Allow": "POST"}))
        self.send_error_body(ApiError(404, f"no such endpoint: GET {path}", code="not_found"))

    def do_POST(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        self._body_read = False
        parse = {"/v1/chat/completions": parse_chat, "/v1/completions": parse_completion}.get(path)
        try:
            if parse is None:
                raise ApiError(404, f"no such endpoint: POST {path}", code="not_found")
            if not self.authorized():
                raise _unauthorized()
            req = parse(parse_json(self.read_body()))
            self.answer(req)
        except ApiError as e:
            self.send_error_body(e)
        except ClientGone:
            self.close_connection = True

    def _model_card(self) -> dict:
        srv = self.server_ref
        return {"id": srv.model_id, "object": "model", "created": srv.created, "owned_by": "lectern",
                "n_ctx": srv.worker.n_ctx}

    # --- answering --------------------------------------------------------------------------------
    def tokens_for(self, req: Request) -> list[int]:
        eng = self.server_ref.engine
        try:
            if req.kind == "chat":
                return eng.encode_chat(req.messages)
            if isinstance(req.prompt, str):
                return eng.encode_text(req.prompt)
        except LecternError as e:
            raise ApiError(400, f"cannot turn the prompt into tokens: {e}", code="bad_prompt") from None
        n_vocab = eng.model.n_vocab
        bad = [t for t in req.prompt if not 0 <= t < n_vocab]
        if bad:
            raise ApiError(400, f"token id {bad[0]} is outside the vocabulary [0, {n_vocab})",
                           param="prompt", code="invalid_value")
        return list(req.prompt)

    def answer(self, req: Request) -> None:
        srv = self.server_ref
        tokens = self.tokens_for(req)
        n, m, n_ctx = len(tokens), req.params.max_tokens, srv.worker.n_ctx
        if n + (m or 1) > n_ctx:
            raise ApiError(400, f"the prompt is {n} tokens and the answer may take {m or 1} more: "
                                f"{n + (m or 1)} exceed the context size of {n_ctx}",
                           param="max_tokens" if m else "messages", code="context_length_exceeded")
        prefix = "chatcmpl" if req.kind == "chat" else "cmpl"
        job = Job(f"{prefix}-{uuid.uuid4().hex[:24]}", tokens, req.params)
        try:
            srv.worker.submit(job)
        except QueueFull:
            raise ApiError(503, "the server is busy: too many requests are waiting; retry shortly",
                           "server_error", code="server_busy",
                           headers={"Retry-After": RETRY_AFTER}) from None
        try:
            if req.stream:
                self.stream(req, job)
            else:
                self.whole(req, job)
        except (BrokenPipeError, ConnectionResetError, ClientGone):
            job.cancel.set()
            srv.worker.stats.disconnected += 1
            self.close_connection = True

    def events(self, job: Job):
        """The worker's events for this job; notices a client that left while we wait."""
        last_check = time.monotonic()
        while True:
            try:
                ev = job.events.get(timeout=0.1)
            except queue.Empty:
                ev = None
            now = time.monotonic()
            if now - last_check >= 0.1:      # pieces may flow without pause: check by the clock
                last_check = now
                if self.client_gone():
                    job.cancel.set()
                    raise ClientGone
            if ev is None:
                continue
            yield ev
            if ev[0] != "piece":
                return

    def whole(self, req: Request, job: Job) -> None:
        text = []
        for kind, val in self.events(job):
            if kind == "piece":
                text.append(val)
            elif kind == "error":
                raise val
            else:
                gen = val
        body = self._envelope(req, job, "chat.completion" if req.kind == "chat" else "text_completion")
        choice = {"index": 0, "finish_reason": FINISH.get(gen.stats.stop_reason, "stop"), "logprobs": None}
        if req.kind == "chat":
            choice["message"] = {"role": "assistant", "content": "".join(text)}
        else:
            choice["text"] = "".join(text)
        body["choices"] = [choice]
        body["usage"] = _usage(gen)
        self.send_json(200, body)

    def stream(self, req: Request, job: Job) -> None:
        chat = req.kind == "chat"
        obj = "chat.completion.chunk" if chat else "text_completion"
        first = None
        for kind, val in self.events(job):   # wait for the first event before the 200 status
            first = (kind, val)
            break
        if first[0] == "error":
            raise first[1]
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def chunk(delta=None, text=None, finish=None):
            body = self._envelope(req, job, obj)
            c = {"index": 0, "finish_reason": finish, "logprobs": None}
            if chat:
                c["delta"] = delta if delta is not None else {}
            else:
                c["text"] = text or ""
            body["choices"] = [c]
            return body

        if chat:
            self.sse(chunk(delta={"role": "assistant", "content": ""}))
        gen = None
        pending = [first]
        for ev in _chain(pending, self.events(job) if first[0] == "piece" else ()):
            kind, val = ev
            if kind == "piece":
                self.sse(chunk(delta={"content": val}, text=val))
            elif kind == "error":
                self.sse(val.body())
                break
            else:
                gen = val
        if gen is not None:
            self.sse(chunk(finish=FINISH.get(gen.stats.stop_reason, "stop")))
            if req.include_usage:
                tail = self._envelope(req, job, obj)
                tail["choices"], tail["usage"] = [], _usage(gen)
                self.sse(tail)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def sse(self, obj) -> None:
        self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        self.wfile.flush()

    def _envelope(self, req: Request, job: Job, obj: str) -> dict:
        return {"id": job.id, "object": obj, "created": int(time.time()),
                "model": self.server_ref.model_id}


def _chain(first, rest):
    yield from first
    yield from rest


def _usage(gen) -> dict:
    p, c = gen.stats.prompt_tokens, gen.stats.generated_tokens
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _unauthorized() -> ApiError:
    return ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                    code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
