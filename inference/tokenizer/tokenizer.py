"""Tokenizer: llama.cpp's llama_tokenize / llama_detokenize for one GGUF vocabulary."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import TokenizerError
from .detok import IncrementalDecoder, detokenize, make_piece
from .special import SpecialSplitter
from .vocab import ATTR_CONTROL, ATTR_UNKNOWN, SPM, Vocab, load_vocab

_SURROGATE = re.compile("[\ud800-\udfff]")


class Tokenizer:
    """encode / decode exactly as llama.cpp does for the same GGUF vocabulary."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        if vocab.kind == SPM:
            from .spm import SPM as Model
        else:
            from .bpe import BPE as Model
        self.model = Model(vocab)
        self.specials = SpecialSplitter(vocab)
        self._pieces: list[bytes | None] = [None] * vocab.n_tokens

    @classmethod
    def from_gguf(cls, gguf) -> "Tokenizer":
        """From an open GGUFFile (or a path to a .gguf file; vocabulary-only files are fine)."""
        if isinstance(gguf, (str, Path)):
            from ..gguf_file import open_gguf

            gguf = open_gguf(gguf)
        return cls(load_vocab(gguf.metadata, str(getattr(gguf, "path", "GGUF file"))))

    # ---- facts ---------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return self.vocab.n_tokens

    @property
    def bos_id(self) -> int | None:
        return self.vocab.special["bos"]

    @property
    def eos_id(self) -> int | None:
        return self.vocab.special["eos"]

    @property
    def eot_id(self) -> int | None:
        return self.vocab.special["eot"]

    @property
    def eog_ids(self) -> frozenset[int]:
        return self.vocab.eog_ids

    @property
    def add_bos(self) -> bool:
        return self.vocab.add_bos

    @property
    def add_eos(self) -> bool:
        return self.vocab.add_eos

    def is_eog(self, tid: int) -> bool:
        """End of generation: eos, eot, eom and the tokens llama.cpp adds by their text."""
        return tid in self.vocab.eog_ids

    def is_control(self, tid: int) -> bool:
        return bool(self.vocab.attrs[self._check(tid)] & (ATTR_CONTROL | ATTR_UNKNOWN))

    def token_text(self, tid: int) -> str:
        return self.vocab.tokens[self._check(tid)]

    def token_id(self, text: str) -> int | None:
        """The id of a token by its exact vocabulary text, or None."""
        return self.vocab.token_to_id.get(text)

    # ---- text -> ids ---------------------------------------------------------------------
    def encode(self, text: str, add_bos: bool = True, special: bool = False,
               protect: Sequence[tuple[int, int]] = ()) -> list[int]:
        """llama_tokenize(text, add_special=add_bos, parse_special=special); with `special`, the
        character spans in `protect` are still tokenized as plain text (see split_protected)."""
        if _SURROGATE.search(text):
            text = _SURROGATE.sub("\ufffd", text)   # same length: the spans still hold
        v = self.vocab
        out: list[int] = []
        if add_bos and v.add_bos:
            if v.special["bos"] is None:
                raise TokenizerError("the vocabulary asks for a BOS token but names none; encode with add_bos=False")
            out.append(v.special["bos"])
        prev_special = True
        frags = (self.specials.split_protected(text, list(protect)) if special and protect
                 else self.specials.split(text, special))
        for frag in frags:
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
                continue
            if v.kind == SPM and v.add_space_prefix and prev_special:
                frag = " " + frag
            self.model.encode(frag, out)
            prev_special = False
        if add_bos and v.add_eos:
            if v.special["eos"] is None:
                raise TokenizerError("the vocabulary asks for an EOS token but names none; encode with add_bos=False")
            out.append(v.special["eos"])
        return out

    # ---- ids -> text ---------------------------------------------------------------------
    def token_to_piece(self, tid: int, special: bool = True) -> bytes:
        piece = self._pieces[self._check(tid)]
        if piece is None:
            piece = self._pieces[tid] = make_piece(self.vocab, tid)
        if not special and self.vocab.attrs[tid] & (ATTR_CONTROL | ATTR_UNKNOWN):
            return b""
        return piece

    def decode(self, ids: Iterable[int], special: bool = True) -> str:
        """llama.cpp's detokenize; special=False leaves out control and unknown tokens."""
        return detokenize(self, [int(t) for t in ids], special)

    def decoder(self, special: bool = True) -> IncrementalDecoder:
        return IncrementalDecoder(self, special)

    def _check(self, tid: int) -> int:
        tid = int(tid)
        if not 0 <= tid < self.vocab.n_tokens:
            raise TokenizerError(f"token id {tid} is outside the vocabulary (0..{self.vocab.n_tokens - 1})")
        return tid

    def __repr__(self) -> str:
        v = self.vocab
        return (f"Tokenizer({v.model}/{v.pre_name if v.kind != SPM else 'spm'}, {v.n_tokens} tokens, "
                f"bos={self.bos_id}, eos={self.eos_id}, add_bos={v.add_bos})")
