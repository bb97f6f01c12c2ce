"""Token ids back to text, as llama.cpp's token_to_piece and detokenize.

A piece is bytes: normal SPM tokens turn "▁" into spaces, byte tokens are their byte, byte-level
BPE tokens map their characters back to bytes; control and unknown tokens print their text
only with special=True; user-defined tokens always print their text; unused ones print nothing.
detokenize drops one leading space of the first piece when the vocabulary adds a space prefix,
and, for vocabularies that ask for it (clean_up_tokenization_spaces), removes the spaces that
word-level tokenizers put before punctuation and contractions.
"""
from __future__ import annotations

import codecs
import re

from .bpe import CHAR_TO_BYTE
from .vocab import ATTR_BYTE, ATTR_CONTROL, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_USER_DEFINED, SPM, Vocab


def make_piece(vocab: Vocab, tid: int) -> bytes:
    """llama.cpp's cached piece (special=True)."""
    text, attr = vocab.tokens[tid], int(vocab.attrs[tid])
    if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED):
        return text.encode("utf-8")
    if attr & ATTR_NORMAL:
        if vocab.kind == SPM or vocab.escape_whitespaces:
            return text.replace("\u2581", " ").encode("utf-8")
        return _bpe_bytes(text)
    if attr & ATTR_BYTE:
        return bytes([int(text[3:5], 16)])
    return b""


def _bpe_bytes(text: str) -> bytes:
    out = bytearray()
    for ch in text:
        b = CHAR_TO_BYTE.get(ch)
        if b is not None:
            out.append(b)
        else:   # llama.cpp's llama_decode_text writes this marker for characters outside the table
            out += b"[UNK_BYTE_0x" + ch.encode("utf-8").hex().encode() + text.encode("utf-8") + b"]"
    return bytes(out)


# clean_up_tokenization_spaces, as llama.cpp's three passes (each equals one substitution)
_CLEAN = ((re.compile(rb" (?=[?!.,])"), b""), (re.compile(rb" ' "), b"'"), (re.compile(rb" '(?=[sm]|re|ve)"), b"'"))


def clean_spaces(data: bytes) -> bytes:
    for pat, rep in _CLEAN:
        data = pat.sub(rep, data)
    return data


def _safe_cut(data: bytes) -> int:
    """Largest n such that clean_spaces(data[:n]) is final whatever follows: the 3 bytes before
    the cut hold no space or apostrophe (every clean-up match starts with a space and spans at
    most 4 bytes)."""
    n = len(data)
    while n >= 3:
        window = data[n - 3:n]
        if b" " not in window and b"'" not in window:
            return n
        n -= 1
    return 0


class IncrementalDecoder:
    """Feed ids one at a time; `add` returns the text that is complete so far (never part of a
    UTF-8 character), `flush` the rest. The concatenation equals Tokenizer.decode(ids)."""

    def __init__(self, tok, special: bool = True):
        self.tok = tok
        self.special = special
        self.first = True
        self.pending = b""          # bytes held back for clean_spaces
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, tid: int) -> str:
        piece = self.tok.token_to_piece(tid, self.special)
        if self.first:
            self.first = False
            if self.tok.vocab.add_space_prefix and piece.startswith(b" "):
                piece = piece[1:]
        if not self.tok.vocab.clean_spaces:
            return self.utf8.decode(piece)
        data = self.pending + piece
        n = _safe_cut(data)
        self.pending = data[n:]
        return self.utf8.decode(clean_spaces(data[:n]))

    def flush(self) -> str:
        data, self.pending = self.pending, b""
        if self.tok.vocab.clean_spaces:
            data = clean_spaces(data)
        return self.utf8.decode(data, final=True)


def detokenize(tok, ids, special: bool = True) -> str:
    """llama.cpp's detokenize(remove_special=false, unparse_special=special), UTF-8 decoded
    with U+FFFD for invalid bytes."""
    pieces = [tok.token_to_piece(t, special) for t in ids]
    if pieces and tok.vocab.add_space_prefix and pieces[0].startswith(b" "):
        pieces[0] = pieces[0][1:]
    data = b"".join(pieces)
    if tok.vocab.clean_spaces:
        data = clean_spaces(data)
    return data.decode("utf-8", errors="replace")
