"""Parts of `lectern bench` for long documents: synthetic benchmark models and context sweeps.

--synthetic NAME --type TYPE [--out FILE] [--layers N] [--experts N]: write a GGUF of a real
model's shapes with random valid weights (inference.synthetic), or, when it would exceed
--max-gb, only print its size and memory estimate ("on paper"); then benchmark it.
--contexts 1024,8192,...: for each size prefill that many random tokens into a fresh session,
decode a few tokens after it, and record tokens/s both ways and the resident memory.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


MIX_EPILOG = """Q4_K_M (llama.cpp's mix, as in inference/synthetic_blocks.py): output Q6_K; attn_k and attn_v
Q8_0 and attn_output Q5_K (models with >= 8 experts); ffn_down* Q6_K on llama.cpp's use_more_bits
layers, else Q4_K; all other matrices Q4_K; rows not a multiple of 256 fall back (Q4_K -> Q5_0,
Q5_K -> Q5_1, Q6_K -> Q8_0); vectors, router, conv taps, ssm_a and dt bias F32."""


def add_args(p) -> None:
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = MIX_EPILOG
    g = p.add_argument_group("long documents")
    g.add_argument("--synthetic", metavar="NAME",
                   help="write a synthetic model of real shapes (kimi-linear-48b-slice, "
                        "step35-flash-slice) with random weights, then benchmark it")
    g.add_argument("--type", default="Q4_K_M", metavar="TYPE",
                   help="weight type of the synthetic model: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 "
                        "Q2_K Q3_K Q4_K Q5_K Q6_K, or Q4_K_M (llama.cpp's mix; default)")
    g.add_argument("--out", metavar="FILE.gguf",
                   help="where to write it (default: the cache folder, reused if already there)")
    g.add_argument("--layers", type=int, metavar="N",
                   help="layer count (the real model's layer pattern continues): 27 for Kimi-Linear-48B, "
                        "45 for Step-3.5-Flash; big ones are only estimated, see --max-gb")
    g.add_argument("--experts", type=int, metavar="N", help="expert count (real models: 256, 288)")
    g.add_argument("--dims", metavar="K=V,...", help="other dimension overrides (tests: smaller widths)")
    g.add_argument("--max-gb", type=float, default=8.0,
                   help="write the synthetic model only below this size; else print the estimate (default 8)")
    g.add_argument("--contexts", metavar="N,N,...",
                   help="context sizes to prefill one after another (each followed by --decode-after decode steps)")
    g.add_argument("--chunk", type=int, default=None,
                   help="prefill chunk size for --contexts (default: the model's, 512 or kimi-linear's 2048)")


def rss_bytes() -> int:
    """Resident memory now (VmRSS), falling back to the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def parse_dims(text: str | None) -> dict:
    from inference import LecternError

    out = {}
    for part in filter(None, (text or "").split(",")):
        k, sep, v = part.partition("=")
        if not sep or not v.strip().isdigit():
            raise LecternError(f"--dims wants NAME=INTEGER pairs separated by commas, got {part!r}")
        out[k.strip()] = int(v)
    return out


def parse_contexts(text: str) -> list[int]:
    from inference import LecternError

    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise LecternError(f"--contexts wants positive token counts separated by commas, got {text!r}")
    return sizes


def synthetic_model(args) -> Path | None:
    """Write (or reuse) the synthetic model; None when it is only estimated."""
    from inference import synthetic
    from inference.paths import cache_dir

    dims = parse_dims(args.dims)
    if args.experts:
        dims["n_expert"] = args.experts
    spec = synthetic.build(args.synthetic, args.type, args.layers, dims)
    print_estimate(spec, args.contexts, getattr(args, "kv_type", "f16"))
    if spec.nbytes > args.max_gb * 1e9:
        print(f"not written: {spec.nbytes / 1e9:.2f} GB is over --max-gb {args.max_gb:g}", file=sys.stderr)
        return None
    if args.out:
        path = Path(args.out)
    else:
        tag = f"-L{spec.dims['n_layer']}" if args.layers else ""
        tag += f"-X{args.experts}" if args.experts else ""
        tag += "-" + args.dims.replace("=", "").replace(",", "-") if args.dims else ""
        path = cache_dir() / "synthetic" / f"{args.synthetic}-{args.type}{tag}.gguf"
        if path.exists() and path.stat().st_size >= spec.nbytes:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".part")
    synthetic.write(spec, tmp)
    tmp.replace(path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return path


def print_estimate(spec, contexts: str | None, kv_type: str = "f16") -> None:
    from inference.kv_cache import KV_BYTES

    kv = spec.kv_bytes_per_token(KV_BYTES[kv_type])
    fixed = spec.fixed_state_bytes()
    print(f"synthetic {spec.name} {spec.ftype}: {spec.dims['n_layer']} layers, "
          f"{spec.dims['n_expert']} experts, weights {spec.nbytes / 1e9:.3f} GB; "
          f"attention cache {kv} bytes/token ({kv_type.upper()}), fixed state {fixed / 1e6:.2f} MB", file=sys.stderr)
    for n in parse_contexts(contexts) if contexts else []:
        print(f"  at {n} tokens: weights + state = {(spec.nbytes + fixed + kv * n) / 1e9:.3f} GB",
              file=sys.stderr)


def state_bytes_per_token(state) -> int:
    """Bytes the state grows by per token: one row of every position-indexed (KV) buffer."""
    from inference.models.base import KV

    return sum(a.nbytes // a.shape[0] for k, a in state.arrays.items() if state.kinds.get(k) == KV)


def measure_contexts(engine, sizes: list[int], n_decode: int, chunk: int | None, seed: int) -> dict:
    """-> {"contexts": [...], "prefill_chunk": ..., "state_bytes_per_token": ..., "rss_growth_bytes_per_token": ...}
    (chunk None: the model's prefill chunk)"""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    per_token = 0
    for n in sizes:
        session = engine.session(n + n_decode)
        per_token = state_bytes_per_token(session.state)
        ids = rng.integers(0, engine.model.n_vocab, size=n + n_decode)
        pre = session.prefill(ids[:n], chunk=chunk)
        t0 = time.perf_counter()
        for t in ids[n:]:
            session.eval_token(int(t))
        dec = time.perf_counter() - t0
        rows.append({"tokens": n, "prefill_seconds": round(pre.seconds, 6),
                     "prefill_tokens_per_s": round(n / pre.seconds, 3) if pre.seconds > 0 else 0.0,
                     "decode_tokens": n_decode,
                     "decode_tokens_per_s": round(n_decode / dec, 3) if n_decode and dec > 0 else 0.0,
                     "rss_bytes": rss_bytes(), "state_bytes": session.state.nbytes()})
        print(f"context {n}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)   # progress of a long sweep
        del session
    out = {"contexts": rows, "prefill_chunk": chunk or engine.model.prefill_chunk, "state_bytes_per_token": per_token}
    if len(rows) > 1 and rows[-1]["tokens"] > rows[0]["tokens"]:
        out["rss_growth_bytes_per_token"] = round(
            (rows[-1]["rss_bytes"] - rows[0]["rss_bytes"]) / (rows[-1]["tokens"] - rows[0]["tokens"]), 1)
    return out


def print_contexts(r: dict) -> None:
    for c in r["contexts"]:
        print(f"context  {c['tokens']:>7} tokens: prefill {c['prefill_tokens_per_s']:9.2f} tokens/s, "
              f"then decode {c['decode_tokens_per_s']:7.2f} tokens/s; resident {c['rss_bytes'] / 1e6:8.1f} MB")
    line = f"state    {r['state_bytes_per_token']} bytes/token of attention cache (prefill in chunks of {r['prefill_chunk']})"
    if "rss_growth_bytes_per_token" in r:
        line += f"; resident memory grew {r['rss_growth_bytes_per_token']:.0f} bytes/token"
    print(line)
