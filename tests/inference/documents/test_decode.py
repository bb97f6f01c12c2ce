"""Encoding detection: BOM and UTF-8 round trips for any text; legacy code pages recovered for
sentences in their languages; binary data refused."""
from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.documents import BinaryFileError
from inference.documents.decode import decode_bytes

# Any text, surrogates excluded (they cannot be encoded).
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
# Text as files hold it: letters, digits, punctuation, symbols and spaces of any script.
FILE_TEXT = st.text(st.characters(categories=("L", "N", "P", "S", "Zs")) | st.sampled_from("\n\t"),
                    max_size=300).filter(lambda t: not t.startswith("\ufeff"))


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT, st.sampled_from([
    ("utf-8-sig", "utf-8-sig", b""), ("utf-16", "utf-16", b""), ("utf-32", "utf-32", b""),
    ("utf-16-be", "utf-16", codecs.BOM_UTF16_BE), ("utf-32-be", "utf-32", codecs.BOM_UTF32_BE),
]))
def test_text_after_a_byte_order_mark_comes_back_exactly(text, enc):
    codec, label, bom = enc
    if codec == "utf-16" and text.startswith("\x00"):
        return   # FF FE 00 00 ... is also a UTF-32 LE BOM; a text file does not start with NUL
    assert decode_bytes(bom + text.encode(codec)) == (text, label)


@settings(max_examples=300, deadline=None)
@given(FILE_TEXT)
def test_utf8_text_comes_back_exactly(text):
    assert decode_bytes(text.encode("utf-8")) == (text, "utf-8")


WORDS = {
    "cp1252": ("café élève déjà façade naïve Größe Müller straße über año niño señor garçon "
               "crème brûlée coûte où très l'été réservé Köln Zürich Århus smörgåsbord").split()
              + "the report and of with numbers rose by".split(),
    "cp1251": ("отчёт выручка выросла процентов квартал компания Москва году рынок цены "
               "сотрудники продажи также было этого который между").split(),
    "shift_jis": ("日本語 文章 です これは 普通の ひらがな カタカナ 東京 会社 売上 今年 "
                  "増えました 報告書 について 確認 して ください").split(),
    "gb18030": ("这是 一个 中文 文本 用于 测试 我们 今天 公司 销售额 增长 百分之 报告 "
                "市场 价格 员工 北京 上海").split(),
}
JOIN = {"cp1252": " ", "cp1251": " ", "shift_jis": "", "gb18030": ""}
STOP = {"cp1252": ". ", "cp1251": ". ", "shift_jis": "。", "gb18030": "，"}


@st.composite
def sentences(draw, enc):
    words = draw(st.lists(st.sampled_from(WORDS[enc]), min_size=6, max_size=40))
    text = JOIN[enc].join(words)
    return text + STOP[enc] + draw(st.sampled_from(["", "\n", "2024: 12%\n"]))


@pytest.mark.parametrize("enc", list(WORDS))
def test_legacy_code_pages_are_recognised_for_text_in_their_language(enc):
    @settings(max_examples=150, deadline=None)
    @given(sentences(enc))
    def check(text):
        assert decode_bytes(text.encode(enc)) == (text, "utf-8" if text.isascii() else enc)

    check()


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_data_with_nul_bytes_and_no_text_encoding_is_binary(data):
    blob = b"\x01\x02" + data + b"\x00" + data[:1]
    if len(blob) % 2 == 0:
        blob += b"\x03"                      # odd length: cannot be UTF-16
    with pytest.raises(BinaryFileError, match="binary file"):
        decode_bytes(blob, "blob.dat")


def test_bomless_utf16_is_recognised():
    text = "Plain report text, line one.\nLine two: 12 % growth.\n"
    assert decode_bytes(text.encode("utf-16-le")) == (text, "utf-16-le")
    assert decode_bytes(text.encode("utf-16-be")) == (text, "utf-16-be")


def test_text_made_of_control_characters_is_binary():
    with pytest.raises(BinaryFileError, match="control characters"):
        decode_bytes(bytes(range(1, 32)) * 20, "ctl.txt")
