"""Request validation for the OpenAI-compatible server: JSON body -> a checked Request, or ApiError.

Every refusal is an ApiError carrying the HTTP status and OpenAI's error body
`{"error": {"message", "type", "param", "code"}}`. Unknown fields are refused (a typo must not
be silently ignored); fields OpenAI defines that we cannot honour (n > 1, logprobs, tools, ...)
are refused with a message saying so. Sampling defaults are llama.cpp's (SamplingParams).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from ..sampling import SamplingParams

MAX_STOP = 4          # OpenAI allows up to 4 stop sequences


class ApiError(Exception):
    """An answer other than 200, with OpenAI's error body."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass
class Request:
    kind: str                      # "chat" | "completion"
    model: str | None
    stream: bool
    params: SamplingParams
    messages: list[dict] | None = None     # chat: [{"role", "content": str}]
    prompt: str | list[int] | None = None  # completion: text or token ids
    include_usage: bool = False            # stream_options.include_usage
    extra: dict = field(default_factory=dict)


# --- field checkers ------------------------------------------------------------------------------
def _number(body, name, lo=None, hi=None):
    v = body[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise bad(f"'{name}' must be a finite number, got {v!r}", name, "invalid_type")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise bad(f"'{name}' must be between {lo} and {hi}, got {v!r}", name)
    return float(v)


def _integer(body, name, lo=None, hi=None):
    v = body[name]
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(f"'{name}' must be an integer, got {v!r}", name, "invalid_type")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise bad(f"'{name}' must be {rng}, got {v!r}", name)
    return v


def _bool(body, name):
    v = body[name]
    if not isinstance(v, bool):
        raise bad(f"'{name}' must be true or false, got {v!r}", name, "invalid_type")
    return v


def _stop(v):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise bad("'stop' must be a string or a list of strings", "stop", "invalid_type")
    if len(v) > MAX_STOP:
        raise bad(f"'stop' takes at most {MAX_STOP} sequences, got {len(v)}", "stop")
    if any(not s for s in v):
        raise bad("'stop' sequences must not be empty", "stop")
    return tuple(v)


def _only(body, name, allowed, why):
    """A field OpenAI defines that we accept only at its neutral value."""
    if name in body and body[name] not in allowed:
        raise bad(f"'{name}' is not supported by this server ({why})", name, "unsupported_parameter")


SAMPLING = {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n",
            "frequency_penalty", "presence_penalty", "seed", "max_tokens", "stop"}
COMMON = SAMPLING | {"model", "stream", "stream_options", "n", "user", "logprobs", "logit_bias"}
CHAT_FIELDS = COMMON | {"messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
                        "response_format", "parallel_tool_calls"}
COMPLETION_FIELDS = COMMON | {"prompt", "echo", "suffix", "best_of"}


def _sampling(body, default_max: int | None) -> SamplingParams:
    kw = {}
    if body.get("temperature") is not None:
        kw["temperature"] = _number(body, "temperature", 0.0, 2.0)
    if body.get("top_p") is not None:
        kw["top_p"] = _number(body, "top_p", 0.0, 1.0)
    if body.get("min_p") is not None:
        kw["min_p"] = _number(body, "min_p", 0.0, 1.0)
    if body.get("top_k") is not None:
        kw["top_k"] = _integer(body, "top_k", 0)
    if body.get("repeat_penalty") is not None:
        kw["repeat_penalty"] = _number(body, "repeat_penalty", 1e-6, 100.0)
    if body.get("repeat_last_n") is not None:
        kw["repeat_last_n"] = _integer(body, "repeat_last_n", -1)
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name) is not None:
            kw[name] = _number(body, name, -2.0, 2.0)
    if body.get("seed") is not None:
        kw["seed"] = _integer(body, "seed", 0, 2**63 - 1)
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    kw["max_tokens"] = _integer(body, key, 1) if body.get(key) is not None else default_max
    if body.get("stop") is not None:
        kw["stop"] = _stop(body["stop"])
    try:
        return SamplingParams(**kw)
    except ValueError as e:       # belt and braces: the engine's own checks
        raise bad(str(e)) from None


def _common(body: dict, allowed: set[str]) -> tuple[str | None, bool, bool]:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad(f"unknown field '{unknown[0]}' (this server accepts: {', '.join(sorted(allowed))})",
                  unknown[0], "unknown_parameter")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("'model' must be a string", "model", "invalid_type")
    stream = _bool(body, "stream") if body.get("stream") is not None else False
    include_usage = False
    so = body.get("stream_options")
    if so is not None:
        if not isinstance(so, dict) or set(so) - {"include_usage"}:
            raise bad("'stream_options' must be an object with only 'include_usage'", "stream_options")
        include_usage = bool(so.get("include_usage", False))
    _only(body, "n", (None, 1), "one answer per request")
    _only(body, "logprobs", (None, False, 0), "no log probabilities")
    _only(body, "logit_bias", (None, {}), "no logit bias")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise bad("'user' must be a string", "user", "invalid_type")
    return model, stream, include_usage


def _content(v, i) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list):        # [{"type": "text", "text": ...}, ...]
        parts = []
        for part in v:
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise bad(f"messages[{i}].content: only text parts are supported",
                          f"messages[{i}].content", "unsupported_content")
            parts.append(part["text"])
        return "".join(parts)
    raise bad(f"messages[{i}].content must be a string or a list of text parts",
              f"messages[{i}].content", "invalid_type")


def parse_chat(body) -> Request:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", None, "invalid_type")
    model, stream, include_usage = _common(body, CHAT_FIELDS)
    for name in ("tools", "tool_choice", "response_format", "parallel_tool_calls", "top_logprobs"):
        _only(body, name, (None,), "plain text chat only")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise bad("'messages' must be a non-empty list of {role, content} objects", "messages",
                  "missing_required_parameter" if msgs is None else "invalid_value")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise bad(f"messages[{i}] must be an object", f"messages[{i}]", "invalid_type")
        extra = set(m) - {"role", "content", "name"}
        if extra:
            raise bad(f"messages[{i}]: unknown field '{sorted(extra)[0]}'", f"messages[{i}]",
                      "unknown_parameter")
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant"):
            raise bad(f"messages[{i}].role must be system, developer, user or assistant, got {role!r}",
                      f"messages[{i}].role")
        out.append({"role": "system" if role == "developer" else role,
                    "content": _content(m.get("content", ""), i)})
    return Request("chat", model, stream, _sampling(body, None), messages=out,
                   include_usage=include_usage)


def parse_completion(body) -> Request:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", None, "invalid_type")
    model, stream, include_usage = _common(body, COMPLETION_FIELDS)
    _only(body, "echo", (None, False), "the prompt is not echoed")
    _only(body, "suffix", (None, ""), "no insertion")
    _only(body, "best_of", (None, 1), "one answer per request")
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]                   # a batch of one prompt
    if isinstance(p, list):
        if not p or not all(isinstance(t, int) and not isinstance(t, bool) for t in p):
            raise bad("'prompt' must be a string, a list of token ids, or a batch of one of these",
                      "prompt", "invalid_type")
    elif not isinstance(p, str):
        raise bad("'prompt' must be a string or a list of token ids (batches of several prompts "
                  "are not supported)", "prompt",
                  "missing_required_parameter" if p is None else "invalid_type")
    elif not p:
        raise bad("'prompt' is empty", "prompt")
    return Request("completion", model, stream, _sampling(body, 16), prompt=p,
                   include_usage=include_usage)


def parse_json(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"the request body is not valid JSON: {e}", None, "invalid_json") from None
