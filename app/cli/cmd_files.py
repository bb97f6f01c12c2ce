"""`lectern files REPO [--ctx N] [--json]`: a repository's GGUF variants, their size and fit in RAM."""
from __future__ import annotations

import argparse
import json
import sys

DEFAULT_CTX = 4096


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("files", help="list the quantization variants of a Hugging Face GGUF repository",
                       description="List the GGUF variants of a Hugging Face repository with their "
                                   "size, the RAM they need at a context length (read from the "
                                   "file header) and whether they fit in this machine's RAM. The "
                                   "recommended variant is marked with *.")
    p.add_argument("repo", metavar="REPO", help="repository id, e.g. unsloth/Qwen3-0.6B-GGUF")
    p.add_argument("--ctx", type=int, default=DEFAULT_CTX, metavar="N",
                   help=f"context length for the RAM estimate (default {DEFAULT_CTX})")
    p.add_argument("--json", action="store_true", help="print the variants as JSON")
    p.set_defaults(func=run)


def variant_table(repo: str, n_ctx: int):
    """(variants, estimates, verdicts, recommended, ram) for a repository."""
    from app.library import total_ram
    from inference.hub import HubAuthError, estimate_all, fit_verdict, list_variants, recommend
    from inference.hub.estimate import size_estimate

    variants = list_variants(repo)
    try:
        estimates = estimate_all(repo, variants, n_ctx)
    except HubAuthError as e:   # a gated repository lists its files but not their headers
        print(f"lectern: note: RAM estimated from the file sizes; {e}", file=sys.stderr)
        estimates = [size_estimate(v.size, n_ctx) for v in variants]
    ram = total_ram()
    verdicts = [fit_verdict(e.total, ram) for e in estimates]
    return variants, estimates, verdicts, recommend(variants, estimates, ram), ram


def run(args) -> int:
    from inference.hub import HubError
    from inference.model_info import human_bytes

    if args.ctx < 1:
        raise HubError(f"--ctx must be a positive number of tokens, not {args.ctx}")
    variants, estimates, verdicts, best, ram = variant_table(args.repo, args.ctx)
    if args.json:
        print(json.dumps({"repo_id": args.repo, "ram_bytes": ram, "n_ctx": args.ctx, "variants": [
            {"name": v.name, "quant": v.quant, "size": v.size,
             "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in v.files],
             "ram": {"weights": e.weights, "cache": e.cache, "total": e.total, "exact": e.exact,
                     "n_ctx": e.n_ctx},
             "architecture": e.architecture or None, "supported": e.supported,
             "fit": verdict, "recommended": v is best}
            for v, e, verdict in zip(variants, estimates, verdicts)]}, indent=2))
        return 0
    if not variants:
        print(f"{args.repo} has no GGUF model files.")
        return 0
    print(f"{args.repo}: {len(variants)} variants; RAM needed at {args.ctx} tokens of context "
          f"(this machine: {human_bytes(ram)})")
    width = max(4, *(len(v.name) for v in variants))
    print(f"  {'VARIANT':{width}s}  {'FILES':>5s}  {'SIZE':>10s}  {'RAM':>11s}  FIT")
    for v, e, verdict in zip(variants, estimates, verdicts):
        mark = "*" if v is best else " "
        approx = "" if e.exact else " (approx.)"
        fit = {"fits": "fits", "tight": "tight", "no": "does not fit"}[verdict]
        print(f"{mark} {v.name:{width}s}  {len(v.files):>5d}  {human_bytes(v.size):>10s}  "
              f"{human_bytes(e.total):>11s}  {fit}{approx}{'  (recommended)' if v is best else ''}")
    archs = {e.architecture for e in estimates if e.supported is False}
    if archs:
        print(f"Note: Lectern cannot run the architecture {', '.join(sorted(archs))} of this model.")
    if best is None:
        print("No variant fits comfortably in this machine's RAM.")
    return 0
