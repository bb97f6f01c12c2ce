"""llama.cpp's pre-tokenizer split (unicode.cpp, `unicode_regex_split`), reproduced.

llama.cpp applies a family's regexes one after the other, each to every piece the previous
one left (matched and unmatched stretches both become pieces). A regex that uses \\p{..}
classes runs on a "collapsed" copy of the text, one character per code point: ASCII stays,
any other whitespace becomes \\x0B, and every other code point becomes the marker of its
category (number \\xD1, letter \\xD2, punctuation \\xD3, mark \\xD4, symbol \\xD5, else \\xD0);
the regex's \\p{X} becomes the marker plus X's ASCII members. So \\p{Lu} matches any letter,
exactly as in llama.cpp. Regexes without classes run on the text itself (non-ASCII
whitespace -> \\x0B). Matching is ASCII-only (\\s, \\d) like std::regex in the C locale.

llama.cpp hand-codes some regexes; those hand-written splitters are equivalent to the regex on
the collapsed text (gpt2, llama3, qwen2, qwen35: checked against line-by-line ports in the
tests), except kimi-k2 (Han characters get their own markers here) and the AFMoE digit
grouping, which has its own function below. Every family was also compared with llama.cpp's own
unicode_regex_split on thousands of random texts: no difference.

Category data: Python's unicodedata (Unicode 14.0 on Python 3.11, 15.1 from 3.13) plus the CJK
Extension H and I ideographs, to stand in for llama.cpp's Unicode 15.1 tables. Exact for every
code point assigned by Unicode 14.0 and for those ideographs; the ~300 other code points new in
15.0/15.1 (Kawi, Nag Mundari, a few emoji, ...) count as unassigned here (before Python 3.13).
Unicode 16+ additions are unassigned in both.
"""
from __future__ import annotations

import re
import unicodedata

from .pretypes import AFMOE_DIGITS, KIMI_K2, TINY_AYA_DIGITS

WS, OTHER, NUM, LET, PUN, MARK, SYM = "\x0b", "\xd0", "\xd1", "\xd2", "\xd3", "\xd4", "\xd5"
HAN_LET, HAN_OTHER = "\xd6", "\xd7"         # kimi-k2 only: Han code points (letters / not letters)

# ASCII members of each class in the collapsed alphabet (llama.cpp's k_ucat_map)
_ASCII = {NUM: "0-9", LET: "A-Za-z", PUN: r"!-#%-*,-/:-;?-@\[-\]_\{\}", MARK: "", SYM: r"\$\+<-\>\^`\|~"}
_CLASS = {"N": NUM, "L": LET, "P": PUN, "M": MARK, "S": SYM, "Lu": LET, "Ll": LET, "Lt": LET, "Lm": LET, "Lo": LET}

# Unicode White_Space (llama.cpp's unicode_set_whitespace)
WHITESPACE = frozenset([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                        0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
_MAJOR = {"N": NUM, "L": LET, "P": PUN, "M": MARK, "S": SYM}


def classify(ch: str) -> str:
    """The collapsed marker of a character, by llama.cpp's categories (Unicode 15.1 tables)."""
    cp = ord(ch)
    if cp in WHITESPACE:
        return WS
    cat = unicodedata.category(ch)
    if cat == "Cn" and _LATE_CJK and (0x31350 <= cp <= 0x323AF or 0x2EBF0 <= cp <= 0x2EE5D):
        return LET          # CJK Extensions H (15.0) and I (15.1): letters (Lo) in llama.cpp's tables
    return _MAJOR.get(cat[0], OTHER)


_LATE_CJK = tuple(int(x) for x in unicodedata.unidata_version.split(".")[:2]) < (15, 1)


def is_han(cp: int) -> bool:
    """llama.cpp's unicode_cpt_is_han: CJK ideograph blocks by code point range."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2EBEF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class _Collapse(dict):
    """str.translate table: code point -> marker, filled on first sight of each character."""

    def __init__(self, han: bool = False):
        super().__init__((i, i) for i in range(128))
        self.han = han

    def __missing__(self, cp: int) -> str:
        mark = classify(chr(cp))
        if self.han and is_han(cp):
            mark = HAN_LET if mark == LET else HAN_OTHER
        self[cp] = mark
        return mark


class _Whitespace(dict):
    """str.translate table for class-free regexes: non-ASCII whitespace -> \\x0B."""

    def __missing__(self, cp: int) -> int | str:
        val = WS if cp >= 128 and classify(chr(cp)) == WS else cp
        self[cp] = val
        return val


_COLLAPSE, _COLLAPSE_HAN, _WHITESPACE = _Collapse(), _Collapse(han=True), _Whitespace()


def collapse(text: str, han: bool = False) -> str:
    if text.isascii():
        return text
    return text.translate(_COLLAPSE_HAN if han else _COLLAPSE)


def uses_classes(expr: str) -> bool:
    return any(f"\\p{{{k}}}" in expr for k in _CLASS)


def collapsed_regex(expr: str) -> str:
    """Rewrite \\p{X} for the collapsed text, as llama.cpp does; `$` means end of piece."""
    out, inside, i = [], False, 0
    while i < len(expr):
        c = expr[i]
        if c == "\\" and expr.startswith("\\p{", i):
            end = expr.find("}", i + 3)
            name = expr[i + 3:end]
            if end != -1 and name in _CLASS:
                body = _CLASS[name] + _ASCII[_CLASS[name]]
                out.append(body if inside else f"[{body}]")
                i = end + 1
                continue
        if c == "\\":
            out.append(expr[i:i + 2])
            i += 2
            continue
        if c == "[" and not inside:
            inside = True
        elif c == "]" and inside:
            inside = False
        elif c == "$" and not inside:
            c = r"\Z"
        out.append(c)
        i += 1
    return "".join(out)


# kimi-k2, all its patterns at once; L' = letters that are not Han
_KIMI_L = "A-Za-z" + LET + HAN_LET
_KIMI_L_NOT_HAN = "A-Za-z" + LET
_KIMI_N = "0-9" + NUM
_KIMI_CONTR = r"(?:'[sStTmMdD]|'(?:[rR][eE]|[vV][eE]|[lL][lL]))"
KIMI_REGEX = (f"[{HAN_LET}{HAN_OTHER}]+"
              f"|[^\\r\\n{_KIMI_L}{_KIMI_N}]?[{_KIMI_L_NOT_HAN}]+{_KIMI_CONTR}?"
              f"|[{_KIMI_N}]{{1,3}}"
              f"| ?[^\\s{_KIMI_L}{_KIMI_N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


class Splitter:
    """One family's regex chain, compiled: split(text) -> list of pieces (str)."""

    def __init__(self, exprs: list[str]):
        self.steps: list[tuple[str, re.Pattern | None]] = []
        for e in exprs:
            if e in (AFMOE_DIGITS, TINY_AYA_DIGITS):
                self.steps.append(("digits", None))
            elif e == KIMI_K2:
                self.steps.append(("han", re.compile(KIMI_REGEX, re.ASCII)))
            elif uses_classes(e):
                self.steps.append(("collapsed", re.compile(collapsed_regex(e), re.ASCII)))
            else:
                self.steps.append(("plain", re.compile(collapsed_regex(e), re.ASCII)))  # only `$` changes
        self.need = {kind for kind, _ in self.steps}

    def spans(self, text: str) -> list[tuple[int, int]]:
        views = {}
        if self.need & {"collapsed", "digits"}:
            views["collapsed"] = views["digits"] = collapse(text)
        if "han" in self.need:
            views["han"] = collapse(text, han=True)
        if "plain" in self.need:
            views["plain"] = text if text.isascii() else text.translate(_WHITESPACE)
        spans = [(0, len(text))] if text else []
        for kind, pat in self.steps:
            view = views[kind]
            spans = _digit_groups(view, spans) if pat is None else _regex_split(pat, view, spans)
        return spans

    def split(self, text: str) -> list[str]:
        return [text[a:b] for a, b in self.spans(text)]


def _regex_split(pat: re.Pattern, view: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Matches and the stretches between them, within each piece (unicode_regex_split_stl)."""
    out: list[tuple[int, int]] = []
    add = out.append
    for start, end in spans:
        prev = start
        for m in pat.finditer(view, start, end):
            a, b = m.span()
            if a > prev:
                add((prev, a))
            if b > a:
                add((a, b))
            prev = b
        if prev < end:
            add((prev, end))
    return out


_DIGIT_RUN = re.compile("[0-9" + NUM + "]+")


def _digit_groups(view: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """llama.cpp's AFMoE digit split: a run of n digits -> n % 3 digits, then threes. The text
    before a run stays glued to the run's first group, as in llama.cpp."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        prev = start
        for m in _DIGIT_RUN.finditer(view, start, end):
            a, b = m.span()
            cut = a + (b - a) % 3
            cuts = ([cut] if cut > a else []) + list(range(cut + 3, b + 1, 3))
            for c in cuts:
                out.append((prev, c))
                prev = c
        if prev < end:
            out.append((prev, end))
    return out
