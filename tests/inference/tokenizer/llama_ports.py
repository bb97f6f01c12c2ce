"""Line-by-line Python ports of llama.cpp's hand-written pre-tokenizer splitters (unicode.cpp:
unicode_regex_split_custom_gpt2 / _llama3 / _qwen2 / _qwen35 / _kimi_k2), used only as the
reference that the regex-based splitter is checked against. Slow and literal on purpose.
Code point categories come from the same table as the splitter (classify)."""
from __future__ import annotations

from inference.tokenizer.pretokenize import LET, MARK, NUM, WS, classify, is_han


class F:
    """unicode_cpt_flags of one code point; `none` for positions outside the piece."""

    def __init__(self, ch: str | None):
        self.none = ch is None
        if ch is None:
            self.ws = self.letter = self.number = self.mark = False
            return
        if ord(ch) < 128:
            self.ws = ch in " \t\n\v\f\r"
            self.letter = ch.isalpha()
            self.number = ch.isdigit()
            self.mark = False
        else:
            c = classify(ch)
            self.ws, self.letter, self.number, self.mark = c == WS, c == LET, c == NUM, c == MARK

    @property
    def nonzero(self) -> bool:
        return not self.none


def _run(text: str, step) -> list[str]:
    out, pos, n = [], 0, len(text)
    prev = [0]

    def add(end: int) -> int:
        length = end - prev[0]
        if length > 0:
            out.append(text[prev[0]:end])
        prev[0] = end
        return length

    def cpt(p: int):
        return text[p] if 0 <= p < n else None

    def flags(p: int) -> F:
        return F(text[p] if 0 <= p < n else None)

    while pos < n:
        pos = step(pos, n, cpt, flags, add)
    return out


def _lower(c):
    return c.lower() if c is not None and len(c.lower()) == 1 else c


def _contraction(pos, n, cpt, add):
    if cpt(pos) == "'" and pos + 1 < n:
        c1 = _lower(cpt(pos + 1))
        if c1 in ("s", "t", "m", "d"):
            return pos + add(pos + 2)
        if pos + 2 < n:
            c2 = _lower(cpt(pos + 2))
            if (c1, c2) in (("r", "e"), ("v", "e"), ("l", "l")):
                return pos + add(pos + 3)
    return None


def _whitespace(pos, n, cpt, flags, add, newlines: bool):
    nws, last_rn = 0, 0
    while flags(pos + nws).ws:
        if newlines and cpt(pos + nws) in ("\r", "\n"):
            last_rn = pos + nws + 1
        nws += 1
    if last_rn > 0:
        add(last_rn)
        return last_rn
    if nws > 1 and cpt(pos + nws) is not None:
        pos += nws - 1
        add(pos)
        return pos
    if nws > 0:
        pos += nws
        add(pos)
        return pos
    pos += 1
    add(pos)
    return pos


def gpt2(text: str) -> list[str]:
    def step(pos, n, cpt, flags, add):
        c, f = cpt(pos), flags(pos)
        if c == "'" and pos + 1 < n:
            c1 = cpt(pos + 1)
            if c1 in ("s", "t", "m", "d"):
                return pos + add(pos + 2)
            if pos + 2 < n and (c1, cpt(pos + 2)) in (("r", "e"), ("v", "e"), ("l", "l")):
                return pos + add(pos + 3)
        f2 = flags(pos + 1) if c == " " else f
        for test in (lambda g: g.letter, lambda g: g.number,
                     lambda g: not (g.ws or g.letter or g.number) and g.nonzero):
            if test(f2):
                pos += c == " "
                while test(f2):
                    pos += 1
                    f2 = flags(pos)
                add(pos)
                return pos
        return _whitespace(pos, n, cpt, flags, add, newlines=False)
    return _run(text, step)


def llama3(text: str, group: int = 3, marks: bool = False) -> list[str]:
    """llama3 (numbers in threes), qwen2 (group=1), qwen35 (group=1, marks=True)."""
    def is_word(g):
        return g.letter or (marks and g.mark)

    def step(pos, n, cpt, flags, add):
        c, f = cpt(pos), flags(pos)
        r = _contraction(pos, n, cpt, add)
        if r is not None:
            return r
        if not (c in ("\r", "\n") or f.number):
            if is_word(f) or is_word(flags(pos + 1)):
                pos += 1
                while is_word(flags(pos)):
                    pos += 1
                add(pos)
                return pos
        if f.number:
            ini = pos
            while flags(pos).number:
                pos += 1
                if pos - ini >= group:
                    add(pos)
                    ini = pos
            add(pos)
            return pos
        f2 = flags(pos + 1) if c == " " else f
        if not (f2.ws or is_word(f2) or f2.number) and f.nonzero:
            pos += c == " "
            while not (f2.ws or is_word(f2) or f2.number) and f2.nonzero:
                pos += 1
                f2 = flags(pos)
            while cpt(pos) in ("\r", "\n"):
                pos += 1
            add(pos)
            return pos
        return _whitespace(pos, n, cpt, flags, add, newlines=True)
    return _run(text, step)


def kimi_k2(text: str) -> list[str]:
    def han(c):
        return c is not None and is_han(ord(c))

    def step(pos, n, cpt, flags, add):
        c, f = cpt(pos), flags(pos)
        if han(c):
            while han(cpt(pos)):
                pos += 1
            add(pos)
            return pos
        lead_ok = not (c in ("\r", "\n") or f.letter or f.number)
        if (f.letter and not han(c)) or (lead_ok and flags(pos + 1).letter and not han(cpt(pos + 1))):
            has_lead = False
            if lead_ok:
                has_lead = True
                pos += 1
            has_letters = False
            while flags(pos).letter and not han(cpt(pos)):
                has_letters = True
                pos += 1
            if has_letters or (not has_lead and flags(pos).letter and not han(cpt(pos))):
                if not has_letters:
                    pos += 1
                while flags(pos).letter and not han(cpt(pos)):
                    pos += 1
                if cpt(pos) == "'" and pos + 1 < n:
                    c1 = _lower(cpt(pos + 1))
                    if c1 in ("s", "t", "m", "d"):
                        pos += 2
                    elif pos + 2 < n and (c1, _lower(cpt(pos + 2))) in (("r", "e"), ("v", "e"), ("l", "l")):
                        pos += 3
                add(pos)
                return pos
            elif has_lead:
                pos -= 1
        if f.number:
            ini = pos
            while flags(pos).number:
                pos += 1
                if pos - ini >= 3:
                    add(pos)
                    ini = pos
            add(pos)
            return pos
        f2 = flags(pos + 1) if c == " " else f
        if not (f2.ws or f2.letter or f2.number) and f2.nonzero:
            pos += c == " "
            while not (f2.ws or f2.letter or f2.number) and f2.nonzero:
                pos += 1
                f2 = flags(pos)
            while cpt(pos) in ("\r", "\n"):
                pos += 1
            add(pos)
            return pos
        return _whitespace(pos, n, cpt, flags, add, newlines=True)
    return _run(text, step)
