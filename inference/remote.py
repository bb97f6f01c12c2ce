"""A client for a remote OpenAI-compatible endpoint, shaped like the local engine's generation.

    backend = RemoteBackend("http://host:8080", api_key=None, timeout=60)
    backend.models()                       -> ["model-id", ...]          (GET /v1/models)
    gen = backend.chat(messages, params, model=None, cancel=None, on_token=None)
    for piece in gen: ...                  # text pieces as the server streams them
    gen.text, gen.stats                    # like inference.generation.Generation
    backend.complete(prompt, params, ...)  # the same for /v1/completions (text or token ids)

`gen` behaves like a local `Generation`: iterate it once (or call .run()); .text grows as it
goes; .stats is a GenerationStats with prompt_tokens / generated_tokens from the server's usage
counts (when it sends them), time_to_first_token, decode_seconds, and stop_reason in the
engine's vocabulary: "eog" (the model ended), "length", "stop" (never distinguishable from eog
remotely: OpenAI reports both as "stop", we report "eog"), "cancelled" (cancel() returned True:
the connection is closed, which makes a well-behaved server stop generating). cancel() is
consulted as events arrive; to stop from another thread while nothing arrives (a long prompt
being evaluated), call gen.abort(): it shuts the connection down at once. .tokens stays
empty (the API does not send token ids).

SamplingParams map to OpenAI fields (temperature, top_p, max_tokens, stop, seed, frequency and
presence penalties) plus llama.cpp's extensions top_k, min_p, repeat_penalty, repeat_last_n when
they differ from "off" (servers that reject unknown fields: pass openai_only=True).

Failures raise RemoteError subclasses (all LecternError): RemoteConnectionError (cannot reach the
host), RemoteTimeoutError (no data for `timeout` seconds), RemoteHTTPError (.status, the server's
message from an OpenAI error body), RemoteProtocolError (an answer that is not what the API says).
Stdlib only (urllib).
"""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Callable, Iterator, Sequence

from .errors import LecternError
from .generation import GenerationStats
from .sampling import SamplingParams

FINISH = {"stop": "eog", "length": "length", "content_filter": "eog", "tool_calls": "eog"}


class RemoteError(LecternError):
    """The remote endpoint could not answer."""


class RemoteConnectionError(RemoteError):
    pass


class RemoteTimeoutError(RemoteError):
    pass


class RemoteHTTPError(RemoteError):
    def __init__(self, status: int, message: str, body: dict | None = None):
        super().__init__(message)
        self.status, self.body = status, body


class RemoteProtocolError(RemoteError):
    pass


class RemoteBackend:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0,
                 openai_only: bool = False):
        url = base_url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise RemoteError(f"the endpoint URL must start with http:// or https://, got {base_url!r}")
        self.base = url if url.endswith("/v1") else url + "/v1"
        self.api_key, self.timeout, self.openai_only = api_key, timeout, openai_only

    # --- requests ---------------------------------------------------------------------------------
    def _open(self, method: str, path: str, body: dict | None = None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        where = f"{method} {self.base + path}"
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise _http_error(e, where) from None
        except (socket.timeout, TimeoutError) as e:
            raise RemoteTimeoutError(f"{where}: no answer within {self.timeout:g} s") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise RemoteTimeoutError(f"{where}: no answer within {self.timeout:g} s") from e
            raise RemoteConnectionError(f"{where}: cannot connect ({e.reason}); is the server "
                                        "running and the URL right?") from e
        except (ConnectionError, OSError) as e:
            raise RemoteConnectionError(f"{where}: connection failed ({e})") from e

    def models(self) -> list[str]:
        with self._open("GET", "/models") as r:
            body = _read_json(r, "GET /models")
        try:
            return [m["id"] for m in body["data"]]
        except (KeyError, TypeError):
            raise RemoteProtocolError(f"GET /models: unexpected answer {str(body)[:200]}") from None

    def chat(self, messages: Sequence[dict], params: SamplingParams | None = None,
             model: str | None = None, cancel: Callable[[], bool] | None = None,
             on_token: Callable[[str], None] | None = None) -> "RemoteGeneration":
        body = {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
        return RemoteGeneration(self, "/chat/completions", body, params or SamplingParams(), model,
                                cancel, on_token)

    def complete(self, prompt: str | Sequence[int], params: SamplingParams | None = None,
                 model: str | None = None, cancel: Callable[[], bool] | None = None,
                 on_token: Callable[[str], None] | None = None) -> "RemoteGeneration":
        p = prompt if isinstance(prompt, str) else [int(t) for t in prompt]
        return RemoteGeneration(self, "/completions", {"prompt": p}, params or SamplingParams(), model,
                                cancel, on_token)

    def request_fields(self, p: SamplingParams) -> dict:
        out = {"temperature": max(p.temperature, 0.0), "top_p": p.top_p}
        if p.max_tokens is not None:
            out["max_tokens"] = p.max_tokens
        if p.stop:
            out["stop"] = list(p.stop)
        if p.seed is not None:
            out["seed"] = p.seed
        if p.frequency_penalty:
            out["frequency_penalty"] = p.frequency_penalty
        if p.presence_penalty:
            out["presence_penalty"] = p.presence_penalty
        if not self.openai_only:
            out.update(top_k=p.top_k, min_p=p.min_p)
            if p.repeat_penalty != 1.0:
                out.update(repeat_penalty=p.repeat_penalty, repeat_last_n=p.repeat_last_n)
        return out


class RemoteGeneration:
    """One streamed answer from a remote endpoint (see the module docstring)."""

    def __init__(self, backend: RemoteBackend, path: str, body: dict, params: SamplingParams,
                 model: str | None, cancel, on_token):
        self.backend, self.path, self.params = backend, path, params
        self.body = dict(body, **backend.request_fields(params), stream=True,
                         stream_options={"include_usage": True})
        if model:
            self.body["model"] = model
        elif "model" not in self.body:
            self.body["model"] = "default"
        self.cancel, self.on_token = cancel, on_token
        self.text = ""
        self.tokens: list[int] = []
        self.stats = GenerationStats()
        self._started = False
        self._aborted = False
        self._resp = None

    def abort(self) -> None:
        """Stop now, from any thread: the iteration ends with stop_reason "cancelled"."""
        self._aborted = True
        resp = self._resp
        sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def run(self) -> "RemoteGeneration":
        for _ in self:
            pass
        return self

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a RemoteGeneration runs once; call chat() again")
        self._started = True
        st = self.stats
        t0 = time.perf_counter()
        where = f"POST {self.backend.base}{self.path}"
        if self._aborted:
            st.stop_reason = "cancelled"
            return
        resp = self._resp = self.backend._open("POST", self.path, self.body)
        if self._aborted:                       # abort() came while connecting
            resp.close()
            st.stop_reason = "cancelled"
            return
        try:
            for event in _sse_events(resp, where, self.backend.timeout):
                if self._aborted or (self.cancel is not None and self.cancel()):
                    st.stop_reason = "cancelled"
                    return
                if "error" in event:
                    raise RemoteHTTPError(200, f"{where}: the server failed mid-answer: "
                                               f"{_message(event)}", event)
                if event.get("usage"):
                    u = event["usage"]
                    st.prompt_tokens = int(u.get("prompt_tokens") or 0)
                    st.generated_tokens = int(u.get("completion_tokens") or 0)
                for choice in event.get("choices") or []:
                    piece = choice.get("text")
                    if piece is None:
                        piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        if not self.text:
                            st.time_to_first_token = time.perf_counter() - t0
                        self.text += piece
                        st.decode_tokens += 1
                        if self.on_token is not None:
                            self.on_token(piece)
                        yield piece
                    if choice.get("finish_reason"):
                        st.stop_reason = FINISH.get(choice["finish_reason"], "eog")
            if self._aborted:
                st.stop_reason = "cancelled"
            elif not st.stop_reason:
                raise RemoteProtocolError(f"{where}: the stream ended without a finish reason")
        except (RemoteConnectionError, RemoteProtocolError):
            if not self._aborted:               # a shut-down socket may fail either way
                raise
            st.stop_reason = "cancelled"
        finally:
            st.decode_seconds = time.perf_counter() - t0 - st.time_to_first_token
            resp.close()


def _sse_events(resp, where: str, timeout: float) -> Iterator[dict]:
    """Parse `data: ...` lines of a server-sent event stream until `data: [DONE]`."""
    data: list[str] = []
    while True:
        try:
            raw = resp.readline()
        except (socket.timeout, TimeoutError) as e:
            raise RemoteTimeoutError(f"{where}: the stream stalled for {timeout:g} s") from e
        except (ConnectionError, OSError) as e:
            raise RemoteConnectionError(f"{where}: the connection broke mid-answer ({e})") from e
        if not raw:
            return                                # EOF (a server that omits [DONE])
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
            continue
        if line or not data:                      # comments, event:/id: fields, keep-alives
            continue
        payload, data = "\n".join(data), []
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except json.JSONDecodeError:
            raise RemoteProtocolError(f"{where}: not JSON in the stream: {payload[:200]!r}") from None


def _read_json(resp, where: str) -> dict:
    try:
        return json.loads(resp.read().decode("utf-8"))
    except (socket.timeout, TimeoutError) as e:
        raise RemoteTimeoutError(f"{where}: the answer stalled") from e
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RemoteProtocolError(f"{where}: the answer is not JSON") from None


def _message(body) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(body)[:300]


def _http_error(e: urllib.error.HTTPError, where: str) -> RemoteHTTPError:
    try:
        body = json.loads(e.read().decode("utf-8"))
    except Exception:
        body = None
    msg = _message(body) if body is not None else (e.reason or "")
    hint = {401: " (wrong or missing API key)", 404: " (is the URL an OpenAI-compatible endpoint?)",
            503: " (the server is busy; try again shortly)"}.get(e.code, "")
    return RemoteHTTPError(e.code, f"{where}: HTTP {e.code}{hint}: {msg}", body)
