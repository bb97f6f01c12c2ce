"""Micro-benchmark of the matvec kernels: `python -m jit.bench [--mb 1024] [--repeat 5]`.

Reports memory read bandwidth (a JIT streaming-read kernel and a numpy copy), then per weight
type the matvec throughput in GB/s of weight bytes and as a fraction of the read bandwidth, with
1 and 2 threads, plus the per-call overhead of the thread pool on a tiny matrix.
Decode is bound by reading weights, so GB/s / bandwidth is the figure that matters.
"""
from __future__ import annotations

import argparse
import functools
import time

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from . import api
from . import compile as jc
from .cpu import CpuInfo, detect
from .kernels.emit import ModuleText
from .native_pool import NativePool, supported
from .pool import Pool


def make_pool(kind: str, n: int):
    return NativePool(n) if kind == "native" else Pool(n)


STREAMS = (1, 2, 4)     # read kernel variants: independent sequential streams per thread


@functools.cache
def _read_ir(cpu: CpuInfo, streams: int) -> str:
    """stream_read(p, _, y, r0, r1, n): y[r] = bits of the xor of row r's n bytes (n % (256 *
    streams) == 0). The row is cut into `streams` equal parts read side by side, 256 bytes of
    each per step in the widest loads the target has (LLVM splits <64 x i8> into 2 ymm or 1 zmm);
    nothing else runs, so it reads as fast as this core's load pipes and the hardware prefetcher
    allow: an upper bound for any kernel that streams the same bytes."""
    mt = ModuleText(cpu)
    fn = mt.function("define void @stream_read(ptr noalias %w, ptr noalias %xq, ptr noalias %y, "
                     "i64 %r0, i64 %r1, i64 %n) nounwind")
    with fn.loop("%r0", "%r1", stem="row") as R:
        base = fn.gep("%w", fn.v(f"mul i64 {R.i}, %n"))
        part = fn.v(f"udiv i64 %n, {streams}")
        bases = [base] + [fn.gep(base, fn.v(f"mul i64 {part}, {s}")) for s in range(1, streams)]
        with fn.loop("0", part, step=256, stem="c") as C:
            accs = [C.carry("<64 x i8>", "zeroinitializer") for _ in bases]
            for b, acc in zip(bases, accs):
                a = acc
                for k in range(4):
                    a = fn.v(f"xor <64 x i8> {a}, {fn.load('<64 x i8>', fn.gep(b, fn.v(f'add i64 {C.i}, {64 * k}')), 1)}")
                C.set(acc, a)
        acc = accs[0]
        for a in accs[1:]:
            acc = fn.v(f"xor <64 x i8> {acc}, {a}")
        r = fn.call("i8", "llvm.vector.reduce.xor.v64i8", [f"<64 x i8> {acc}"], "<64 x i8>")
        r = fn.v(f"uitofp i8 {r} to float")
        fn.store("float", r, fn.gep("%y", fn.v(f"shl i64 {R.i}, 2")), 4)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()


CLOCK = time.perf_counter


def best_time(f, repeat: int) -> float:
    f()
    best = float("inf")
    for _ in range(repeat):
        t = CLOCK()
        f()
        best = min(best, CLOCK() - t)
    return best


def l3_bytes() -> int:
    """The largest cache's size (sysfs), 32 MB if unknown."""
    import glob

    best = 0
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        best = max(best, int(text.rstrip("KMG") or 0) * mult)
    return best or 32 << 20


def default_read_mb() -> int:
    """Bandwidth buffer: at least 32 x the last-level cache, and 1 GB."""
    return max(1024, 32 * l3_bytes() >> 20)


class Reader:
    """Memory read bandwidth: a buffer of `mb` MB (pick it >> L3) read by every STREAMS variant
    of the JIT read kernel on `threads` threads (rows of 1 MB taken from the pool's chunk counter).
    `once(nbytes)` times one pass of each variant (over the next nbytes-long slice, or the whole
    buffer) and returns the best GB/s; `best` is the highest seen so far. Interleave once() with
    the runs it is a reference for, reading as many bytes: on a shared machine both then see the
    same load for as long, and the reference is the best of all those passes."""

    def __init__(self, mb: int, threads: int, cpu: CpuInfo | None = None, kind: str = "native"):
        cpu = cpu or detect()
        self.kerns = [jc.kernel(("bench", "stream_read", s), lambda s=s: _read_ir(cpu, s),
                                {"stream_read": api.MATVEC_PROTO}, cpu)["stream_read"] for s in STREAMS]
        self.rows, self.row = mb, 1 << 20
        self.buf = np.ones(self.rows * self.row, np.uint8)       # written: every page is really there
        self.y = np.empty(self.rows, np.float32)
        self.pool = make_pool(kind, threads)
        self.best, self.next = 0.0, 0
        for k in self.kerns:    # warm up: page tables, caches of the kernel code
            self._pass(k)

    def _pass(self, kern, first: int = 0, rows: int | None = None) -> float:
        rows = self.rows if rows is None else rows
        t = CLOCK()
        self.pool.run(kern, (self.buf.ctypes.data + first * self.row, 0, self.y.ctypes.data), rows, (self.row,))
        return rows * self.row / (CLOCK() - t) / 1e9

    def once(self, nbytes: int | None = None) -> float:
        """One pass of each variant; nbytes: each pass reads only that much (whole MB), the next
        slice of the buffer each time, so a pass is as long as the run it is compared with (as
        exposed to preemption) and still never finds its bytes in a cache."""
        rows = self.rows if nbytes is None else max(1, min(self.rows, -(-nbytes // self.row)))
        gbs = 0.0
        for k in self.kerns:
            if self.next + rows > self.rows:
                self.next = 0
            gbs = max(gbs, self._pass(k, self.next, rows))
            self.next += rows
        self.best = max(self.best, gbs)
        return gbs

    def close(self) -> None:
        self.pool.close()
        self.buf = None


def read_bandwidth(mb: int, threads: int, repeat: int, cpu: CpuInfo, kind: str = "python") -> float:
    """Best GB/s of `repeat` rounds of Reader.once() over an `mb` MB buffer."""
    r = Reader(mb, threads, cpu, kind)
    try:
        for _ in range(repeat):
            r.once()
        return r.best
    finally:
        r.close()


def copy_bandwidth(mb: int, repeat: int) -> float:
    a = np.ones(mb << 20, np.uint8)
    b = np.empty_like(a)
    t = best_time(lambda: np.copyto(b, a), repeat)
    return 2 * a.nbytes / t / 1e9   # read + write


def random_matrix(qtype: T, rows: int, n_cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bs, bb = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        return rng.standard_normal(rows * n_cols, dtype=np.float32).view(np.uint8)
    if qtype == T.F16:
        return rng.standard_normal(rows * n_cols, dtype=np.float32).astype(np.float16).view(np.uint8)
    if qtype == T.BF16:
        return (rng.standard_normal(rows * n_cols, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).view(
            np.uint8)
    b = rng.integers(0, 256, (rows * n_cols // bs, bb), dtype=np.uint8)
    offs = {T.Q8_0: (0,), T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q4_K: (0, 2),
            T.Q5_K: (0, 2), T.Q6_K: (208,),
            T.IQ4_NL: (0,), T.IQ4_XS: (0,), T.Q2_K: (80, 82), T.Q3_K: (108,)}[qtype]
    for o in offs:
        b[:, o:o + 2] = np.array([0.01], np.float16).view(np.uint8)
    return b.reshape(-1)


L2_SLICE = 384 << 10    # bytes of weights for the in-cache run: inside a Zen 3 / most cores' L2


def in_cache_rate(kern, w: np.ndarray, xq: np.ndarray, rows: int, cols: int, repeat: int = 5) -> float:
    """GB/s of this thread calling the kernel again and again on the first rows of the matrix that fit in
    L2_SLICE bytes (whole 8-row groups): its arithmetic rate on one core with no memory to wait for. The
    ctypes call's own cost (an empty call, timed the same way) is taken off; inf when the slice is too
    small to tell from that cost."""
    per_row = w.nbytes // rows
    n = min(rows, max(8, L2_SLICE // per_row // 8 * 8))
    y = np.empty(n, np.float32)
    a, b, c = w.ctypes.data, xq.ctypes.data, y.ctypes.data
    calls = min(20000, max(8, int(4e7 // (n * per_row))))    # ~40 MB a batch, a few ms

    def batch(r1: int) -> float:
        return best_time(lambda: [kern(a, b, c, 0, r1, cols) for _ in range(calls)], repeat) / calls
    t = batch(n) - batch(0)
    return n * per_row / t / 1e9 if t > 0 else float("inf")


def matvec_table(types: list[str], rows: int, cols: int, threads: int, repeat: int = 5,
                 reader: Reader | None = None) -> list[dict]:
    """Matvec speed per weight type on a rows x cols matrix (pick it larger than the L3 cache), in
    the layout the engine keeps it in (jit/repack.py: "q4_0x8" / "q8_0x8" for a repacked matrix,
    else "gguf"): [{type, layout, rows, cols, bytes, seconds, gb_per_s}], best of `repeat`,
    `threads` native threads. With a Reader, each timed matvec is followed by one bandwidth pass
    over as many bytes (reader.once(w.nbytes)). in_cache_gb_per_s: in_cache_rate, the kernel's
    arithmetic ceiling on one core; `threads` times it bounds what memory could ever give."""
    from . import repack

    kind = "native" if supported() else "python"
    x = np.random.default_rng(1).standard_normal(cols).astype(np.float32)
    out = []
    for name in types:
        qt = T[name]
        w = random_matrix(qt, rows, cols)
        layout, kern = "gguf", api.matvec_kernel(qt)
        packed = repack.prepare(qt, w, rows, cols) if repack.applies(qt, rows) else None
        if packed is not None:
            (w, kern, _), layout = packed, f"{name.lower()}x8"
        pool = make_pool(kind, threads)
        y = np.empty(rows, np.float32)

        def once():                       # quantize x, then the matvec (matvec_raw's work)
            xq = api.quantize_activation(x, qt)
            pool.run(kern, (w.ctypes.data, xq.ctypes.data, y.ctypes.data), rows, (cols,))
        try:
            once()                                                      # warm: compile, page tables
            t = float("inf")
            for _ in range(repeat):
                t0 = CLOCK()
                once()
                t = min(t, CLOCK() - t0)
                if reader is not None:
                    reader.once(w.nbytes)
        finally:
            pool.close()
        core = in_cache_rate(kern, w, api.quantize_activation(x, qt), rows, cols, repeat)   # pool's threads gone
        out.append({"type": name, "layout": layout, "rows": rows, "cols": cols, "bytes": int(w.nbytes),
                     "seconds": t, "gb_per_s": w.nbytes / t / 1e9, "in_cache_gb_per_s": core})
        del w
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m jit.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=default_read_mb(), help="buffer size for the bandwidth measurement")
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--cols", type=int, default=8192)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--types", default="Q4_K,Q4_0,Q8_0,Q4_1,Q5_0,Q5_K,Q6_K,F16,BF16,IQ4_NL,IQ4_XS")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the calling thread's CPU clock (1 thread only): meaningful on a loaded machine")
    ap.add_argument("--pool", choices=["native", "python"], default="native" if supported() else "python")
    args = ap.parse_args(argv)
    cpu = detect()
    threads = [int(t) for t in args.threads.split(",")]
    if args.cpu_time:
        global CLOCK
        CLOCK = time.thread_time
        threads = [1]
        print("timing with the thread CPU clock (time off the CPU is not counted)")
    print(f"CPU: {cpu.tag}; pool: {args.pool}")
    bw = {}
    for n in threads:
        bw[n] = read_bandwidth(args.mb, n, args.repeat, cpu, args.pool)
        print(f"read bandwidth ({args.mb} MB, JIT streaming read, {n} thread(s)): {bw[n]:.1f} GB/s")
    print(f"numpy copy ({args.mb} MB, read+write counted): {copy_bandwidth(args.mb, args.repeat):.1f} GB/s")
    x = np.random.default_rng(1).standard_normal(args.cols).astype(np.float32)
    for name in args.types.split(","):
        qt = T[name]
        w = random_matrix(qt, args.rows, args.cols)
        for n in threads:
            pool = make_pool(args.pool, n)
            y = np.empty(args.rows, np.float32)
            t = best_time(lambda: api.matvec_raw(w, qt, args.rows, args.cols, x, out=y, pool=pool), args.repeat)
            pool.close()
            gbs = w.nbytes / t / 1e9
            print(f"{name:5s} {args.rows}x{args.cols} ({w.nbytes / 1e6:6.1f} MB) {n}T: {t * 1e3:7.2f} ms "
                  f"{gbs:6.1f} GB/s = {100 * gbs / bw[n]:5.1f}% of read bandwidth")
    # per-call overhead: a tiny matvec, where nearly all time is calling and synchronising
    w = random_matrix(T.Q8_0, 64, 256)
    x = np.ones(256, np.float32)
    kern = api.matvec_kernel(T.Q8_0)
    xq = api.quantize_activation(x, T.Q8_0)
    y = np.empty(64, np.float32)
    ptrs = (w.ctypes.data, xq.ctypes.data, y.ctypes.data)
    for kind in ("python", "native") if supported() else ("python",):
        for n in threads:
            pool = make_pool(kind, n)
            reps = 2000
            pool.run(kern, ptrs, 64, (256,))
            t0 = time.perf_counter()
            for _ in range(reps):
                pool.run(kern, ptrs, 64, (256,))
            dt = (time.perf_counter() - t0) / reps
            pool.close()
            print(f"{kind} pool.run on a 64x256 Q8_0 matvec, {n} thread(s): {dt * 1e6:.1f} us per call")
    t0 = time.perf_counter()
    for _ in range(2000):
        kern(*ptrs, 0, 64, 256)
    print(f"direct ctypes call of the same kernel: {(time.perf_counter() - t0) / 2000 * 1e6:.1f} us per call")
    t0 = time.perf_counter()
    for _ in range(2000):
        api.matvec_raw(w, T.Q8_0, 64, 256, x, out=y, threads=1)
    print(f"api.matvec_raw (quantize + checks + 1 thread): {(time.perf_counter() - t0) / 2000 * 1e6:.1f} us per call")

    class _W:   # a stand-in for inference.gguf_file.Tensor
        name, shape, ggml_type, data = "bench", (64, 256), T.Q8_0, w

    for n in threads:
        op = api.MatvecOp(_W, pool=make_pool("native" if supported() else "python", n))
        op(x, out=y)
        t0 = time.perf_counter()
        for _ in range(2000):
            op(x, out=y)
        op._pool.close()
        print(f"api.MatvecOp call (quantize + {n}-thread native pool run): "
              f"{(time.perf_counter() - t0) / 2000 * 1e6:.1f} us per call")


if __name__ == "__main__":
    main()
