"""Byte-level BPE as llama.cpp's llm_tokenizer_bpe_session: pre-split, byte-to-unicode, merges.

Each pre-token word is merged on its own: repeatedly the adjacent pair with the lowest merge
rank (the leftmost of equal ranks) becomes one symbol. llama.cpp does this with a priority
queue of pairs; taking the minimum over the current pairs each step is the same sequence of
merges. Results are cached per word, so running text costs one dict lookup per word.
"""
from __future__ import annotations

import heapq

from .pretokenize import Splitter
from .pretypes import REGEXES
from .vocab import Vocab


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (llama.cpp unicode_byte_to_utf8_map)."""
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
_LATIN1_TO_CHAR = {b: c for b, c in BYTE_TO_CHAR.items()}   # str.translate over latin-1 text


def byte_encode(word: str) -> str:
    return word.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_CHAR)


class BPE:
    """Merges of one vocabulary; encode(text) for a raw-text fragment (no special tokens)."""

    MAX_CACHE = 1 << 18

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.token_to_id = vocab.token_to_id
        self.splitter = Splitter(REGEXES[vocab.pre_type])
        self._ranks: dict[tuple[str, str], int] | None = None
        self.cache: dict[str, list[int]] = {}

    @property
    def ranks(self) -> dict[tuple[str, str], int]:
        """(left, right) -> rank; built on first use (150k merges take ~0.1 s)."""
        if self._ranks is None:
            ranks: dict[tuple[str, str], int] = {}
            for i, m in enumerate(self.vocab.merges()):
                pos = m.find(" ", 1)
                pair = (m[:pos], m[pos + 1:]) if pos != -1 else ("", "")
                ranks.setdefault(pair, i)        # the first of duplicate merges counts
            self._ranks = ranks
        return self._ranks

    def encode(self, text: str, out: list[int]) -> None:
        cache, word_ids = self.cache, self._word_ids
        if self.vocab.escape_whitespaces:
            text = text.replace(" ", "\u2581")
        for word in self.splitter.split(text):
            ids = cache.get(word)
            if ids is None:
                ids = word_ids(word)
                if len(cache) >= self.MAX_CACHE:
                    cache.clear()
                cache[word] = ids
            out.extend(ids)

    def _word_ids(self, word: str) -> list[int]:
        vocab, t2i = self.vocab, self.token_to_id
        sym = byte_encode(word) if vocab.byte_encode else word
        if vocab.ignore_merges and sym in t2i:
            return [t2i[sym]]
        if vocab.pre_type == "gemma4" and sym.strip("\n") == "" and sym in t2i:
            return [t2i[sym]]
        out = []
        for piece in merge(list(sym), self.ranks):
            tid = t2i.get(piece)
            if tid is not None:
                out.append(tid)
            else:
                out.extend(self._fallback(piece))
        return out

    def _fallback(self, piece: str) -> list[int]:
        """A merged symbol that is not a token: one token per UTF-8 byte, if there is one."""
        t2i, ids = self.token_to_id, []
        for b in piece.encode("utf-8"):
            if self.vocab.byte_encode:
                # llama.cpp looks up each raw byte of the byte-encoded text: only ASCII can match
                tid = t2i.get(chr(b)) if b < 0x80 else None
            else:
                tid = t2i.get(f"<0x{b:02X}>")
            if tid is not None:
                ids.append(tid)
        return ids


def merge(syms: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply merges to one word's symbols: lowest rank first, leftmost among equals."""
    if len(syms) > 24:
        return _merge_heap(syms, ranks)
    get = ranks.get
    while len(syms) > 1:
        best, best_rank = -1, None
        for i in range(len(syms) - 1):
            r = get((syms[i], syms[i + 1]))
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best < 0:
            break
        syms[best:best + 2] = [syms[best] + syms[best + 1]]
    return syms


def _merge_heap(syms: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """The same merges for long words, with a heap of (rank, left) over a linked list."""
    n = len(syms)
    text = list(syms)
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    heap: list[tuple[int, int, str, str]] = []

    def push(a: int, b: int) -> None:
        if a >= 0 and b >= 0:
            r = ranks.get((text[a], text[b]))
            if r is not None:
                heapq.heappush(heap, (r, a, text[a], text[b]))

    for i in range(n - 1):
        push(i, i + 1)
    while heap:
        _, a, left, right = heapq.heappop(heap)
        b = nxt[a]
        if b < 0 or text[a] != left or text[b] != right or not text[a]:
            continue
        text[a] = left + right
        text[b] = ""
        nxt[a] = nxt[b]
        if nxt[b] >= 0:
            prev[nxt[b]] = a
        push(prev[a], a)
        push(a, nxt[a])
    return [t for t in text if t]
