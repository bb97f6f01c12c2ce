"""Options shared by the subcommands that run a model (generate, chat, eval, bench).

Not a subcommand itself (only cmd_*.py modules are). Imports nothing heavy at module level.
"""
from __future__ import annotations

import argparse


def kv_type_arg(value: str) -> str:
    """argparse type of --kv-type: the canonical name, or argparse's error with our message."""
    from inference.errors import KVTypeError
    from inference.kv_cache import check_kv_type

    try:
        return check_kv_type(value)
    except KVTypeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_kv_type_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kv-type", type=kv_type_arg, default="f16", metavar="f16|f32",
                   help="KV cache type: f16 (default, as llama.cpp's: half the memory) or f32 "
                        "(float32, nothing rounded to half; llama.cpp's -ctk f32 -ctv f32)")


def add_model_args(p: argparse.ArgumentParser, ctx: bool = True) -> None:
    p.add_argument("-m", "--model", metavar="FILE",
                   help="GGUF model file (default: the built-in SmolLM2-135M-Instruct)")
    add_kv_type_arg(p)
    if ctx:
        p.add_argument("-c", "--ctx-size", type=int, default=0, metavar="N",
                       help="context size in tokens (default: min(4096, the model's training context))")


def add_sampling_args(p: argparse.ArgumentParser, max_tokens: int | None) -> None:
    g = p.add_argument_group("sampling (llama.cpp's defaults)")
    g.add_argument("--temperature", "--temp", type=float, default=0.8,
                   help="0 = greedy (always the most likely token); default 0.8")
    g.add_argument("--top-k", type=int, default=40, help="keep the k most likely tokens (0 = off)")
    g.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (1 = off)")
    g.add_argument("--min-p", type=float, default=0.05,
                   help="drop tokens less likely than min-p times the best one (0 = off)")
    g.add_argument("--repeat-penalty", type=float, default=1.0, help="1 = off")
    g.add_argument("--repeat-last-n", type=int, default=64,
                   help="tokens the penalties look back on (-1 = all, 0 = off)")
    g.add_argument("--frequency-penalty", type=float, default=0.0)
    g.add_argument("--presence-penalty", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=None, help="random seed (same seed, same text)")
    limit = "no limit" if max_tokens is None else str(max_tokens)
    g.add_argument("-n", "--max-tokens", type=int, default=max_tokens, metavar="N",
                   help=f"most tokens to generate (-1 = until the end token or a full context; "
                        f"default {limit})")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when this text is produced (repeatable)")
    g.add_argument("--ignore-eos", action="store_true",
                   help="never end the answer with an end-of-generation token (runs to -n or a full context)")


def sampling_params(args):
    from inference import LecternError
    from inference.sampling import SamplingParams

    n = args.max_tokens
    try:
        return SamplingParams(
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
            repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n,
            frequency_penalty=args.frequency_penalty, presence_penalty=args.presence_penalty,
            seed=args.seed, max_tokens=None if n is None or n < 0 else n, stop=tuple(args.stop),
            ignore_eos=args.ignore_eos)
    except ValueError as e:
        raise LecternError(f"bad sampling option: {e}") from None


def model_path(args):
    from inference.paths import default_model_path

    return args.model or default_model_path()


def load_engine(args):
    from inference.engine import Engine

    return Engine.load(model_path(args), kv_type=getattr(args, "kv_type", "f16"))
