"""One file from the Hub into `NAME.part`, resumable, verified, then renamed to NAME.

    target.part  grows by appended chunks; its sha256 is computed while streaming (after a
                 restart the existing bytes are hashed first, then the download continues
                 with `Range: bytes=<size>-`)
    target       appears only after the size and the Hub's LFS sha256 match (os.replace)

Dropped connections, timeouts, 408/429 and 5xx answers are retried with exponential backoff;
401/403/404 fail at once with the Hub error that says what to do.
"""
from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .errors import (ChecksumError, DiskFullError, DownloadError, offline_error, offline_mode_error,
                     status_error)
from .variants import RepoFile

try:
    import fcntl
except ImportError:          # Windows
    fcntl = None

CHUNK = 64 << 10
READ_TIMEOUT = 60.0
CONNECT_TIMEOUT = 20.0


class Stopped(Exception):
    """The manager asked the transfer to stop (pause, cancel, or shutdown)."""


class _Retry(Exception):
    """A transient failure: try again from the current offset."""


class PartFile:
    """The .part file and the sha256 of the bytes it holds."""

    def __init__(self, path: Path):
        self.path = path
        self.hasher = hashlib.sha256()
        self.offset = 0

    def load(self, limit: int, should_stop: Callable[[], bool]) -> None:
        """Hash what an earlier run left; discard it if it is longer than the file can be."""
        if not self.path.exists():
            return
        if self.path.stat().st_size > limit:
            self.reset()
            return
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                if should_stop():
                    raise Stopped
                self.hasher.update(chunk)
                self.offset += len(chunk)

    def reset(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "wb"):
            pass
        self.hasher = hashlib.sha256()
        self.offset = 0


def fetch(url: str, f: RepoFile, target: Path, headers: dict, *, repo_id: str,
          on_bytes: Callable[[int], None], should_stop: Callable[[], bool],
          sleep: Callable[[float], None], retries: int = 8, backoff: tuple[float, float] = (1.0, 60.0),
          on_reset: Callable[[int], None] = lambda n: None, read_timeout: float = READ_TIMEOUT) -> None:
    """Download `f` to `target` (through target.part). on_bytes(n) reports progress of n new bytes
    (the bytes of an existing .part once at the start); on_reset(n) that n counted bytes were
    discarded."""
    part = PartFile(target.with_name(target.name + ".part"))
    with _only_writer(part.path, f, repo_id):
        part.load(f.size, should_stop)
        on_bytes(part.offset)
        failures, delay, last_error = 0, backoff[0], ""
        while part.offset < f.size or f.size == 0:
            before = part.offset
            try:
                _stream(url, f, part, headers, repo_id, on_bytes, should_stop, on_reset, read_timeout)
                if part.offset >= f.size:
                    break
                raise _Retry(f"the connection closed after {part.offset} of {f.size} bytes")
            except _Retry as e:
                last_error = str(e)
                if part.offset > before:
                    failures, delay = 0, backoff[0]
                failures += 1
                if failures > retries:
                    if last_error.startswith("ConnectError"):
                        raise offline_error("/".join(url.split("/")[:3]), last_error) from e
                    raise DownloadError(
                        f"Downloading {f.path} from {repo_id} failed {failures} times in a row "
                        f"({last_error}); the partial file is kept: resume the download to continue.") from e
                sleep(delay)
                if should_stop():
                    raise Stopped from e
                delay = min(delay * 2, backoff[1])
        _verify(f, part, repo_id)
        os.replace(part.path, target)


def _lock(fd: int) -> bool:
    """Take the exclusive lock on an open .part without waiting -> False if another process holds
    it (always True without fcntl, i.e. on Windows, where there is no lock)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def _only_writer(path: Path, f: RepoFile, repo_id: str):
    """An exclusive lock on the .part for as long as this transfer writes it: the app and
    `lectern download` (or two copies of the app) keep separate queues, and two writers appending
    to one .part would corrupt it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _lock(fd):
            raise DownloadError(
                f"{f.path} from {repo_id} is being downloaded by another Lectern (the app or "
                f"`lectern download`) into {path.parent}; let that one finish, or stop it there "
                "and resume this download.")
        yield
    finally:
        os.close(fd)


def remove_part(path: Path) -> None:
    """Delete a .part file unless another process is writing it (_only_writer's lock): cancelling
    a job here must not pull the file from under a download running elsewhere."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if _lock(fd):
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _stream(url: str, f: RepoFile, part: PartFile, headers: dict, repo_id: str,
            on_bytes, should_stop, on_reset, read_timeout: float) -> None:
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import get_session

    h = dict(headers)
    if part.offset:
        h["Range"] = f"bytes={part.offset}-"
    timeout = httpx2.Timeout(read_timeout, connect=CONNECT_TIMEOUT)
    try:
        with get_session().stream("GET", url, headers=h, timeout=timeout) as r:
            _check_status(r, f, part, repo_id, on_reset)
            with open(part.path, "ab") as out:
                for chunk in r.iter_bytes(CHUNK):
                    if part.offset + len(chunk) > f.size:
                        part.reset()
                        raise DownloadError(
                            f"{repo_id}: the server sent more than the {f.size} bytes the Hub lists "
                            f"for {f.path}; the partial file was deleted: try again later.")
                    _write(out, chunk, f)
                    part.hasher.update(chunk)
                    part.offset += len(chunk)
                    on_bytes(len(chunk))
                    if should_stop():
                        raise Stopped
    except (httpx2.TransportError, httpx2.StreamError) as e:
        raise _Retry(f"{type(e).__name__}: {e}".rstrip(": ")) from e
    except OfflineModeIsEnabled as e:
        raise offline_mode_error() from e


def _check_status(r, f: RepoFile, part: PartFile, repo_id: str, on_reset) -> None:
    code = r.status_code
    if code == 416 and part.offset:            # our offset is past what the server has
        on_reset(part.offset)
        part.reset()
        raise _Retry("the server refused the resume point (HTTP 416); starting over")
    if code in (408, 429) or code >= 500:
        raise _Retry(f"HTTP {code}")
    if code >= 400:
        token = any(k.lower() == "authorization" for k in r.request.headers)
        raise status_error(code, repo_id, token, f.path, r.reason_phrase, r.headers.get("x-error-code"))
    if part.offset and code == 206 and _range_start(r) != part.offset:
        on_reset(part.offset)
        part.reset()
        raise _Retry("the server answered another range than asked; starting over")
    if part.offset and code == 200:           # Range ignored: the body is the whole file
        on_reset(part.offset)
        part.reset()


def _range_start(r) -> int | None:
    cr = r.headers.get("content-range", "")   # "bytes 100-199/200"
    try:
        return int(cr.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _write(out, chunk: bytes, f: RepoFile) -> None:
    try:
        out.write(chunk)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"The disk filled up while downloading {f.path}; free some space "
                                "and resume the download (the partial file is kept).") from e
        raise DownloadError(f"Cannot write {out.name}: {e.strerror or e}") from e


def _verify(f: RepoFile, part: PartFile, repo_id: str) -> None:
    if part.offset != f.size:
        part.path.unlink(missing_ok=True)
        raise DownloadError(f"{f.path} from {repo_id} has {part.offset} bytes instead of {f.size}; "
                            "the file was deleted: download it again.")
    if f.sha256 and part.hasher.hexdigest() != f.sha256.lower():
        got = part.hasher.hexdigest()
        part.path.unlink(missing_ok=True)
        raise ChecksumError(
            f"{f.path} from {repo_id} is corrupt: its sha256 is {got[:16]}… but the Hub publishes "
            f"{f.sha256[:16]}…; the downloaded file was deleted: download it again.")

