"""`lectern bench`: prefill and decode speed, and the memory bandwidth decode achieves.

Like llama-bench: after an untimed warm-up (a prompt and a token), prefill P random token ids as
one batch, then decode N tokens one at a time
(random ids again: the speed does not depend on which tokens). Decode is bound by memory
bandwidth, so next to tokens/s it reports the bytes of weights one token reads and the
resulting GB/s. `--bandwidth` measures the machine's memory read bandwidth (a JIT streaming
kernels over a buffer of 32 x L3, at least 1 GB, same threads) and reports the fraction of it decode reaches;
`--llama-bench PATH` runs llama.cpp's llama-bench on the same file with the same threads and
sizes in the same run and prints our speed as a fraction of llama.cpp's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from . import bench_long
from .engine_args import add_model_args, model_path

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
KERNEL_TYPES = "Q4_K,Q4_0,Q8_0,Q4_1,Q5_0,Q5_K,Q6_K,Q3_K,Q2_K,IQ4_NL,IQ4_XS,F16,BF16"
KERNEL_MATRIX_BYTES = 256 << 20       # ~256 MB of weights: far beyond any desktop L3


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure prefill and decode speed",
                       description="Prefill P random tokens, decode N tokens from an empty context "
                                   "(llama-bench's ppP and tgN), each R times; report the mean "
                                   "tokens/s, weight bytes read per token and GB/s.")
    add_model_args(p, ctx=False)
    p.add_argument("-p", "--prompt-tokens", type=int, default=512, metavar="P",
                   help="tokens to prefill as one batch (default 512)")
    p.add_argument("-n", "--gen-tokens", type=int, default=128, metavar="N",
                   help="tokens to decode one by one (default 128)")
    p.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1, metavar="THREADS",
                   help="threads (JIT kernels: LECTERN_THREADS; numpy: its BLAS; default: all cores)")
    p.add_argument("-r", "--repetitions", type=int, default=5, metavar="N",
                   help="timed runs of each test, averaged as llama-bench does (its -r; default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random token ids")
    p.add_argument("--bandwidth", action="store_true",
                   help="also measure the memory read bandwidth and report the fraction of it reached")
    p.add_argument("--llama-bench", metavar="PATH",
                   help="also run llama.cpp's llama-bench at PATH on the same file and compare")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--kernels", metavar="TYPES", nargs="?", const=KERNEL_TYPES,
                   help="instead of a model: matvec GB/s per weight type on a matrix larger than the "
                        f"L3 cache, against the measured read bandwidth (default types {KERNEL_TYPES})")
    p.add_argument("--kernel-mb", type=int, default=KERNEL_MATRIX_BYTES >> 20, metavar="MB",
                   help="weight matrix size for --kernels (default %(default)s MB)")
    p.add_argument("--kernel-repeat", type=int, default=10, metavar="N",
                   help="timed matvecs per type for --kernels, best counts (default %(default)s)")
    p.add_argument("--cpu-time", action="store_true",
                   help="--kernels with -t 1: time the matvecs and the read passes with the thread's CPU "
                        "clock (time the scheduler gives to other processes is not counted)")
    p.add_argument("--bandwidth-mb", type=int, default=0, metavar="MB",
                   help="read-bandwidth buffer for --kernels and --bandwidth (default: 32 x L3, >= 1024)")
    bench_long.add_args(p)
    p.add_argument("--decode-after", type=int, default=16, metavar="N",
                   help="tokens decoded after each --contexts prefill (default 16)")
    p.set_defaults(func=run)


def measure_bandwidth(threads: int, mb: int = 0) -> float:
    """Memory read bandwidth in bytes/s: best of 5 rounds of the JIT read kernels over a buffer
    of mb MB (default 32 x L3, at least 1 GB)."""
    from jit.bench import default_read_mb, read_bandwidth
    from jit.cpu import detect
    from jit.native_pool import supported

    return read_bandwidth(mb or default_read_mb(), threads, 5, detect(), "native" if supported() else "python") * 1e9


def llama_bench(exe: str, model: str, p: int, n: int, threads: int, kv_type: str = "f16",
                reps: int = 5) -> tuple[float, float]:
    """Run llama-bench (-p P -n N -t THREADS -r REPS -ctk/-ctv KV -o json) -> (prefill tokens/s,
    decode tokens/s), each its avg_ts: the mean over the repetitions of tokens/s."""
    from inference import LecternError

    cmd = [exe, "-m", model, "-p", str(p), "-n", str(n), "-t", str(threads), "-r", str(reps)]
    if kv_type != "f16":                          # llama-bench's default cache type is f16
        cmd += ["-ctk", kv_type, "-ctv", kv_type]
    cmd += ["-o", "json"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except OSError as e:
        raise LecternError(f"could not run llama-bench at {exe}: {e}") from e
    if out.returncode != 0:
        why = f"killed by signal {-out.returncode}" if out.returncode < 0 else f"exit status {out.returncode}"
        raise LecternError(f"llama-bench failed ({why}): {out.stderr.strip()[-500:]}")
    try:
        rows = json.loads(out.stdout)
        pre = [r["avg_ts"] for r in rows if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0]
        dec = [r["avg_ts"] for r in rows if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise LecternError(f"llama-bench printed no JSON results ({e}): {out.stdout[:300]!r}") from e
    if (p and not pre) or (n and not dec):
        raise LecternError(f"llama-bench gave no pp{p}/tg{n} result: {out.stdout[:300]!r}")
    return (float(pre[0]) if pre else 0.0), (float(dec[0]) if dec else 0.0)


def run(args) -> int:
    from inference import LecternError

    if args.prompt_tokens < 1 or args.gen_tokens < 0 or args.threads < 1 or args.repetitions < 1:
        raise LecternError("bench needs -p >= 1, -n >= 0, -t >= 1 and -r >= 1")
    if "numpy" not in sys.modules:     # BLAS reads these once, when numpy is first imported
        for var in _THREAD_VARS:
            os.environ[var] = str(args.threads)
    os.environ["LECTERN_THREADS"] = str(args.threads)    # the JIT kernels' thread pool
    if args.kernels:
        return kernels(args)
    contexts = bench_long.parse_contexts(args.contexts) if args.contexts else None
    if args.synthetic:
        path = bench_long.synthetic_model(args)
        if path is None:                                  # estimate only
            return 0
        args.model = str(path)
    import numpy as np

    from inference.engine import Engine, weight_bytes_per_token
    from inference.ops import _jit_linear

    engine = Engine.load(model_path(args), kv_type=args.kv_type)
    model = engine.model
    out_w = model.gguf.tensors.get("output.weight") or model.gguf.tensors["token_embd.weight"]
    backend = "jit" if _jit_linear(out_w) is not None else "numpy"
    p, n = args.prompt_tokens, args.gen_tokens
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, model.n_vocab, size=p + n)
    # warm up as llama-bench does (a prompt and a token, untimed): the kernels load, the weights'
    # pages are mapped, the pools start; what is timed next is the steady speed
    if p:
        warm = engine.session(max(p + 1, min_ctx()))
        warm.prefill(ids[:p], chunk=p)
        warm.eval_token(int(ids[0]))
        del warm

    pre_runs, dec_runs = timed_runs(engine, ids, p, n, args.repetitions)
    pre_s, decode_s = _mean(pre_runs), _mean(dec_runs)
    wbytes = weight_bytes_per_token(model)
    prefill_tps = _mean([p / s for s in pre_runs if s > 0])
    decode_tps = _mean([n / s for s in dec_runs if s > 0]) if n else 0.0
    result = {
        "file": str(engine.path),
        "architecture": engine.gguf.architecture,
        "file_bytes": engine.path.stat().st_size,
        "threads": args.threads,
        "backend": backend,
        "kv_type": engine.kv_type,
        "prompt_tokens": p,
        "gen_tokens": n,
        "repetitions": args.repetitions,
        "prefill_seconds": round(pre_s, 6),
        "decode_seconds": round(decode_s, 6),
        "prefill_runs_seconds": [round(s, 6) for s in pre_runs],
        "decode_runs_seconds": [round(s, 6) for s in dec_runs],
        "prefill_tokens_per_s": round(prefill_tps, 3),
        "decode_tokens_per_s": round(decode_tps, 3),
        "weight_bytes_per_token": wbytes,
        # a prefill batch reads the weights once for all its tokens
        "prefill_weight_bytes_per_token": round(wbytes / p, 1),
        "prefill_gb_per_s": round(wbytes / p * prefill_tps / 1e9, 4),
        "decode_gb_per_s": round(wbytes * decode_tps / 1e9, 4),
    }
    if args.bandwidth:
        bw = measure_bandwidth(args.threads, args.bandwidth_mb)
        result["bandwidth_bytes_per_s"] = round(bw)
        result["prefill_bandwidth_fraction"] = round(result["prefill_gb_per_s"] * 1e9 / bw, 4)
        result["decode_bandwidth_fraction"] = round(result["decode_gb_per_s"] * 1e9 / bw, 4)
    if contexts:
        result.update(bench_long.measure_contexts(engine, contexts, max(0, args.decode_after),
                                                  None if args.chunk is None else max(1, args.chunk), args.seed))
    failed = None
    if args.llama_bench:
        try:
            lp, ld = llama_bench(args.llama_bench, str(engine.path), p, n, args.threads, engine.kv_type,
                                 args.repetitions)
        except LecternError as e:     # keep our own figures: print them, then fail
            failed = e
            result["llama_bench_error"] = str(e)
        else:
            result["llama_prefill_tokens_per_s"] = round(lp, 3)
            result["llama_decode_tokens_per_s"] = round(ld, 3)
            result["prefill_ratio_to_llama"] = round(prefill_tps / lp, 4) if lp else None
            result["decode_ratio_to_llama"] = round(decode_tps / ld, 4) if ld else None
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result, engine.path.name, p, n, pre_s, decode_s)
        if contexts:
            bench_long.print_contexts(result)
    if failed is not None:
        raise failed
    return 0


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def min_ctx() -> int:
    """Tokens a timed session holds at least: the JIT attention's smallest ring. A shorter cache
    (or sliding-window ring) runs attention on numpy, which a chat never does (-n 32 on
    step35-flash-slice measured ~15 t/s against ~25 with -n 64)."""
    from jit.attention import MIN_RING

    return MIN_RING


def timed_runs(engine, ids, p: int, n: int, reps: int) -> tuple[list[float], list[float]]:
    """reps timed runs of each test as llama-bench times them -> (prefill seconds, decode
    seconds) per run: pp, the p prompt tokens as one batch into an empty session; tg, n tokens
    decoded one by one from an empty context (ids after the prompt's)."""
    pre_runs, dec_runs = [], []
    least = min_ctx()
    for _ in range(reps):
        session = engine.session(max(p, least))
        pre_runs.append(session.prefill(ids[:p], chunk=p).seconds)
        del session
        if n:
            session = engine.session(max(n, least))
            t0 = time.perf_counter()
            for t in ids[p:]:
                session.eval_token(int(t))
            dec_runs.append(time.perf_counter() - t0)
            del session
    return pre_runs, dec_runs


def print_report(r: dict, name: str, p: int, n: int, pre_s: float, dec_s: float) -> None:
    bw = r.get("bandwidth_bytes_per_s")

    def frac(key):
        return f" = {100 * r[key]:.1f}% of {bw / 1e9:.2f} GB/s measured" if bw else ""

    print(f"model    {name} ({r['architecture']}, {r['file_bytes'] / 1e6:.1f} MB), "
          f"{r['threads']} threads, {r['backend']} backend, {r['kv_type']} KV cache")
    runs = f" (mean of {r['repetitions']} runs)" if r["repetitions"] > 1 else ""
    print(f"prefill  {p} tokens in {pre_s:.2f} s{runs}: {r['prefill_tokens_per_s']:.2f} tokens/s, "
          f"{r['prefill_weight_bytes_per_token'] / 1e6:.3f} MB of weights per token, "
          f"{r['prefill_gb_per_s']:.3f} GB/s{frac('prefill_bandwidth_fraction')}")
    if n:
        print(f"decode   {n} tokens in {dec_s:.2f} s{runs}, from an empty context: "
              f"{r['decode_tokens_per_s']:.2f} tokens/s")
    print(f"weights  {r['weight_bytes_per_token'] / 1e6:.2f} MB read per token: "
          f"{r['decode_gb_per_s']:.3f} GB/s while decoding{frac('decode_bandwidth_fraction')}")
    if "llama_prefill_tokens_per_s" in r:
        lp, ld = r["llama_prefill_tokens_per_s"], r["llama_decode_tokens_per_s"]
        print(f"llama.cpp pp{p} {lp:.2f} tokens/s (ours {r['prefill_ratio_to_llama'] or 0:.2f}x), "
              f"tg{n} {ld:.2f} tokens/s (ours {r['decode_ratio_to_llama'] or 0:.2f}x)")


def kernels(args) -> int:
    """lectern bench --kernels: the matvec micro-benchmark (no model needed). Each timed matvec
    is followed by one pass of the read-bandwidth kernels over a buffer >> L3, and every fraction
    is taken of the best read pass of the whole run (an upper bound under the same load). Beside it,
    each kernel's rate on one core with its matrix in L2: its arithmetic ceiling, so a reader sees
    whether the memory or the arithmetic held it back."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

    from inference import LecternError
    from jit.bench import Reader, default_read_mb, matvec_table
    from jit.cpu import detect
    from jit.native_pool import supported

    names = [t.strip().upper() for t in args.kernels.split(",") if t.strip()]
    for name in names:
        if name not in T.__members__:
            raise LecternError(f"unknown weight type {name!r}; try: {KERNEL_TYPES}")
    mb = args.bandwidth_mb or default_read_mb()
    if args.cpu_time and args.threads != 1:
        raise LecternError("--cpu-time measures one thread: use it with -t 1")
    import jit.bench

    jit.bench.CLOCK = time.thread_time if args.cpu_time else time.perf_counter   # 1 thread: this one
    rows_out, reader = [], None
    try:
        reader = Reader(mb, args.threads, detect(), "native" if supported() else "python")
        for name in names:
            block, size = GGML_QUANT_SIZES[T[name]]
            cols = 8192 if 8192 % block == 0 else block * 32
            rows = max(16, (args.kernel_mb << 20) // (cols // block * size) // 8 * 8)   # whole 8-row groups
            rows_out += matvec_table([name], rows, cols, args.threads, args.kernel_repeat, reader)
    finally:
        jit.bench.CLOCK = time.perf_counter
        if reader is not None:
            reader.close()
    bw = reader.best * 1e9
    for row in rows_out:
        row["fraction_of_bandwidth"] = row["gb_per_s"] * 1e9 / bw
    if args.json:
        print(json.dumps({"threads": args.threads, "bandwidth_bytes_per_s": bw, "bandwidth_buffer_mb": mb,
                          "cpu_time": bool(args.cpu_time),
                          "kernels": rows_out}))
        return 0
    clock = "thread CPU time" if args.cpu_time else "wall time"
    print(f"read bandwidth: {bw / 1e9:.1f} GB/s, best read pass (each as long as a matrix, slices of a {mb} MB "
          f"buffer), {args.threads} thread(s), {clock}, load average {os.getloadavg()[0]:.1f}")
    for row in rows_out:
        print(f"{row['type']:6s} {row['rows']}x{row['cols']} ({row['bytes'] / 1e6:6.1f} MB) {args.threads}T: "
              f"{row['gb_per_s']:6.1f} GB/s = {100 * row['fraction_of_bandwidth']:5.1f}% of read bandwidth; "
              f"one core, matrix in L2: {row['in_cache_gb_per_s']:5.1f} GB/s"
              + ("" if row["layout"] == "gguf" else f"  ({row['layout']}, as the engine stores it)"))
    return 0
