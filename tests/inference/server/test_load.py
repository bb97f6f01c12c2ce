"""Bounded load: 8 concurrent streaming clients against `lectern serve` (subprocess, tiny model).

Every request either completes (200, a finish reason, [DONE]) or is refused cleanly (503 with an
OpenAI error body and Retry-After); the server never crashes; its resident memory stays bounded.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.inference.server.serving import TINY, health, open_stream, request, serve_process, sse_events

CLIENTS = 8
PER_CLIENT = 4
MAX_TOKENS = 6
RSS_GROWTH_LIMIT_MB = 25


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def one_request(url: str, i: int) -> tuple:
    body = {"prompt": f"the city {i}", "max_tokens": MAX_TOKENS, "temperature": 0.7, "seed": i}
    conn, resp = open_stream(url, body)
    try:
        if resp.status == 503:
            import json

            err = json.loads(resp.read())["error"]
            assert err["code"] == "server_busy" and int(resp.getheader("Retry-After")) > 0
            return ("busy",)
        assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
        events = list(sse_events(resp))
        assert events[-1] == "[DONE]"
        finish = [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]]
        assert finish[-1] in ("length", "stop") and all(f is None for f in finish[:-1])
        return ("ok", "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"]))
    finally:
        resp.close()
        conn.close()


def run_round(url: str, n_per_client: int) -> list:
    results, errors = [], []

    def client(k):
        for j in range(n_per_client):
            try:
                results.append(one_request(url, k * 100 + j))
            except Exception as e:           # anything else is a failure of the server
                errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors[:3]
    return results


def test_eight_concurrent_streaming_clients():
    with serve_process("-m", TINY, "-c", "256", "--queue-size", "4") as (proc, url):
        run_round(url, 1)                    # warm-up: first allocations, caches
        rss0 = rss_mb(proc.pid)
        s0 = health(url)["stats"]
        t0 = time.perf_counter()
        results = run_round(url, PER_CLIENT)
        seconds = time.perf_counter() - t0
        rss1 = rss_mb(proc.pid)
        assert proc.poll() is None, "the server died"
        ok = [r for r in results if r[0] == "ok"]
        busy = [r for r in results if r[0] == "busy"]
        assert len(ok) + len(busy) == CLIENTS * PER_CLIENT
        assert len(ok) >= CLIENTS            # the queue keeps at least this many going
        st = health(url)["stats"]
        delta = {k: st[k] - s0[k] for k in ("requests", "completed", "refused_busy", "cancelled", "failed")}
        assert delta == {"requests": len(ok), "completed": len(ok), "refused_busy": len(busy),
                         "cancelled": 0, "failed": 0}
        assert not st["busy"] and st["queued"] == 0
        assert request(url, "GET", "/v1/models")[0] == 200
        print(f"\nload: {len(ok)} completed, {len(busy)} refused (503) of {CLIENTS * PER_CLIENT} in "
              f"{seconds:.1f} s; server RSS {rss0:.1f} -> {rss1:.1f} MB")
        assert rss1 - rss0 < RSS_GROWTH_LIMIT_MB, (rss0, rss1)
