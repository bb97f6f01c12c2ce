"""The app's only door to inference.hub (Hugging Face): every network call runs on a thread pool,
results come back as Qt signals on the GUI thread, so the window never waits for the network.

HubService.call(kind, fn, ...) -> request id; later `done(rid, kind, result)` or
`failed(rid, kind, error_kind, message)`. The window keeps the id of the request it still cares
about and drops stale answers (a search superseded by the next keystroke, another repository).

Downloads: DownloadBridge owns inference.hub.DownloadManager (its own worker thread) and turns its
on_update callback into the `jobUpdated(JobStatus)` signal.
"""
from __future__ import annotations

import itertools
import threading
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from .qt_compat import emit

STATE_FILE = "downloads.json"     # under data_dir()/hub: the download queue, kept across restarts


def hub():
    """inference.hub, imported on first use (huggingface_hub is slow to import)."""
    from inference import hub as h

    return h


def error_kind(e: BaseException) -> str:
    """offline | auth | notfound | disk | checksum | download | hub | error | bug"""
    try:
        h = hub()
        order = ((h.HubOfflineError, "offline"), (h.HubAuthError, "auth"),
                 (h.HubNotFoundError, "notfound"), (h.DiskFullError, "disk"),
                 (h.ChecksumError, "checksum"), (h.DownloadError, "download"), (h.HubError, "hub"))
    except ImportError:
        order = ()
    for cls, kind in order:
        if isinstance(e, cls):
            return kind
    from inference.errors import LecternError

    return "error" if isinstance(e, LecternError) else "bug"


def error_text(e: BaseException) -> str:
    kind = error_kind(e)
    msg = str(e).strip() or type(e).__name__
    if kind == "bug":       # not one of ours: say so, but still as a message, never a traceback
        return f"Unexpected error ({type(e).__name__}: {msg}). Try again; if it persists, report it."
    return msg


class _Call(QRunnable):
    def __init__(self, service: "HubService", rid: int, kind: str, fn, args, kwargs):
        super().__init__()
        self.service, self.rid, self.kind = service, rid, kind
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as e:  # every failure becomes a message in the window
            self.service._finish(False, self.rid, self.kind, (error_kind(e), error_text(e)))
            return
        self.service._finish(True, self.rid, self.kind, result)


class HubService(QObject):
    """Background calls to the hub. Lives as long as the main window."""
    done = Signal(int, str, object)         # request id, kind, result
    failed = Signal(int, str, str, str)     # request id, kind, error kind, message

    def __init__(self, parent=None, threads: int = 4):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._ids = itertools.count(1)
        self._closed = False

    def call(self, kind: str, fn, *args, **kwargs) -> int:
        rid = next(self._ids)
        self.pool.start(_Call(self, rid, kind, fn, args, kwargs))
        return rid

    def _finish(self, ok: bool, rid: int, kind: str, payload) -> None:
        if self._closed:
            return
        try:
            if ok:
                emit(self.done, rid, kind, payload)
            else:
                emit(self.failed, rid, kind, *payload)
        except RuntimeError:        # the window went away while the call ran
            pass

    # --- the calls the hub window makes ------------------------------------------------------
    def search(self, text: str, sort: str, limit: int = 30) -> int:
        return self.call("search", lambda: hub().search_repos(text, sort=sort, limit=limit))

    def variants(self, repo_id: str) -> int:
        return self.call("variants", lambda: hub().list_variants(repo_id))

    def card(self, repo_id: str) -> int:
        return self.call("card", lambda: hub().model_card(repo_id))

    def estimate(self, repo_id: str, variants: list, n_ctx: int) -> int:
        """RAM estimates of all variants (one header read per model: quantizations share it)."""
        return self.call("estimate", lambda: hub().estimate_all(repo_id, list(variants), n_ctx))

    def save_token(self, token: str) -> int:
        return self.call("token", lambda: hub().save_token(token))

    # --- no network ----------------------------------------------------------------------------
    @staticmethod
    def curated() -> list:
        return list(hub().curated())

    @staticmethod
    def fit_verdict(total_bytes: int, ram_bytes: int) -> str:
        return hub().fit_verdict(total_bytes, ram_bytes)

    @staticmethod
    def recommend(variants, estimates, ram_bytes):
        return hub().recommend(variants, estimates, ram_bytes)

    def close(self, wait_ms: int = 3000) -> None:
        self._closed = True
        self.pool.clear()
        self.pool.waitForDone(wait_ms)


class DownloadBridge(QObject):
    """inference.hub.DownloadManager for the app: models go to the library's folder, the queue is
    kept in data_dir()/hub/downloads.json, and every job change arrives as `jobUpdated`."""
    jobUpdated = Signal(object)      # JobStatus

    def __init__(self, models_dir: str | Path, state_file: str | Path | None = None, parent=None,
                 **manager_kw):
        super().__init__(parent)
        self.state_file = Path(state_file) if state_file else default_state_file()
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        self.manager = hub().DownloadManager(Path(models_dir), self.state_file,
                                             on_update=self._on_update, **manager_kw)

    def _on_update(self, status) -> None:        # on the manager's worker thread
        with self._lock:
            if self._closed:
                return
            try:
                emit(self.jobUpdated, status)
            except RuntimeError:
                pass

    def add(self, repo_id: str, variant) -> str:
        return self.manager.add(repo_id, variant)

    def pause(self, job_id) -> None:
        self.manager.pause(job_id)

    def resume(self, job_id) -> None:
        self.manager.resume(job_id)

    def cancel(self, job_id) -> None:
        self.manager.cancel(job_id)

    def remove(self, job_id) -> None:
        """Forget a finished, failed or cancelled job; its files stay."""
        self.manager.remove(job_id)

    def jobs(self) -> list:
        return list(self.manager.jobs())

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.manager.close()


def default_state_file() -> Path:
    from inference.paths import data_dir

    return data_dir() / "hub" / STATE_FILE


def has_saved_jobs(state_file: str | Path | None = None) -> bool:
    """A download queue from an earlier run exists (so the app resumes it at start)."""
    p = Path(state_file) if state_file else default_state_file()
    return p.is_file() and p.stat().st_size > 0
