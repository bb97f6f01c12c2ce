"""`lectern search TEXT [--sort downloads|likes|recent] [--limit N] [--json]`: GGUF models on the Hub."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search GGUF models on Hugging Face",
                       description="Search GGUF model repositories on the Hugging Face Hub "
                                   "(HF_ENDPOINT and HF_TOKEN are honoured). Without TEXT: the "
                                   "curated list of models to start with.")
    p.add_argument("text", nargs="*", metavar="TEXT", help="words to search for")
    p.add_argument("--sort", choices=("downloads", "likes", "recent"), default="downloads",
                   help="order of the results (default: downloads)")
    p.add_argument("--limit", type=int, default=30, metavar="N", help="at most N results (default 30)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from inference.hub import curated, search_repos

    text = " ".join(args.text).strip()
    if not text:
        models = curated()
        if args.json:
            print(json.dumps([asdict(m) for m in models], indent=2))
        else:
            print("Curated models (search with `lectern search TEXT`):")
            for m in models:
                print(f"  {m.repo_id:50s} {m.title}: {m.note}")
        return 0
    repos = search_repos(text, sort=args.sort, limit=max(1, args.limit))
    if args.json:
        print(json.dumps([asdict(r) for r in repos], indent=2))
        return 0
    if not repos:
        print(f"No GGUF repositories match {text!r}.")
        return 0
    width = max(len(r.repo_id) for r in repos)
    print(f"{'REPOSITORY':{width}s}  {'DOWNLOADS':>10s}  {'LIKES':>6s}  UPDATED")
    for r in repos:
        gated = "  (gated)" if r.gated else ""
        print(f"{r.repo_id:{width}s}  {r.downloads:>10,d}  {r.likes:>6,d}  "
              f"{(r.last_modified or '')[:10]}{gated}")
    return 0
