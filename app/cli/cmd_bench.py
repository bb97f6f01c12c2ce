"""`lectern bench`: prefill and decode speed, and the memory bandwidth decode achieves.

Like llama-bench: prefill P random token ids as one batch, then decode N tokens one at a time
(random ids again: the speed does not depend on which tokens). Decode is bound by memory
bandwidth, so next to tokens/s it reports the bytes of weights one token reads and the
resulting GB/s.
"""
from __future__ import annotations

import json
import os
import sys
import time

from .engine_args import add_model_args, model_path

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure prefill and decode speed",
                       description="Prefill P random tokens, decode N tokens, report tokens/s, "
                                   "weight bytes read per token and GB/s.")
    add_model_args(p, ctx=False)
    p.add_argument("-p", "--prompt-tokens", type=int, default=512, metavar="P",
                   help="tokens to prefill as one batch (default 512)")
    p.add_argument("-n", "--gen-tokens", type=int, default=128, metavar="N",
                   help="tokens to decode one by one (default 128)")
    p.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1, metavar="THREADS",
                   help="threads (the numpy path passes this to its BLAS; default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random token ids")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from inference import LecternError

    if args.prompt_tokens < 1 or args.gen_tokens < 0 or args.threads < 1:
        raise LecternError("bench needs -p >= 1, -n >= 0 and -t >= 1")
    if "numpy" not in sys.modules:     # BLAS reads these once, when numpy is first imported
        for var in _THREAD_VARS:
            os.environ[var] = str(args.threads)
    import numpy as np

    from inference.engine import Engine, weight_bytes_per_token

    engine = Engine.load(model_path(args))
    model = engine.model
    p, n = args.prompt_tokens, args.gen_tokens
    session = engine.session(p + n)
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, model.n_vocab, size=p + n)

    pre = session.prefill(ids[:p], chunk=p)
    t0 = time.perf_counter()
    for t in ids[p:]:
        session.eval_token(int(t))
    decode_s = time.perf_counter() - t0

    wbytes = weight_bytes_per_token(model)
    prefill_tps = p / pre.seconds if pre.seconds > 0 else 0.0
    decode_tps = n / decode_s if n and decode_s > 0 else 0.0
    result = {
        "file": str(engine.path),
        "architecture": engine.gguf.architecture,
        "file_bytes": engine.path.stat().st_size,
        "threads": args.threads,
        "backend": "numpy",
        "prompt_tokens": p,
        "gen_tokens": n,
        "prefill_seconds": round(pre.seconds, 4),
        "decode_seconds": round(decode_s, 4),
        "prefill_tokens_per_s": round(prefill_tps, 3),
        "decode_tokens_per_s": round(decode_tps, 3),
        "weight_bytes_per_token": wbytes,
        "decode_gb_per_s": round(wbytes * decode_tps / 1e9, 4),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"model    {engine.path.name} ({result['architecture']}, "
          f"{result['file_bytes'] / 1e6:.1f} MB), {args.threads} threads, numpy backend")
    print(f"prefill  {p} tokens in {pre.seconds:.2f} s: {prefill_tps:.2f} tokens/s")
    if n:
        print(f"decode   {n} tokens in {decode_s:.2f} s: {decode_tps:.2f} tokens/s")
    print(f"weights  {wbytes / 1e6:.2f} MB read per token: "
          f"{result['decode_gb_per_s']:.3f} GB/s while decoding")
    return 0
