"""The download queue: one worker thread, pause / resume / cancel, state kept across restarts.

state_file (JSON, replaced atomically) holds every job: its files (path, size, sha256), state and
which files are complete. After a restart, jobs that were running or queued are queued again and
continue from their `.part` files; paused ones wait for resume(). Files land in
models_dir/<owner>__<name>/<path in repo>, where the library's scan of the models folder finds them.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ..errors import LecternError
from .errors import DiskFullError, DownloadError
from .jobs import (Job, JobStatus, default_state_file, free_space, load_jobs, local_path,
                   repo_dir_name, save_jobs)
from .transfer import READ_TIMEOUT, Stopped, fetch, remove_part
from .variants import Variant

__all__ = ["DownloadManager", "JobStatus", "default_state_file", "local_path", "repo_dir_name"]

DISK_MARGIN = 16 << 20          # keep this much free beyond the download itself
UPDATE_EVERY = 0.1              # seconds between progress callbacks
SAVE_EVERY = 2.0                # seconds between state saves while downloading
SPEED_WINDOW = 3.0              # seconds of samples behind the speed


class DownloadManager:
    """Queue of downloads run one at a time by a worker thread.

    on_update(JobStatus) is called from the worker thread (or the caller's thread for pause/cancel
    of a job that is not running) on every state change and at most every UPDATE_EVERY seconds
    during a download.
    """

    def __init__(self, models_dir: str | Path, state_file: str | Path, token: str | None = None,
                 on_update: Callable[[JobStatus], None] | None = None,
                 disk_free: Callable[[Path], int] = free_space, retries: int = 8,
                 backoff: tuple[float, float] = (1.0, 60.0), read_timeout: float = READ_TIMEOUT):
        self.models_dir = Path(models_dir)
        self.state_file = Path(state_file)
        self.token = token
        self.on_update = on_update
        self.disk_free = disk_free
        self.retries = retries
        self.backoff = backoff
        self.read_timeout = read_timeout   # seconds without a byte before a stalled transfer is retried
        self._cond = threading.Condition(threading.RLock())
        self._jobs: dict[str, Job] = {}
        self._current: Job | None = None
        self._stop: str | None = None        # pause | cancel | close, for the running job
        self._closing = False
        self._last_update = 0.0
        self._last_save = 0.0
        self.load_error = ""          # why a damaged state file was set aside ("" if it was fine)
        self._load()
        self._thread = threading.Thread(target=self._run, name="hub-downloads", daemon=True)
        self._thread.start()

    # ---- public API ---------------------------------------------------------------------------
    def add(self, repo_id: str, variant: Variant) -> str:
        """Queue a variant's files; an unfinished job for the same files is resumed instead."""
        from .client import check_repo_id

        check_repo_id(repo_id)
        for f in variant.files:
            local_path(self.models_dir, repo_id, f.path)
        paths = [f.path for f in variant.files]
        with self._cond:
            for j in self._jobs.values():
                if j.repo_id == repo_id and [f.path for f in j.files] == paths and j.state != "cancelled" \
                        and self._dir(j) == self.models_dir:
                    if j.state == "done" and all(p.is_file() for p in self._paths(j)):
                        return j.job_id
                    if j.state in ("paused", "failed", "done"):
                        self._refresh(j, variant)
                        self._requeue(j)
                    return j.job_id
            job = Job(uuid.uuid4().hex[:12], repo_id, variant.name, list(variant.files), dest=str(self.models_dir))
            self._jobs[job.job_id] = job
            self._changed(job)
            self._cond.notify_all()
            return job.job_id

    def pause(self, job_id: str) -> None:
        with self._cond:
            j = self._job(job_id)
            if j is self._current:
                self._stop = "pause"
                self._cond.notify_all()
            elif j.state == "queued":
                j.state = "paused"
                self._changed(j)

    def resume(self, job_id: str) -> None:
        with self._cond:
            j = self._job(job_id)
            if j.state in ("paused", "failed"):
                self._requeue(j)
            elif j is self._current and self._stop == "pause":
                self._stop = None

    def cancel(self, job_id: str) -> None:
        """Stop the job and delete its partial and completed files."""
        with self._cond:
            j = self._job(job_id)
            if j is self._current:
                self._stop = "cancel"
                self._cond.notify_all()
                return
            if j.state in ("done", "cancelled"):
                return
            j.state = "cancelled"
            self._delete_files(j)
            self._changed(j)

    def remove(self, job_id: str) -> None:
        """Forget a finished, failed or cancelled job (its downloaded files stay)."""
        with self._cond:
            j = self._job(job_id)
            if j.state in ("done", "failed", "cancelled"):
                del self._jobs[job_id]
                self._save()

    def jobs(self) -> list[JobStatus]:
        with self._cond:
            return [self._status(j) for j in self._jobs.values()]

    def status(self, job_id: str) -> JobStatus:
        with self._cond:
            return self._status(self._job(job_id))

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job is done, failed, cancelled or paused."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._job(job_id).state in ("queued", "running"):
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left if left is not None else 1.0)
            return self._status(self._job(job_id))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker; a running download is left as an interrupted job that resumes next time."""
        with self._cond:
            self._closing = True
            if self._current is not None:
                self._stop = "close"
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            self._save()

    # ---- the worker ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                while job is None and not self._closing:
                    self._cond.wait()
                    job = self._next()
                if self._closing:
                    return
                job.state, job.error, self._stop = "running", "", None
                self._current = job
                job.samples.clear()
                self._changed(job)
            outcome, error = "done", ""
            try:
                self._download(job)
            except Stopped:
                outcome = self._stop or "close"
            except LecternError as e:
                outcome, error = "failed", str(e)
            except OSError as e:          # the models folder cannot be written
                outcome, error = "failed", (f"Cannot write the download into {self._dir(job)}: "
                                            f"{e.strerror or e}; choose another models folder.")
            except Exception as e:  # a bug must not kill the queue
                outcome, error = "failed", f"unexpected error: {type(e).__name__}: {e}"
            self._finish(job, outcome, error)

    def _finish(self, job: Job, outcome: str, error: str) -> None:
        with self._cond:
            if self._stop == "cancel":      # cancelled as the last bytes arrived: still cancelled
                outcome = "cancel"
            self._current, self._stop = None, None
            if outcome == "cancel":
                job.state = "cancelled"
                self._delete_files(job)
            elif outcome == "pause":
                job.state = "paused"
            elif outcome == "close":
                job.state = "queued"
            else:
                job.state, job.error = outcome, error
            job.done_bytes = self._on_disk(job)
            job.samples.clear()
            self._changed(job)
            self._cond.notify_all()

    def _next(self) -> Job | None:
        return next((j for j in self._jobs.values() if j.state == "queued"), None)

    def _download(self, job: Job) -> None:
        from .client import auth_headers, file_url

        self._check_disk(job)
        headers = auth_headers(self.token)
        with self._cond:   # a completed file deleted since then is downloaded again
            job.completed = [p for p in job.completed if local_path(
                self._dir(job), job.repo_id, p).is_file()]
        job.done_bytes = sum(f.size for f in job.files if f.path in job.completed)
        for f in job.files:
            target = local_path(self._dir(job), job.repo_id, f.path)
            if target.is_file() and target.stat().st_size == f.size:
                if f.path not in job.completed:
                    job.completed.append(f.path)
                    self._progress(job, f.size)
                continue
            fetch(file_url(job.repo_id, f.path, f.revision), f, target, headers, repo_id=job.repo_id,
                  on_bytes=lambda n: self._progress(job, n),
                  on_reset=lambda n: self._progress(job, -n),
                  should_stop=lambda: self._stop is not None,
                  sleep=self._sleep, retries=self.retries, backoff=self.backoff,
                  read_timeout=self.read_timeout)
            with self._cond:
                job.completed.append(f.path)
                self._save()

    def _check_disk(self, job: Job) -> None:
        need = 0
        for f in job.files:
            target = local_path(self._dir(job), job.repo_id, f.path)
            if target.is_file() and target.stat().st_size == f.size:
                continue
            part = target.with_name(target.name + ".part")
            need += f.size - (min(part.stat().st_size, f.size) if part.is_file() else 0)
        free = self.disk_free(self._dir(job))
        if need + DISK_MARGIN > free:
            from ..model_info import human_bytes

            raise DiskFullError(
                f"Not enough disk space for {job.repo_id} {job.name}: it needs {human_bytes(need)} "
                f"more (plus {human_bytes(DISK_MARGIN)} to spare) but only {human_bytes(free)} is "
                f"free in {self._dir(job)}. Free some space or choose a smaller variant.")

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            end = time.monotonic() + seconds
            while self._stop is None and (left := end - time.monotonic()) > 0:
                self._cond.wait(left)

    def _progress(self, job: Job, n: int) -> None:
        with self._cond:
            job.done_bytes = max(0, job.done_bytes + n)
            now = time.monotonic()
            if n > 0:
                job.samples.append((now, job.done_bytes))
            else:
                job.samples.clear()
            while job.samples and now - job.samples[0][0] > SPEED_WINDOW:
                job.samples.popleft()
            if now - self._last_save > SAVE_EVERY:
                self._save()
            if now - self._last_update >= UPDATE_EVERY:
                self._last_update = now
                self._notify(job)

    # ---- bookkeeping --------------------------------------------------------------------------
    def _job(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise DownloadError(f"no download with id {job_id!r}") from None

    def _requeue(self, j: Job) -> None:
        j.state, j.error = "queued", ""
        self._changed(j)
        self._cond.notify_all()

    def _refresh(self, j: Job, variant: Variant) -> None:
        """Take a newer listing; partial files of a file that changed upstream are stale."""
        for old, new in zip(j.files, variant.files):
            if old.sha256 != new.sha256 or old.size != new.size:
                p = local_path(self._dir(j), j.repo_id, old.path)
                remove_part(p.with_name(p.name + ".part"))
        j.files = list(variant.files)
        j.done_bytes = self._on_disk(j)

    def _on_disk(self, j: Job) -> int:
        """Bytes of the job already downloaded: completed files plus .part files."""
        n = 0
        for f, p in zip(j.files, self._paths(j)):
            part = p.with_name(p.name + ".part")
            if f.path in j.completed and p.is_file():
                n += f.size
            elif part.is_file():
                n += min(part.stat().st_size, f.size)
        return n

    def _paths(self, j: Job) -> list[Path]:
        return [local_path(self._dir(j), j.repo_id, f.path) for f in j.files]

    def _dir(self, j: Job) -> Path:
        """The job's models folder: the one set when it was added. Changing the folder
        (models_dir) applies to new downloads; a job keeps its files where it started them."""
        return Path(j.dest) if j.dest else self.models_dir

    def _delete_files(self, j: Job) -> None:
        for f, p in zip(j.files, self._paths(j)):
            remove_part(p.with_name(p.name + ".part"))
            if f.path in j.completed:
                p.unlink(missing_ok=True)
        j.completed, j.done_bytes = [], 0

    def _status(self, j: Job) -> JobStatus:
        speed = 0.0
        if len(j.samples) >= 2 and j.samples[-1][0] > j.samples[0][0]:
            (t0, b0), (t1, b1) = j.samples[0], j.samples[-1]
            speed = (b1 - b0) / (t1 - t0)
        eta = (j.total - j.done_bytes) / speed if speed > 0 else None
        paths = [str(p) for p in self._paths(j)] if j.state == "done" else []
        return JobStatus(j.job_id, j.repo_id, j.name, j.state, j.done_bytes, j.total, speed, eta,
                         j.error, paths)

    def _changed(self, j: Job) -> None:
        self._save()
        self._notify(j)
        self._cond.notify_all()

    def _notify(self, j: Job) -> None:
        if self.on_update is not None:
            try:
                self.on_update(self._status(j))
            except Exception:  # a broken listener must not stop downloads
                pass

    def _save(self) -> None:
        self._last_save = time.monotonic()
        save_jobs(self.state_file, list(self._jobs.values()))

    def _load(self) -> None:
        from .client import check_repo_id

        jobs, self.load_error = load_jobs(self.state_file)
        for j in jobs:
            try:
                check_repo_id(j.repo_id)
                self._paths(j)
                if j.dest and not Path(j.dest).is_absolute():
                    raise DownloadError(f"{j.repo_id}: its folder {j.dest!r} is not an absolute path")
            except LecternError as e:     # an edited or damaged entry: dropped, and said so
                self.load_error += f"{' ' if self.load_error else ''}Dropped a download: {e}"
                continue
            if j.state == "running":     # interrupted by a crash or shutdown
                j.state = "queued"
            j.done_bytes = self._on_disk(j)
            self._jobs[j.job_id] = j
