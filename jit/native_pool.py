"""A native thread pool: workers spin (then sleep on a futex) in JIT-compiled code and take
row chunks from an atomic counter, so no Python runs per chunk and a call costs a few
microseconds. Linux only (futex); elsewhere use jit.pool.Pool.

Context block (i64 slots; hot counters on their own cache lines):
    0   gen        i32 job generation, also the futex word the idle workers sleep on
   64   next       next chunk to take (atomic fetch-add)
  128   done       chunks finished
  192   fn, w, xq, y, rows, n, chunk, nchunks, stop   the job (matvec signature)
  320   sleeping   workers inside futex_wait
  328   spin       pause iterations before sleeping
"""
from __future__ import annotations

import atexit
import ctypes
import functools
import sys
import threading
import weakref

import numpy as np

from . import compile as jc
from .cpu import CpuInfo, detect, is_x86
from .kernels.emit import ModuleText
from .pool import ALIGN, default_threads

SYS_FUTEX = {"x86_64": 202, "aarch64": 98}
FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 128, 129
CTX_BYTES = 384
MAX_CHUNK_BYTES = 256 << 10
SLOT = {"gen": 0, "next": 64, "done": 128, "fn": 192, "w": 200, "xq": 208, "y": 216, "rows": 224, "n": 232,
        "chunk": 240, "nchunks": 248, "stop": 256, "sleeping": 320, "spin": 328}


def _pause(fn) -> None:
    if is_x86():
        fn.declare("declare void @llvm.x86.sse2.pause()")
        fn.do("call void @llvm.x86.sse2.pause()")


@functools.cache
def pool_ir(cpu: CpuInfo, futex_nr: int) -> str:
    mt = ModuleText(cpu)
    mt.decls.add("declare i64 @syscall(i64, ...)")

    def slot(fn, name):
        return fn.gep("%ctx", str(SLOT[name]))

    # work(ctx): take chunks of the job of the generation read first, until none is left. `next`
    # carries that generation in its high 32 bits and chunks are claimed by compare-and-swap, so a
    # worker that is late (preempted between jobs) can never claim, run or count a chunk of the
    # next job with this job's arguments: its swap expects the old generation and fails.
    fn = mt.function("define internal void @work(ptr %ctx) nounwind")
    gen = fn.v("load atomic i32, ptr %ctx acquire, align 4")
    tag = fn.v(f"shl i64 {fn.v(f'zext i32 {gen} to i64')}, 32")
    f = fn.load("ptr", slot(fn, "fn"), 8)
    args = {k: fn.load("i64" if k in ("rows", "n", "chunk", "nchunks") else "ptr", slot(fn, k), 8)
            for k in ("w", "xq", "y", "rows", "n", "chunk", "nchunks")}
    fn.do("br label %take")
    fn.label("take")
    # chunks this thread ran: added to `done` once, when no chunk is left (not once per chunk:
    # the thread waiting on `done` would pull its cache line away after every chunk)
    fn.do("%cnt = phi i64 [0, %entry], [%cnt, %claim], [%cnt1, %run]")
    cur = fn.v(f"load atomic i64, ptr {slot(fn, 'next')} acquire, align 8")
    same = fn.v(f"icmp eq i64 {fn.v(f'and i64 {cur}, -4294967296')}, {tag}")
    c = fn.v(f"and i64 {cur}, 4294967295")
    left = fn.v(f"icmp slt i64 {c}, {args['nchunks']}")
    ok = fn.v(f"and i1 {same}, {left}")
    fn.do(f"br i1 {ok}, label %claim, label %out")
    fn.label("claim")
    pair = fn.v(f"cmpxchg ptr {slot(fn, 'next')}, i64 {cur}, i64 {fn.v(f'add i64 {cur}, 1')} acq_rel acquire")
    won = fn.v(f"extractvalue {{ i64, i1 }} {pair}, 1")
    fn.do(f"br i1 {won}, label %run, label %take")
    fn.label("run")
    r0 = fn.v(f"mul i64 {c}, {args['chunk']}")
    r1 = fn.v(f"add i64 {r0}, {args['chunk']}")
    r1 = fn.call("i64", "llvm.smin.i64", [f"i64 {r1}", f"i64 {args['rows']}"], "i64, i64")
    fn.do(f"call void {f}(ptr {args['w']}, ptr {args['xq']}, ptr {args['y']}, i64 {r0}, i64 {r1}, i64 {args['n']})")
    fn.do("%cnt1 = add i64 %cnt, 1")
    fn.do("br label %take")
    fn.label("out")
    fn.do("%ran = icmp sgt i64 %cnt, 0")
    fn.do("br i1 %ran, label %count, label %bye")
    fn.label("count")
    fn.v(f"atomicrmw add ptr {slot(fn, 'done')}, i64 %cnt release")
    fn.do("br label %bye")
    fn.label("bye")
    fn.do("ret void")
    mt.add(fn)

    # worker(ctx): wait for a new generation (spin, then futex), run it; return when stop is set
    fn = mt.function("define void @pool_worker(ptr %ctx) nounwind")
    spin = fn.load("i64", slot(fn, "spin"), 8)
    seen0 = fn.v("load atomic i32, ptr %ctx seq_cst, align 4")
    fn.do("br label %wait")
    fn.label("wait")
    fn.do("%seen = phi i32 [" + seen0 + ", %entry], [%g, %dowork], [%seen, %slept], [%seen, %spun]")
    fn.do("%k = phi i64 [0, %entry], [0, %dowork], [0, %slept], [%k1, %spun]")
    fn.do("%g = load atomic i32, ptr %ctx seq_cst, align 4")
    fn.do("%new = icmp ne i32 %g, %seen")
    fn.do("br i1 %new, label %job, label %idle")
    fn.label("idle")
    # a worker that starts late may first read a generation that already carries the stop
    halt0 = fn.v(f"load atomic i64, ptr {slot(fn, 'stop')} acquire, align 8")
    halt0 = fn.v(f"icmp ne i64 {halt0}, 0")
    fn.do(f"br i1 {halt0}, label %bye, label %idle2")
    fn.label("idle2")
    fn.do(f"%tired = icmp sge i64 %k, {spin}")
    fn.do("br i1 %tired, label %sleep, label %spun")
    fn.label("spun")
    _pause(fn)
    fn.do("%k1 = add i64 %k, 1")
    fn.do("br label %wait")
    fn.label("sleep")
    fn.v(f"atomicrmw add ptr {slot(fn, 'sleeping')}, i64 1 seq_cst")
    s64 = fn.v("zext i32 %seen to i64")
    fn.v(f"call i64 (i64, ...) @syscall(i64 {futex_nr}, ptr %ctx, i64 {FUTEX_WAIT_PRIVATE}, i64 {s64}, ptr null)")
    fn.v(f"atomicrmw sub ptr {slot(fn, 'sleeping')}, i64 1 seq_cst")
    fn.do("br label %slept")
    fn.label("slept")
    fn.do("br label %wait")
    fn.label("job")
    stop = fn.v(f"load atomic i64, ptr {slot(fn, 'stop')} acquire, align 8")
    halt = fn.v(f"icmp ne i64 {stop}, 0")
    fn.do(f"br i1 {halt}, label %bye, label %dowork")
    fn.label("dowork")
    fn.do("call void @work(ptr %ctx)")
    fn.do("br label %wait")
    fn.label("bye")
    fn.do("ret void")
    mt.add(fn)

    # run(ctx, fn, w, xq, y, rows, n, chunk): publish the job, wake, work too, wait for the rest
    fn = mt.function("define void @pool_run(ptr %ctx, ptr %f, ptr %w, ptr %xq, ptr %y, i64 %rows, i64 %n, "
                     "i64 %chunk) nounwind")
    fn.do(f"store atomic i64 0, ptr {slot(fn, 'done')} seq_cst, align 8")
    for k, v in (("fn", "%f"), ("w", "%w"), ("xq", "%xq"), ("y", "%y")):
        fn.store("ptr", v, slot(fn, k), 8)
    nch = fn.v("add i64 %rows, %chunk")
    nch = fn.v(f"sub i64 {nch}, 1")
    nch = fn.v(f"sdiv i64 {nch}, %chunk")
    for k, v in (("rows", "%rows"), ("n", "%n"), ("chunk", "%chunk"), ("nchunks", nch)):
        fn.store("i64", v, slot(fn, k), 8)
    # the next generation (this thread is the only one that advances it) tags the chunk counter
    g1 = fn.v(f"add i32 {fn.v('load atomic i32, ptr %ctx seq_cst, align 4')}, 1")
    g64 = fn.v(f"zext i32 {g1} to i64")
    tag = fn.v(f"shl i64 {g64}, 32")
    fn.do(f"store atomic i64 {tag}, ptr {slot(fn, 'next')} seq_cst, align 8")
    fn.v("atomicrmw add ptr %ctx, i32 1 seq_cst")
    sl = fn.v(f"load atomic i64, ptr {slot(fn, 'sleeping')} seq_cst, align 8")
    any_ = fn.v(f"icmp sgt i64 {sl}, 0")
    fn.do(f"br i1 {any_}, label %wake, label %mine")
    fn.label("wake")
    fn.v(f"call i64 (i64, ...) @syscall(i64 {futex_nr}, ptr %ctx, i64 {FUTEX_WAKE_PRIVATE}, i64 2147483647)")
    fn.do("br label %mine")
    fn.label("mine")
    fn.do("call void @work(ptr %ctx)")
    fn.do("br label %check")
    fn.label("check")
    d = fn.v(f"load atomic i64, ptr {slot(fn, 'done')} acquire, align 8")
    fin = fn.v(f"icmp sge i64 {d}, {nch}")
    fn.do(f"br i1 {fin}, label %end, label %spin")
    fn.label("spin")
    _pause(fn)
    fn.do("br label %check")
    fn.label("end")
    fn.do("ret void")
    mt.add(fn)

    # wake(ctx): sleeping workers return from futex_wait and spin again (the generation is
    # unchanged, so they find no job): called ahead of a burst of jobs, e.g. a decode step
    fn = mt.function("define void @pool_wake(ptr %ctx) nounwind")
    sl = fn.v(f"load atomic i64, ptr {slot(fn, 'sleeping')} seq_cst, align 8")
    fn.do(f"br i1 {fn.v(f'icmp sgt i64 {sl}, 0')}, label %wake, label %end")
    fn.label("wake")
    fn.v(f"call i64 (i64, ...) @syscall(i64 {futex_nr}, ptr %ctx, i64 {FUTEX_WAKE_PRIVATE}, i64 2147483647)")
    fn.do("br label %end")
    fn.label("end")
    fn.do("ret void")
    mt.add(fn)

    # stop(ctx): tell every worker to return
    fn = mt.function("define void @pool_stop(ptr %ctx) nounwind")
    fn.do(f"store atomic i64 1, ptr {slot(fn, 'stop')} seq_cst, align 8")
    fn.v("atomicrmw add ptr %ctx, i32 1 seq_cst")
    fn.v(f"call i64 (i64, ...) @syscall(i64 {futex_nr}, ptr %ctx, i64 {FUTEX_WAKE_PRIVATE}, i64 2147483647)")
    fn.do("ret void")
    mt.add(fn)
    return mt.text()


WORKER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
RUN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)


def supported() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.machine() in SYS_FUTEX


class NativePool:
    """Same interface as jit.pool.Pool for matvec-signature kernels (fn(w, xq, y, r0, r1, n))."""

    def __init__(self, n_threads: int | None = None, spin: int = 20000, cpu: CpuInfo | None = None,
                 chunks_per_thread: int = 4):
        import platform

        if not supported():
            raise jc.JitError("the native pool needs Linux on x86-64 or aarch64")
        cpu = cpu or detect()
        nr = SYS_FUTEX[platform.machine()]
        fns = jc.kernel(("native_pool", nr), lambda: pool_ir(cpu, nr),
                        {"pool_worker": WORKER, "pool_run": RUN, "pool_stop": WORKER, "pool_wake": WORKER}, cpu)
        self._run, self._stop, self._wake = fns["pool_run"], fns["pool_stop"], fns["pool_wake"]
        self.n = n_threads or default_threads()
        self.chunks_per_thread = chunks_per_thread
        self._ctx = np.zeros(CTX_BYTES // 8 + 8, np.int64)          # + slack to align to 64 bytes
        base = self._ctx.ctypes.data
        self.ctx = base + (-base % 64)
        ctypes.c_int64.from_address(self.ctx + SLOT["spin"]).value = spin
        self._lock = threading.RLock()    # re-entrant: a MoE block's callback prepares weights between jobs
        self._threads = [threading.Thread(target=fns["pool_worker"], args=(self.ctx,), daemon=True,
                                          name="lectern-native-kernel") for _ in range(self.n - 1)]
        for t in self._threads:
            t.start()
        _live.add(self)

    def chunk_rows(self, rows: int, row_bytes: int = 0) -> int:
        """Rows per chunk: chunks_per_thread chunks per thread, a multiple of ALIGN rows; with
        row_bytes (weight bytes per row) at most ~MAX_CHUNK_BYTES of weights, so a big matrix (a
        262k-row output head: 22 MB chunks otherwise) ends with threads a small chunk apart."""
        per = -(-rows // (self.n * self.chunks_per_thread))
        if row_bytes > 0 and self.n > 1:
            per = min(per, MAX_CHUNK_BYTES // row_bytes)
        return max(ALIGN, -(-per // ALIGN) * ALIGN)

    def run(self, fn, head: tuple, rows: int, tail: tuple, chunk: int | None = None) -> None:
        """fn(*head, r0, r1, *tail) over chunks of [0, rows); head = (w, xq, y), tail = (n,);
        chunks of `chunk` rows if given (else chunk_rows)."""
        if rows <= 0:
            return
        addr = ctypes.cast(fn, ctypes.c_void_p).value
        with self._lock:
            if self._threads is None:
                raise RuntimeError("the pool is closed")
            self._run(self.ctx, addr, *head, rows, *tail, chunk or self.chunk_rows(rows))

    def wake(self) -> None:
        """Get sleeping workers spinning again (no job): the next run finds them awake. Harmless
        at any time (a worker that finds no job spins, then sleeps again)."""
        if self._threads is not None:
            self._wake(self.ctx)

    def raw(self) -> tuple[int, int, threading.Lock]:
        """(address of pool_run, ctx, lock) for native code that runs jobs on this pool itself
        (jit.linear's linear_one); hold the lock around each such call."""
        return ctypes.cast(self._run, ctypes.c_void_p).value, self.ctx, self._lock

    def __del__(self):   # the workers watch self._ctx: stop them before it is freed
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def close(self) -> None:
        with self._lock:
            if getattr(self, "_threads", None) is None:
                return
            self._stop(self.ctx)
            for t in self._threads:
                t.join()
            self._threads = None


_live: "weakref.WeakSet[NativePool]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Stop the workers before the interpreter frees the memory they watch."""
    for pool in list(_live):
        pool.close()
