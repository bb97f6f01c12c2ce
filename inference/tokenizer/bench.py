"""Tokenizer speed: `python -m inference.tokenizer.bench [-m FILE ...] [--mb 1.0]`.

Tokenizes about 1 MB of English-like text (sentences drawn with a fixed seed from a word list,
with punctuation, numbers and paragraphs; no downloads) and prints seconds and MB/s, cold (empty
word cache) and warm. Without -m: the built-in SmolLM2 and the Gemma 3 270M vocabularies.
"""
from __future__ import annotations

import argparse
import random
import time

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have "
    "an they you were her she there been one all we their has would when if so no will more can out who up "
    "what about into than them only other new some could time these two may then do first any my now such "
    "like our over man me even most made after also did many before must through back years where much your "
    "way well down should because each just those people how too little state good very make world still own "
    "see men work long get here between both life being under never day same another know while last might "
    "us great old year off come since against go came right used take three himself few house use during "
    "without again place around however home small found thought went say part once general high upon school "
    "every does got united left number course war until always away something fact though water less public "
    "put think almost hand enough far took head yet government system better set told nothing night end why "
    "called didn't eyes find going look asked later knew point next program city business give group toward "
    "young days let room president side social given present several order national possible rather second "
    "face per among form important often things looked early white case John become large big need four "
    "within felt children along saw best church ever least power development light thing seemed family "
    "interest want members mind country area others done turned although open God service certain kind "
    "problem began different door thus help sense means whole matter perhaps itself York it's times law human "
    "line above name example action company hands local show whether five history gave today either act feet "
    "across taken past quite anything having seen death experience body word half really week car field word "
    "document chapter section analysis transformer attention context window tokenizer vocabulary inference"
).split()


def english_text(n_bytes: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_bytes:
        n = rng.randint(6, 24)
        words = [rng.choice(WORDS) for _ in range(n)]
        words[0] = words[0].capitalize()
        if rng.random() < 0.2:
            words.insert(rng.randrange(n), str(rng.randint(1, 99999)))
        if rng.random() < 0.3:
            words[rng.randrange(n)] += ","
        s = " ".join(words) + rng.choice(".....?!")
        s += "\n\n" if rng.random() < 0.1 else " "
        parts.append(s)
        size += len(s)
    return "".join(parts)[:n_bytes]


def bench(path, text: str) -> None:
    from ..gguf_file import open_gguf
    from . import Tokenizer

    t0 = time.perf_counter()
    gguf = open_gguf(path)
    t1 = time.perf_counter()
    tok = Tokenizer.from_gguf(gguf)
    t_open, t_load = t1 - t0, time.perf_counter() - t1
    mb = len(text.encode("utf-8")) / 1e6
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        ids = tok.encode(text, add_bos=True, special=False)
        dt = time.perf_counter() - t0
        print(f"{path.name if hasattr(path, 'name') else path}: {label}: {mb:.2f} MB -> {len(ids)} tokens "
              f"in {dt:.2f} s ({mb / dt:.2f} MB/s); GGUF open {t_open:.2f} s, Tokenizer.from_gguf {t_load:.2f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inference.tokenizer.bench", description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", action="append", help="GGUF file (repeatable)")
    p.add_argument("--mb", type=float, default=1.0, help="megabytes of text (default 1)")
    args = p.parse_args(argv)
    if args.model:
        paths = args.model
    else:
        from ..paths import default_model_path, gemma3_270m_path

        paths = [default_model_path(), gemma3_270m_path()]
    text = english_text(int(args.mb * 1e6))
    for path in paths:
        bench(path, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
