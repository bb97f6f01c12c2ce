"""`lectern extract PATH... [--json] [-m FILE]`: the text Lectern reads out of documents.

Prints each document's extracted text (several under "=== File: NAME ===" headers, as in the
prompt). --json prints {"documents": [{path, name, kind, pages, characters, encoding, text,
tokens}], "errors": [{path, error}]}; tokens (the text alone, no BOS) only with -m FILE.
Files that cannot be read are reported on stderr and the exit code is 1; the others are printed.
"""
from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("extract", help="print the text extracted from documents",
                       description="Extract the text of documents (txt, md, code, html, pdf, docx, "
                                   "csv, json; folders recursively) as Lectern puts it in a prompt.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--json", action="store_true",
                   help="print JSON: name, kind, pages, characters, encoding, text (and tokens with -m)")
    p.add_argument("-m", "--model", metavar="FILE",
                   help="GGUF model whose tokenizer counts the tokens (--json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from inference.documents import extract_paths

    docs, errors = extract_paths(args.paths)
    for path, err in errors:
        print(f"lectern: {err}", file=sys.stderr)
    if args.json:
        count = _token_counter(args.model)
        out = {"documents": [_doc_json(d, count) for d in docs],
               "errors": [{"path": p, "error": str(e)} for p, e in errors]}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    elif len(docs) == 1 and len(args.paths) == 1:
        print(docs[0].text)
    else:
        for i, d in enumerate(docs):
            print(("\n" if i else "") + f"=== File: {d.name} ===\n{d.text}")
    return 1 if errors else 0


def _token_counter(model):
    if not model:
        return None
    from .cmd_tokenize import load_tokenizer

    tok = load_tokenizer(model)
    return lambda text: len(tok.encode(text, add_bos=False, special=False))


def _doc_json(d, count) -> dict:
    out = {"path": d.path, "name": d.name, "kind": d.kind, "pages": d.pages,
           "characters": d.chars, "encoding": d.encoding, "text": d.text}
    if count is not None:
        out["tokens"] = count(d.text)
    return out
