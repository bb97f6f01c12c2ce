"""`lectern tokenize [-m FILE] [--special] [--no-bos] (TEXT | --batch)`: text -> token ids (JSON).

Exactly llama.cpp's llama_tokenize: BOS/EOS as the vocabulary asks unless --no-bos, special
token texts parsed only with --special. --batch reads one JSON-encoded string per line from
stdin and prints one JSON list per line. Vocabulary-only GGUF files work.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="print the token ids of a text as a JSON list",
                       description="Tokenize TEXT with a GGUF file's vocabulary, exactly as llama.cpp does.")
    p.add_argument("-m", "--model", metavar="FILE", help="GGUF file (default: the built-in model)")
    p.add_argument("--special", action="store_true",
                   help="parse special-token texts such as <|im_start|> into their ids")
    p.add_argument("--no-bos", action="store_true", help="do not add the BOS/EOS tokens the vocabulary asks for")
    p.add_argument("--batch", action="store_true",
                   help="read one JSON string per line from stdin, print one JSON list per line")
    p.add_argument("text", nargs="?", metavar="TEXT", help="the text to tokenize")
    p.set_defaults(func=run)


def load_tokenizer(model: str | None):
    from inference.paths import default_model_path

    return _tokenizer(str(model if model else default_model_path()))


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str):
    """Cached per path, so that many calls in one process (tests, scripts) load it once."""
    from inference.gguf_file import open_gguf
    from inference.tokenizer import Tokenizer

    return Tokenizer.from_gguf(open_gguf(path))


def run(args) -> int:
    from inference.errors import TokenizerError

    if args.batch == (args.text is not None):
        raise TokenizerError("give either TEXT or --batch (texts as JSON strings on stdin), not both or neither")
    tok = load_tokenizer(args.model)
    add_bos = not args.no_bos
    if not args.batch:
        print(json.dumps(tok.encode(args.text, add_bos=add_bos, special=args.special)))
        return 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)
        except json.JSONDecodeError as e:
            raise TokenizerError(f"stdin line {n} is not a JSON string ({e.msg}); write texts with json.dumps") from None
        if not isinstance(text, str):
            raise TokenizerError(f"stdin line {n} holds a JSON {type(text).__name__}, not a string")
        print(json.dumps(tok.encode(text, add_bos=add_bos, special=args.special)), flush=True)  # line by line
    return 0
