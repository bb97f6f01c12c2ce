"""SentencePiece-style tokenization as llama.cpp's llm_tokenizer_spm_session.

Spaces become "▁"; the text starts as one symbol per character; repeatedly the adjacent pair
whose concatenation is a vocabulary token with the highest score (leftmost among equals)
merges. Symbols that are not tokens at the end become byte tokens <0xXX>.

llama.cpp merges the whole fragment at once. Merges never cross a point where no token can
span, so we cut the text there (before a "▁" whose left neighbour never precedes "▁" inside
any token) and merge the pieces separately, with a cache: the same result, far faster.
"""
from __future__ import annotations

import heapq
import re

from ..errors import TokenizerError
from .vocab import Vocab

SPACE = "\u2581"


def _before_space(tokens: list[str]) -> set[str]:
    """The characters that precede "▁" inside some token (not at its start): one split of the
    tokens joined by a separator none of them contains (else token by token)."""
    for sep in ("\x00", "\x01", "\uffff"):
        joined = sep.join(tokens)
        if joined.count(sep) == len(tokens) - 1:
            pieces = joined.split(SPACE)           # piece k ends where the k-th "▁" starts
            before = {p[-1] for p in pieces[:-1] if p}
            if "" in pieces[1:-1]:                 # "▁▁": a "▁" before a "▁"
                before.add(SPACE)
            before.discard(sep)                    # a "▁" at a token's start
            return before
    before = set()
    for t in tokens:
        j = t.find(SPACE, 1)
        while j > 0:
            before.add(t[j - 1])
            j = t.find(SPACE, j + 1)
    return before


class SPM:
    MAX_CACHE = 1 << 18

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.token_to_id = vocab.token_to_id
        self._scores: list[float] | None = None
        self._cut: re.Pattern | None = None
        self.cache: dict[str, list[int]] = {}

    @property
    def scores(self) -> list[float]:
        if self._scores is None:
            self._scores = self.vocab.scores()
        return self._scores

    @property
    def cut(self) -> re.Pattern:
        """Where the text may be cut: before "▁", unless the character before can precede "▁"
        inside a token (found once by scanning the vocabulary)."""
        if self._cut is None:
            before = _before_space(self.vocab.tokens)
            if before:
                cls = "".join(re.escape(c) for c in sorted(before))
                self._cut = re.compile(f"(?<![{cls}])(?={SPACE})")
            else:
                self._cut = re.compile(f"(?={SPACE})")
        return self._cut

    def encode(self, text: str, out: list[int]) -> None:
        text = text.replace(" ", SPACE)
        cache = self.cache
        for piece in self.cut.split(text):
            if not piece:
                continue
            ids = cache.get(piece)
            if ids is None:
                ids = self._piece_ids(piece)
                if len(cache) >= self.MAX_CACHE:
                    cache.clear()
                cache[piece] = ids
            out.extend(ids)

    def _piece_ids(self, piece: str) -> list[int]:
        t2i = self.token_to_id
        out: list[int] = []
        for sym in merge(list(piece), t2i, self.scores, self.vocab.n_tokens):
            tid = t2i.get(sym)
            if tid is not None:
                out.append(tid)
            else:
                out.extend(self._byte_ids(sym))
        return out

    def _byte_ids(self, sym: str) -> list[int]:
        """llama.cpp's byte_to_token: <0xXX>, else the byte itself as a token."""
        t2i, ids = self.token_to_id, []
        for b in sym.encode("utf-8"):
            tid = t2i.get(f"<0x{b:02X}>")
            if tid is None and b < 0x80:
                tid = t2i.get(chr(b))
            if tid is None:
                unk = self.vocab.special.get("unk")
                if unk is None:
                    raise TokenizerError(
                        f"character {sym!r} is not in the vocabulary, which has no byte token <0x{b:02X}> "
                        "and no unknown token")
                tid = unk     # llama.cpp throws here; the unknown token is the gentler answer
            ids.append(tid)
        return ids


def merge(syms: list[str], t2i: dict[str, int], scores: list[float], n_tokens: int) -> list[str]:
    """Highest-scoring mergeable pair first, leftmost among equal scores."""
    if len(syms) > 24:
        return _merge_heap(syms, t2i, scores, n_tokens)
    get = t2i.get
    while len(syms) > 1:
        best, best_score = -1, 0.0
        for i in range(len(syms) - 1):
            tid = get(syms[i] + syms[i + 1])
            if tid is not None and tid < n_tokens and (best < 0 or scores[tid] > best_score):
                best, best_score = i, scores[tid]
        if best < 0:
            break
        syms[best:best + 2] = [syms[best] + syms[best + 1]]
    return syms


def _merge_heap(syms: list[str], t2i: dict[str, int], scores: list[float], n_tokens: int) -> list[str]:
    n = len(syms)
    text = list(syms)
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    heap: list[tuple[float, int, int]] = []   # (-score, left, size)

    def push(a: int, b: int) -> None:
        if a >= 0 and b >= 0:
            tid = t2i.get(text[a] + text[b])
            if tid is not None and tid < n_tokens:
                heapq.heappush(heap, (-scores[tid], a, len(text[a]) + len(text[b])))

    for i in range(n - 1):
        push(i, i + 1)
    while heap:
        _, a, size = heapq.heappop(heap)
        b = nxt[a]
        if not text[a] or b < 0 or len(text[a]) + len(text[b]) != size:
            continue
        text[a] += text[b]
        text[b] = ""
        nxt[a] = nxt[b]
        if nxt[b] >= 0:
            prev[nxt[b]] = a
        push(prev[a], a)
        push(a, nxt[a])
    return [t for t in text if t]
