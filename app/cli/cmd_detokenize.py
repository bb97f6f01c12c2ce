"""`lectern detokenize [-m FILE] [--no-special] IDS_JSON`: token ids -> text, as llama.cpp detokenizes.

Prints exactly the text (no newline added). Ids outside the vocabulary are an error (exit 1).
"""
from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detokenize", help="print the text of a JSON list of token ids",
                       description="Turn token ids (a JSON list such as [1, 2, 3]) back into text.")
    p.add_argument("-m", "--model", metavar="FILE", help="GGUF file (default: the built-in model)")
    p.add_argument("--no-special", action="store_true", help="leave out control tokens such as <|im_end|>")
    p.add_argument("ids", metavar="IDS_JSON", help="token ids as a JSON list")
    p.set_defaults(func=run)


def run(args) -> int:
    from inference.errors import TokenizerError

    from .cmd_tokenize import load_tokenizer

    try:
        ids = json.loads(args.ids)
    except json.JSONDecodeError as e:
        raise TokenizerError(f"IDS_JSON is not JSON ({e.msg}); write the ids like [1, 2, 3]") from None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise TokenizerError("IDS_JSON must be a JSON list of integers, like [1, 2, 3]")
    tok = load_tokenizer(args.model)
    bad = [i for i in ids if not 0 <= i < tok.n_vocab]
    if bad:
        raise TokenizerError(f"token id {bad[0]} is outside the vocabulary of {tok.n_vocab} tokens "
                             f"(valid: 0..{tok.n_vocab - 1})")
    sys.stdout.write(tok.decode(ids, special=not args.no_special))   # exactly the text, no newline added
    return 0
