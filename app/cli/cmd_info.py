"""`lectern info [FILE] [--json]`: what a GGUF model is and what it needs to run."""
from __future__ import annotations

import argparse
import json

from .engine_args import add_kv_type_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a GGUF model file (shape, weight types, memory)",
                       description="Describe a GGUF model: architecture, size, weight types, "
                                   "tokenizer and the memory needed to run it at its training context.")
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="GGUF file, or any part of a split model (default: the built-in model)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_kv_type_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from inference.gguf_file import open_gguf
    from inference.model_info import describe
    from inference.paths import default_model_path

    path = args.file if args.file else default_model_path()
    with open_gguf(path) as g:
        info = describe(g, kv_type=args.kv_type)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_info(info))
    return 0


def format_info(i: dict) -> str:
    from inference.model_info import human_bytes

    rows: list[tuple[str, str]] = []
    parts = len(i["paths"])
    rows.append(("file", f"{i['path']} ({human_bytes(i['file_size'])}"
                         f"{f', {parts} parts' if parts > 1 else ''}, GGUF v{i['gguf_version']})"))
    rows.append(("architecture", i["architecture"] or "(none)"))
    if i["name"]:
        rows.append(("name", str(i["name"])))
    rows.append(("parameters", f"{i['parameters_human']} ({i['parameters']:,} in {i['tensors']} tensors)"
                 if i["tensors"] else "none (no tensors: a vocabulary-only file)"))
    if i["file_type"] is not None:
        rows.append(("file type", f"{i['file_type_name'] or 'unknown'} ({i['file_type']})"))
    for k, (name, w) in enumerate(i["weight_types"].items()):
        rows.append(("weight types" if k == 0 else "",
                     f"{name:8s} {w['tensors']:5d} tensors {human_bytes(w['bytes']):>11s}"))
    for key, label in (("context_length", "context"), ("embedding_length", "embedding"),
                       ("block_count", "layers")):
        if i[key] is not None:
            rows.append((label, str(i[key])))
    if i["head_count"] is not None:
        kv = i["head_count_kv"]
        rows.append(("heads", f"{_short(i['head_count'])} (KV {_short(kv) if kv is not None else 'same'})"))
    if i["vocab_size"] is not None:
        tok = " / ".join(str(x) for x in (i["tokenizer_model"], i["tokenizer_pre"]) if x)
        rows.append(("vocabulary", f"{i['vocab_size']} tokens" + (f", tokenizer {tok}" if tok else "")))
    rows.append(("chat template", "yes" if i["chat_template"] else "no"))
    m = i["memory"]
    if m:
        rows.append(("memory", f"weights {human_bytes(m['weights_bytes'])}"))
        rows.append(("", f"cache {human_bytes(m['kv_bytes_per_token'])}/token ({m['kv_type'].upper()} KV cache)"
                         f" -> {human_bytes(m['cache_bytes'])} at {m['context']} tokens"
                         + (f" (incl. {human_bytes(m['recurrent_state_bytes'])} recurrent state)"
                            if m["recurrent_state_bytes"] else "")))
        rows.append(("", f"total {human_bytes(m['total_bytes'])}"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def _short(v) -> str:
    """A per-layer list collapses to one number when all layers agree."""
    if isinstance(v, list):
        return str(v[0]) if v and all(x == v[0] for x in v) else ",".join(str(x) for x in v)
    return str(v)
