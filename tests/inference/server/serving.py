"""Helpers for the server tests: start `lectern serve` in a subprocess, talk HTTP with the stdlib."""
from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.parse
from contextlib import contextmanager

from tests.conftest import golden_dir

TINY = str(golden_dir() / "models" / "tiny-llama-Q8_0.gguf")
TINY_REF = golden_dir() / "ref" / "tiny-llama-Q8_0.npz"


@contextmanager
def serve_process(*args, timeout: float = 60):
    """`lectern serve ... --port 0` in a subprocess; yields (process, url) once it listens."""
    p = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", "0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()       # printed (and flushed) once the socket accepts connections
        if not line.startswith("Lectern server listening on http://"):
            p.kill()
            raise AssertionError(f"server did not start: {line!r} {p.stderr.read()}")
        yield p, line.split()[-1]
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


def request(url: str, method: str, path: str, body=None, headers=None, raw: bytes | None = None,
            timeout: float = 120):
    """-> (status, headers dict, parsed JSON or text)."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json", **(headers or {})}
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = text
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed
    finally:
        c.close()


def health(url: str) -> dict:
    return request(url, "GET", "/health")[2]


def wait_for(cond, timeout: float = 30, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def open_stream(url: str, body: dict, headers=None):
    """Start a streaming POST; returns (connection, response) with the response not yet read."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    c.request("POST", "/v1/completions" if "prompt" in body else "/v1/chat/completions",
              body=json.dumps(dict(body, stream=True)).encode(),
              headers={"Content-Type": "application/json", **(headers or {})})
    return c, c.getresponse()


def sse_events(resp):
    """Parsed `data:` payloads of an SSE response, up to and including the string '[DONE]'."""
    while True:
        line = resp.fp.readline()
        if not line:
            return
        line = line.decode().strip()
        if line.startswith("data: "):
            payload = line[6:]
            yield payload if payload == "[DONE]" else json.loads(payload)
            if payload == "[DONE]":
                return
