"""Bytes -> text: byte-order marks, strict UTF-8, then legacy encodings ranked by plausibility.

Order of decisions:
1. a BOM (UTF-32 LE/BE before UTF-16 LE/BE, whose BOM is a prefix of UTF-32 LE's, so UTF-16 LE
   text that starts with U+0000 reads as UTF-32 when it decodes as such; UTF-8);
2. BOM-less UTF-16 (every other byte NUL in mostly-ASCII text);
3. a NUL byte anywhere else -> binary;
4. strict UTF-8;
5. each legacy candidate that decodes strictly is scored by `implausibility` (marks per char)
   and the lowest wins; ties go to the earlier candidate in LEGACY (single-byte first).
Text whose best decoding is still mostly control characters is binary.
"""
from __future__ import annotations

import codecs
import unicodedata

from .errors import BinaryFileError

BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
)
LEGACY = ("cp1252", "cp1251", "shift_jis", "gb18030", "latin-1")
SAMPLE = 1 << 16            # chars scored per candidate (the start of the file decides)
# Non-ASCII symbols common in real text; other symbols are typical of a wrong code page.
_COMMON_SYMBOLS = set("©®°€£¥§•…‘’“”„«»–—№™¡¿\u00a0")
_OK_CONTROLS = set("\t\n\r\f\v")


def decode_bytes(data: bytes, name: str = "file") -> tuple[str, str]:
    """(text, encoding name). Raises BinaryFileError for data that is not text."""
    for bom, codec, label in BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(codec), label
            except UnicodeDecodeError:
                if codec == "utf-32-le":     # FF FE 00 00: UTF-16 LE text starting with U+0000
                    continue
                raise BinaryFileError(f"{name} starts with a {label} byte-order mark but is not "
                                      f"valid {label}; re-save it as UTF-8") from None
    utf16 = _bomless_utf16(data)
    if utf16:
        return utf16
    if b"\x00" in data:
        raise BinaryFileError(f"{name} is a binary file, not text; attach text, PDF or DOCX "
                              "files (export the content to one of these)")
    try:
        return _checked(data.decode("utf-8"), name), "utf-8"
    except UnicodeDecodeError:
        pass
    best = None
    for enc in LEGACY:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        score = implausibility(text[:SAMPLE], enc)
        if best is None or score < best[0] - 1e-9:
            best = (score, text, enc)
    assert best is not None   # latin-1 decodes any bytes
    return _checked(best[1], name), best[2]


def _bomless_utf16(data: bytes) -> tuple[str, str] | None:
    """UTF-16 without a BOM: in mostly-Latin text every other byte is NUL (high byte first = BE)."""
    head = data[:4096]
    if len(head) < 4 or len(data) % 2:
        return None
    even, odd = head[0::2], head[1::2]
    for zeros, codec in ((odd, "utf-16-le"), (even, "utf-16-be")):
        other = even if zeros is odd else odd
        if zeros.count(0) > 0.7 * len(zeros) and other.count(0) < 0.1 * len(other):
            try:
                return data.decode(codec), codec
            except UnicodeDecodeError:
                return None
    return None


def _checked(text: str, name: str) -> str:
    sample = text[:SAMPLE]
    bad = sum(1 for c in sample if _is_bad(c))
    if sample and bad > 0.1 * len(sample):
        raise BinaryFileError(f"{name} is a binary file, not text ({bad} control characters in "
                              f"the first {len(sample)}); attach text, PDF or DOCX files")
    return text


def _is_bad(c: str) -> bool:
    """Control, unassigned, private-use, surrogate or replacement characters."""
    if c in _OK_CONTROLS:
        return False
    return unicodedata.category(c) in ("Cc", "Cn", "Co", "Cs") or c == "\ufffd"


def implausibility(text: str, encoding: str = "") -> float:
    """Marks per character for signs of a wrong code page (lower is more plausible):
    bad characters (4), mixed scripts in one word (2), a lower->upper case change inside a
    word (1), a Latin word mostly of accented letters (1 per letter), and 1 for each non-ASCII
    character outside what text in that encoding usually holds (`_usual`)."""
    if not text:
        return 0.0
    marks = 0.0
    for word in _words(text):
        marks += _word_marks(word)
    for c in text:
        if c < "\x80":
            continue
        if _is_bad(c):
            marks += 4
        elif not _usual(c, encoding):
            marks += 1
    return marks / len(text)


def _usual(c: str, encoding: str) -> bool:
    """Western code pages: Latin letters and common punctuation; cp1251: Cyrillic letters and
    common punctuation; CJK encodings: everyday ideographs (GB2312 / JIS X 0208), kana, CJK
    and full-width punctuation. Unknown encoding: anything but rare symbols."""
    if encoding in ("cp1252", "latin-1"):
        return c in _COMMON_SYMBOLS or (c.isalpha() and _script(c) == "LATIN")
    if encoding == "cp1251":
        return c in _COMMON_SYMBOLS or (c.isalpha() and _script(c) == "CYRILLIC")
    if encoding in ("shift_jis", "gb18030"):
        return ((_is_cjk(c) and _common_cjk(c)) or "\u3000" <= c <= "\u30ff"
                or "\uff01" <= c <= "\uff5e")
    return not (unicodedata.category(c)[0] == "S" and c not in _COMMON_SYMBOLS)


def _words(text: str):
    word = []
    for c in text:
        if c.isalpha():
            word.append(c)
        elif word:
            yield word
            word = []
    if word:
        yield word


def _word_marks(word: list[str]) -> float:
    if all(c < "\x80" for c in word):
        return 0.0
    marks = 0.0
    scripts = {_script(c) for c in word} - {"CJK", "HIRAGANA", "KATAKANA"}
    if len(scripts) > 1:
        marks += 2
    marks += sum(1 for a, b in zip(word, word[1:]) if a.islower() and b.isupper())
    if scripts == {"LATIN"}:
        accented = sum(1 for c in word if c >= "\x80")
        if accented >= 2 and accented * 2 > len(word):
            marks += accented
    return marks


def _script(c: str) -> str:
    if c < "\x80":
        return "LATIN"
    if _is_cjk(c):
        return "CJK"
    name = unicodedata.name(c, "")
    return name.split(" ", 1)[0] if name else "?"


def _is_cjk(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" or "\uf900" <= c <= "\ufaff"


def _common_cjk(c: str) -> bool:
    """In GB2312 (simplified Chinese) or JIS X 0208 (Japanese): the everyday ideographs."""
    for enc in ("gb2312", "shift_jis"):
        try:
            c.encode(enc)
            return True
        except UnicodeEncodeError:
            pass
    return False
