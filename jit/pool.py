"""Row-splitting thread pool for the kernels.

`Pool(n)` keeps n-1 persistent Python worker threads; a call splits the rows [0, rows) into n
contiguous ranges (boundaries on multiples of 16 rows, so threads never write the same cache
line of y), hands one to each worker and runs the first itself. The kernels are ctypes
functions, which release the GIL while they run, so the workers run truly in parallel.
Rows are independent and every row runs the same code: any thread count gives identical bits.
LECTERN_THREADS sets the default size (default: os.cpu_count()).
"""
from __future__ import annotations

import os
import threading

ALIGN = 16  # rows: 16 floats of y = one 64-byte cache line


def default_threads() -> int:
    env = os.environ.get("LECTERN_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"LECTERN_THREADS={env!r} is not a whole number of threads") from None
        if n < 1:
            raise ValueError(f"LECTERN_THREADS={n}: need at least one thread")
        return n
    return os.cpu_count() or 1


def split(rows: int, n: int, align: int = ALIGN) -> list[tuple[int, int]]:
    """Contiguous, non-empty ranges covering [0, rows), at most n of them, cut on `align`."""
    units = -(-rows // align)
    n = max(1, min(n, units))
    out, start = [], 0
    for k in range(n):
        end = min(rows, ((k + 1) * units // n) * align)
        if end > start:
            out.append((start, end))
        start = end
    return out


class _Worker(threading.Thread):
    def __init__(self, pool: "Pool"):
        super().__init__(daemon=True, name="lectern-kernel")
        self.pool = pool
        self.go = threading.Semaphore(0)
        self.job = None

    def run(self) -> None:
        while True:
            self.go.acquire()
            job = self.job
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                self.pool._error = e
            self.pool._done.release()


class Pool:
    """A fixed set of threads that run one kernel over row ranges; call it from one thread at a time."""

    def __init__(self, n_threads: int | None = None, align: int = ALIGN):
        self.n = n_threads or default_threads()
        self.align = align
        self._workers = [_Worker(self) for _ in range(self.n - 1)]
        self._done = threading.Semaphore(0)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        for w in self._workers:
            w.start()

    def run(self, fn, head: tuple, rows: int, tail: tuple, chunk: int | None = None) -> None:
        """fn(*head, r0, r1, *tail) for ranges covering [0, rows), in parallel (cut on `chunk`
        rows if given, else on the pool's alignment)."""
        ranges = split(rows, self.n, chunk or self.align)
        with self._lock:
            self._error = None
            for w, (r0, r1) in zip(self._workers, ranges[1:]):
                w.job = (fn, (*head, r0, r1, *tail))
                w.go.release()
            r0, r1 = ranges[0]
            fn(*head, r0, r1, *tail)
            for _ in ranges[1:]:
                self._done.acquire()
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        for w in self._workers:
            w.job = None
            w.go.release()
        for w in self._workers:
            w.join()
        self._workers = []


_pools: dict[int, Pool] = {}
_pools_lock = threading.Lock()


def get_pool(n_threads: int | None = None) -> Pool:
    """The shared pool of that size (created on first use)."""
    n = n_threads or default_threads()
    with _pools_lock:
        if n not in _pools:
            _pools[n] = Pool(n)
        return _pools[n]
