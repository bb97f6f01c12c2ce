"""`lectern generate`: continue a prompt and stream the text to stdout as it is produced."""
from __future__ import annotations

import sys

from .engine_args import add_model_args, add_sampling_args, load_engine, sampling_params


def register(sub) -> None:
    p = sub.add_parser(
        "generate", help="generate text from a prompt",
        description="Answer PROMPT (as one user message in the model's chat template, or with "
                    "--raw as plain text) and stream the answer to stdout.")
    add_model_args(p)
    add_sampling_args(p, max_tokens=256)
    p.add_argument("--raw", action="store_true",
                   help="no chat template: tokenize PROMPT as given (special tokens like "
                        "<|im_start|> parsed, BOS as the vocabulary asks)")
    p.add_argument("--system", metavar="TEXT", help="system message (chat template only)")
    p.add_argument("--stats", action="store_true", help="print timings to stderr at the end")
    p.add_argument("prompt", metavar="PROMPT", help="the prompt; - reads it from stdin")
    p.set_defaults(func=run)


def run(args) -> int:
    params = sampling_params(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    engine = load_engine(args)
    session = engine.session(args.ctx_size or None)
    if args.raw:
        tokens = engine.encode_text(prompt)
    else:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        tokens = engine.encode_chat(messages + [{"role": "user", "content": prompt}])
    if not tokens:
        from inference import LecternError

        raise LecternError("the prompt is empty: give some text to continue")
    gen = session.generate(tokens, params)
    out = sys.stdout
    for piece in gen:
        out.write(piece)
        out.flush()
    if out.isatty():
        out.write("\n")
    if args.stats:
        print(gen.stats.summary(), file=sys.stderr)
    return 0
