"""A Hugging Face Hub on 127.0.0.1 for the tests: the API routes huggingface_hub calls, files
with HTTP Range, and injectable faults. Nothing here reaches the internet.

Routes (as the real Hub answers them):
    HEAD/GET /                                        reachability probe
    GET  /api/models?search=&filter=&sort=&limit=     search (list of model summaries)
    GET  /api/models/OWNER/NAME[/revision/REV]        model info; ?blobs=True adds sizes + LFS sha256
    GET  /api/whoami-v2                               the token's account (401 for a bad token)
    GET/HEAD /OWNER/NAME/resolve/REV/PATH             file bytes, `Range: bytes=A-[B]` -> 206

Access: a private repository needs a valid token (else 401, X-Error-Code RepoNotFound); a
gated one needs it for files (401 without a token, 403 with an invalid one; X-Error-Code
GatedRepo). With `redirect`, LFS files answer 302 to /_cdn/REPO/_/PATH like the Hub's CDN.
Faults: fail_next (statuses before success), cut (close the connection after N body
bytes), hold (stop after N bytes until the test releases an Event), slow (sleep per chunk),
wrong_sha (publish a wrong sha256), no_range (ignore Range), stop() (the hub goes offline).
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

GOOD_TOKEN = "hf_lectern_test_token"
CHUNK = 16 << 10
LLAMA_QUANTS = ["Q4_0", "Q4_K_M", "Q6_K", "Q8_0", "F16"]
README = "---\nlicense: mit\n---\n# Tiny llama\n\nA **tiny** model for tests.\n"
TINY_REPO = "test/tiny-llama-GGUF"
DEFAULT_LIST_FIELDS = ("_id", "id", "modelId", "likes", "downloads", "private", "tags", "library_name")


@dataclass
class FakeFile:
    data: bytes
    sha256: str = ""          # what the API publishes (the real digest unless wrong_sha)
    lfs: bool = True

    def __post_init__(self):
        self.sha256 = self.sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile]
    gated: bool = False
    private: bool = False
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2025-01-01T00:00:00.000Z"
    tags: list[str] = field(default_factory=lambda: ["gguf"])
    history: dict[str, dict[str, FakeFile]] = field(default_factory=dict)   # commit -> files

    def __post_init__(self):
        if not self.history:
            self.history[hashlib.sha1(self.repo_id.encode()).hexdigest()] = self.files

    @property
    def sha(self) -> str:
        """The latest commit (its files are `files`; older commits stay in `history`)."""
        return next(reversed(self.history))


@dataclass
class Request:
    method: str
    path: str                  # without the query
    query: dict
    headers: dict


class FakeHub:
    def __init__(self):
        self.repos: dict[str, FakeRepo] = {}
        self.tokens = {GOOD_TOKEN}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._fail: list[tuple[str, int]] = []           # (path substring, status)
        self._cut: dict[str, list[int]] = {}             # file path -> byte counts, one per request
        self._hold: dict[str, tuple[int, threading.Event]] = {}
        self._slow: dict[str, float] = {}
        self.no_range = False
        self.redirect = False      # LFS files: 302 from /resolve/ to /_cdn/ (as the Hub does)
        self._gates: list[threading.Event] = []
        self.server: ThreadingHTTPServer | None = None
        self.url = ""

    # ---- set-up -----------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes | FakeFile], **kw) -> FakeRepo:
        fs = {p: (d if isinstance(d, FakeFile) else FakeFile(d, lfs=p.endswith(".gguf")))
              for p, d in files.items()}
        repo = FakeRepo(repo_id, fs, **kw)
        self.repos[repo_id] = repo
        return repo

    def fail_next(self, path_part: str, *statuses: int) -> None:
        """The next requests whose path contains `path_part` get these statuses, in order."""
        with self.lock:
            self._fail.extend((path_part, s) for s in statuses)

    def cut(self, path: str, *after_bytes: int) -> None:
        """Successive GETs of file `path` close the connection after these many body bytes."""
        with self.lock:
            self._cut.setdefault(path, []).extend(after_bytes)

    def hold(self, path: str, after_bytes: int) -> threading.Event:
        """The next GET of `path` stops after `after_bytes` body bytes until the event is set."""
        ev = threading.Event()
        with self.lock:
            self._hold[path] = (after_bytes, ev)
            self._gates.append(ev)
        return ev

    def slow(self, path: str, seconds_per_chunk: float) -> None:
        self._slow[path] = seconds_per_chunk

    def commit(self, repo_id: str, path: str, data: bytes) -> str:
        """A new commit changing one file; the old commit's files stay downloadable."""
        r = self.repos[repo_id]
        files = dict(r.files)
        files[path] = FakeFile(data, lfs=path.endswith(".gguf"))
        sha = hashlib.sha1((r.sha + path).encode()).hexdigest()
        r.history[sha] = r.files = files
        return sha

    def wrong_sha(self, repo_id: str, path: str) -> None:
        self.repos[repo_id].files[path].sha256 = hashlib.sha256(b"something else").hexdigest()

    def file_requests(self, path: str, cdn: bool = False) -> list[Request]:
        """Requests for a file's bytes (cdn: those that reached /_cdn/ after a redirect)."""
        route = "/_cdn/" if cdn else "/resolve/"
        return [r for r in self.requests if route in r.path and r.path.endswith("/" + path)]

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            pass
        Handler.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True,
                         name="fake-hub").start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        """The hub goes away: its port refuses connections from now on."""
        for ev in self._gates:
            ev.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # ---- answers ----------------------------------------------------------------------------
    def take_fault(self, path: str) -> int | None:
        with self.lock:
            for i, (part, status) in enumerate(self._fail):
                if part in path:
                    del self._fail[i]
                    return status
        return None

    def authorized(self, headers: dict) -> bool:
        auth = headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    def search(self, q: dict) -> list[dict]:
        text = (q.get("search") or [""])[0].lower()
        filters = q.get("filter", [])
        repos = [r for r in self.repos.values() if not r.private and text in r.repo_id.lower()
                 and all(f in r.tags for f in filters)]
        key = {"downloads": lambda r: r.downloads, "likes": lambda r: r.likes,
               "lastModified": lambda r: r.last_modified}.get((q.get("sort") or ["downloads"])[0])
        if key:
            repos.sort(key=key, reverse=True)
        limit = int((q.get("limit") or ["1000"])[0])
        out = [self.summary(r) for r in repos[:limit]]
        # Like the Hub: a default set of fields, or `id` plus the `expand`ed ones.
        keep = {"id", *q["expand"]} if "expand" in q else set(DEFAULT_LIST_FIELDS)
        return [{k: v for k, v in d.items() if k in keep} for d in out]

    def summary(self, r: FakeRepo) -> dict:
        return {"_id": r.repo_id, "id": r.repo_id, "modelId": r.repo_id, "downloads": r.downloads,
                "likes": r.likes, "lastModified": r.last_modified, "private": r.private,
                "gated": "manual" if r.gated else False, "tags": r.tags, "library_name": "gguf"}

    def info(self, r: FakeRepo, blobs: bool) -> dict:
        d = self.summary(r)
        d["sha"] = r.sha
        sib = []
        for p, f in r.files.items():
            s = {"rfilename": p}
            if blobs:
                s.update(size=len(f.data), blobId=hashlib.sha1(f.data).hexdigest())
                if f.lfs:
                    s["lfs"] = {"size": len(f.data), "sha256": f.sha256, "pointerSize": 134}
            sib.append(s)
        d["siblings"] = sib
        return d


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.handle_any("HEAD")

    def do_GET(self) -> None:
        self.handle_any("GET")

    def handle_any(self, method: str) -> None:
        hub = self.hub
        u = urlsplit(self.path)
        path, q = unquote(u.path), parse_qs(u.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with hub.lock:
            hub.requests.append(Request(method, path, q, headers))
        self.close_connection = True
        status = hub.take_fault(path)
        if status is not None:
            return self.send_error_json(status, f"injected HTTP {status}")
        if path == "/":
            return self.send_json({"fake": "hub"}, method)
        if path == "/api/whoami-v2":
            if not hub.authorized(headers):
                return self.send_error_json(401, "Invalid credentials in Authorization header")
            return self.send_json({"type": "user", "name": "lectern-tester",
                                   "auth": {"accessToken": {"displayName": "lectern-test",
                                                            "role": "read"}}}, method)
        if path == "/api/models":
            return self.send_json(hub.search(q), method)
        if path.startswith("/api/models/"):
            return self.model_info(path[len("/api/models/"):], q, headers, method)
        if "/resolve/" in path:
            return self.resolve(path, headers, method)
        if path.startswith("/_cdn/"):
            where, _, file_path = path[len("/_cdn/"):].partition("/_/")
            repo_id, _, rev = where.rpartition("/")
            r = hub.repos.get(repo_id)
            files = (r.files if rev == "main" else r.history.get(rev, {})) if r else {}
            f = files.get(file_path)
            if f is None:
                return self.send_error_json(404, "no such object")
            return self.send_file(file_path, f.data, headers.get("range"), method)
        self.send_error_json(404, "no such route", "EntryNotFound")

    def repo_or_error(self, repo_id: str, headers: dict) -> FakeRepo | None:
        r = self.hub.repos.get(repo_id)
        if r is None or (r.private and not self.hub.authorized(headers)):
            self.send_error_json(401 if "authorization" not in headers else 404,
                                 "Repository not found", "RepoNotFound")
            return None
        return r

    def model_info(self, rest: str, q: dict, headers: dict, method: str) -> None:
        repo_id = rest.split("/revision/")[0]
        r = self.repo_or_error(repo_id, headers)
        if r is not None:
            self.send_json(self.hub.info(r, (q.get("blobs") or ["false"])[0].lower() == "true"), method)

    def resolve(self, path: str, headers: dict, method: str) -> None:
        repo_id, _, rest = path.lstrip("/").partition("/resolve/")
        rev, _, file_path = rest.partition("/")
        r = self.repo_or_error(repo_id, headers)
        if r is None:
            return
        if r.gated and not self.hub.authorized(headers):
            code = 403 if "authorization" in headers else 401
            return self.send_error_json(code, "Access to this model is restricted", "GatedRepo")
        files = r.files if rev == "main" else r.history.get(rev)
        if files is None:
            return self.send_error_json(404, "Revision not found", "RevisionNotFound")
        f = files.get(file_path)
        if f is None:
            return self.send_error_json(404, "Entry not found", "EntryNotFound")
        if self.hub.redirect and f.lfs:
            self.send_response(302)
            self.send_header("Location", f"/_cdn/{repo_id}/{rev}/_/{file_path}?sig=x")
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        self.send_file(file_path, f.data, headers.get("range"), method)

    def send_file(self, file_path: str, data: bytes, rng: str | None, method: str) -> None:
        start, end = 0, len(data) - 1
        partial = bool(rng) and not self.hub.no_range
        if partial:
            try:
                a, _, b = rng.removeprefix("bytes=").partition("-")
                start, end = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
            except ValueError:
                return self.send_error_json(400, "bad range")
            if start >= len(data) or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:end + 1]
        self.send_response(206 if partial else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Connection", "close")
        self.end_headers()
        if method == "HEAD":
            return
        self.stream_body(file_path, body)

    def stream_body(self, file_path: str, body: bytes) -> None:
        hub = self.hub
        with hub.lock:
            cuts = hub._cut.get(file_path)
            cut = cuts.pop(0) if cuts else None
            hold = hub._hold.pop(file_path, None)
        delay = hub._slow.get(file_path, 0.0)
        sent = 0
        try:
            while sent < len(body):
                if hold is not None and sent >= hold[0]:
                    hold[1].wait(60)
                    hold = None
                limit = len(body)
                if cut is not None:
                    limit = min(limit, cut)
                if hold is not None:
                    limit = min(limit, hold[0])
                n = min(CHUNK, limit - sent) if limit > sent else 0
                if n == 0 and cut is not None and sent >= cut:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)   # the connection drops mid-file
                    return
                if n:
                    self.wfile.write(body[sent:sent + n])
                    sent += n
                if delay:
                    self.wfile.flush()
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass

    def send_json(self, obj, method: str = "GET", status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def send_error_json(self, status: int, message: str, code: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Message", message)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def golden_bytes(name: str) -> bytes:
    """A golden tiny model's bytes, e.g. golden_bytes("tiny-llama-Q4_0")."""
    from tests.conftest import golden_dir

    return (golden_dir() / "models" / f"{name}.gguf").read_bytes()


def add_tiny_repo(hub: FakeHub, repo_id: str = TINY_REPO, **kw) -> str:
    """The golden tiny llama in five quantizations, plus a card, an mmproj and a config."""
    files = {f"tiny-llama-{q}.gguf": golden_bytes(f"tiny-llama-{q}") for q in LLAMA_QUANTS}
    files.update({"README.md": README.encode(), "mmproj-tiny-F16.gguf": b"GGUF" + bytes(60),
                  "config.json": b"{}"})
    kw = {"downloads": 500, "likes": 7, "last_modified": "2025-06-01T10:00:00.000Z", **kw}
    hub.add_repo(repo_id, files, **kw)
    return repo_id
