"""`lectern eval`: the logits at every position of a token list, written as a .npy file.

The tokens are evaluated as one batch from an empty state (model.logits), the way llama.cpp's
reference outputs in ../shared/golden/ref were made, so the two can be compared directly.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .engine_args import add_model_args, model_path


def register(sub) -> None:
    p = sub.add_parser("eval", help="write the logits of a token list to a .npy file",
                       description="Evaluate token ids as one batch and save the logits "
                                   "[T, n_vocab] float32 with numpy.save.")
    add_model_args(p, ctx=False)
    p.add_argument("--tokens", required=True, metavar="IDS_JSON_OR_PATH",
                   help="token ids: a JSON list like '[1, 15, 300]', or a file holding one "
                        "(.json) or a 1-D integer array (.npy)")
    p.add_argument("--out", required=True, metavar="OUT.npy", help="where to write the logits")
    p.set_defaults(func=run)


def parse_tokens(spec: str) -> list[int]:
    from inference import LecternError

    text = spec.strip()
    if not text.startswith("["):
        path = Path(spec)
        if not path.is_file():
            raise LecternError(f"--tokens: {spec!r} is neither a JSON list of ids nor an existing file")
        if path.suffix == ".npy":
            import numpy as np

            try:
                arr = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise LecternError(f"--tokens: {path} is not a numpy integer array ({e})") from None
            if arr.ndim != 1 or arr.dtype.kind not in "iu":
                raise LecternError(f"--tokens: {path} must hold a 1-D integer array, "
                                   f"found {arr.dtype} {arr.shape}")
            return [int(t) for t in arr]
        text = path.read_text()
    try:
        ids = json.loads(text)
    except json.JSONDecodeError as e:
        raise LecternError(f"--tokens: not valid JSON ({e})") from None
    if not isinstance(ids, list) or not ids or not all(type(t) is int for t in ids):
        raise LecternError("--tokens: expected a non-empty JSON list of integer token ids")
    return ids


def run(args) -> int:
    import numpy as np

    from inference import TokenizerError, load_model

    tokens = parse_tokens(args.tokens)
    model = load_model(model_path(args), kv_type=args.kv_type)
    n_vocab = model.n_vocab
    bad = [t for t in tokens if not 0 <= t < n_vocab]
    if bad:
        raise TokenizerError(f"token id {bad[0]} is outside this model's vocabulary [0, {n_vocab})")
    logits = np.asarray(model.logits(tokens), dtype=np.float32)
    out = Path(args.out)
    with open(out, "wb") as f:      # np.save(path) would append .npy to other names
        np.save(f, logits)
    print(f"wrote {out}: logits [{logits.shape[0]}, {logits.shape[1]}] float32", file=sys.stderr)
    return 0
