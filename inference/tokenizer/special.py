"""Splitting text on special-token texts, as llama.cpp's tokenizer_st_partition.

Special tokens (control, user-defined, unknown) are taken longest first; each one is cut out
of every remaining text fragment, left to right. With parse_special false only user-defined
tokens are cut (they are always matched, like Hugging Face's added tokens); control and
unknown token texts stay plain text. LSTRIP / RSTRIP tokens eat ASCII whitespace beside them.

Only tokens that occur in the text can matter; a prefix tree over the special texts finds
them with a few substring searches, so a 262k vocabulary with 6k control tokens costs little.
"""
from __future__ import annotations

from .vocab import ATTR_CONTROL, ATTR_LSTRIP, ATTR_RSTRIP, ATTR_UNKNOWN, Vocab

_ASCII_SPACE = " \t\n\v\f\r"


class _Node:
    """A prefix-tree node over special texts, grown on first visit: `pending` holds the ids of
    the texts below it until `kids()` sorts them by their next character (a 262k vocabulary
    with 6k control tokens then builds only the few nodes a text's characters lead to)."""
    __slots__ = ("depth", "pending", "children", "ids")

    def __init__(self, depth: int):
        self.depth = depth
        self.pending: list[int] | None = []
        self.children: dict[str, _Node] = {}
        self.ids: list[int] = []

    def kids(self, tokens: list[str]) -> dict[str, "_Node"]:
        if self.pending is not None:
            d = self.depth
            for tid in self.pending:
                child = self.children.get(tokens[tid][d])
                if child is None:
                    child = self.children[tokens[tid][d]] = _Node(d + 1)
                if len(tokens[tid]) == d + 1:
                    child.ids.append(tid)
                else:
                    child.pending.append(tid)
            self.pending = None
        return self.children


class SpecialSplitter:
    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.rank = {tid: r for r, tid in enumerate(vocab.special_order)}
        self._tries: dict[bool, _Node] = {}

    def _trie(self, parse_special: bool) -> _Node:
        root = self._tries.get(parse_special)
        if root is None:
            root = _Node(0)
            attrs, tokens = self.vocab.attrs, self.vocab.tokens
            skip = 0 if parse_special else ATTR_CONTROL | ATTR_UNKNOWN
            root.pending = [tid for tid in self.vocab.special_order if not attrs[tid] & skip and tokens[tid]]
            self._tries[parse_special] = root
        return root

    def present(self, text: str, parse_special: bool) -> list[int]:
        """Special tokens whose text occurs in `text`, in partition order."""
        found: list[int] = []
        stack = [("", self._trie(parse_special))]
        while stack:
            prefix, node = stack.pop()
            for ch, child in node.kids(self.vocab.tokens).items():
                p = prefix + ch
                if p in text:
                    found.extend(child.ids)
                    stack.append((p, child))
        return sorted(found, key=self.rank.__getitem__)

    def split(self, text: str, parse_special: bool) -> list[str | int]:
        """Fragments in order: str (raw text) or int (a special token id)."""
        frags: list[str | int] = [text] if text else []
        tokens, attrs = self.vocab.tokens, self.vocab.attrs
        for tid in self.present(text, parse_special):
            tt = tokens[tid]
            lstrip, rstrip = bool(attrs[tid] & ATTR_LSTRIP), bool(attrs[tid] & ATTR_RSTRIP)
            out: list[str | int] = []
            for frag in frags:
                if isinstance(frag, int) or tt not in frag:
                    out.append(frag)
                    continue
                parts = frag.split(tt)
                for k, part in enumerate(parts):
                    if k > 0:
                        out.append(tid)
                    if lstrip and k < len(parts) - 1:
                        part = part.rstrip(_ASCII_SPACE)
                    if rstrip and k > 0:
                        part = part.lstrip(_ASCII_SPACE)
                    if part:
                        out.append(part)
            frags = out
        return frags

    def split_protected(self, text: str, protect: list[tuple[int, int]]) -> list[str | int]:
        """split(text, parse_special=True), except inside the [start, end) spans of `protect`,
        which are split as plain text (parse_special=False): a chat message's own content that
        merely contains a control token's text (a document quoting "<|im_end|>") stays text.
        Adjacent text fragments are joined again so the BPE sees the same pieces as without."""
        out: list[str | int] = []
        pos = 0
        for start, end in sorted(protect):
            if start < pos or end <= start:
                continue
            out += self.split(text[pos:start], True) + self.split(text[start:end], False)
            pos = end
        out += self.split(text[pos:], True)
        joined: list[str | int] = []
        for frag in out:
            if joined and isinstance(frag, str) and isinstance(joined[-1], str):
                joined[-1] += frag
            else:
                joined.append(frag)
        return joined
