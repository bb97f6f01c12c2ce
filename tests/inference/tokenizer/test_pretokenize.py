"""The regex pre-tokenizer against literal ports of llama.cpp's hand-written splitters, plus
fixed examples of the other families (regex chains, digit grouping, collapsed classes)."""
from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.tokenizer import pretypes
from inference.tokenizer.pretokenize import Splitter, collapsed_regex
from inference.tokenizer.pretypes import REGEXES, resolve_pre

from . import llama_ports

# letters, digits of several scripts, marks, whitespace of all kinds, apostrophes, emoji, Han
TRICKY = ("aZé1٣ⅷ \t\n\r\u00a0\u3000\u2028\x0b\x85'sStTrReEvVlLmMdD,.!?$+<_-/😀\u0301\u0915\u093f"
          "今天気ｶ\u200b\x00\x1f\ufffd\U000e0001\U0010fffd\u1c89Ω")
texts = st.one_of(st.text(alphabet=TRICKY, max_size=40), st.text(max_size=40))

SPLITTERS = {fam: Splitter(REGEXES[fam]) for fam in REGEXES}


def test_every_family_compiles_and_covers_the_text():
    sample = "Hello world's  12345 Café naïve 今天天气 😀🚀 \t\n\nend  ɐ\u0301 x'LL"
    for fam, sp in SPLITTERS.items():
        pieces = sp.split(sample)
        assert "".join(pieces) == sample, fam
        assert all(pieces), fam


@settings(max_examples=400, deadline=None)
@given(texts)
def test_gpt2_matches_llama_cpp(text):
    assert SPLITTERS["gpt2"].split(text) == llama_ports.gpt2(text)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_llama3_matches_llama_cpp(text):
    assert SPLITTERS["llama3"].split(text) == llama_ports.llama3(text)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_qwen2_matches_llama_cpp(text):
    assert SPLITTERS["qwen2"].split(text) == llama_ports.llama3(text, group=1)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_qwen35_matches_llama_cpp(text):
    assert SPLITTERS["qwen35"].split(text) == llama_ports.llama3(text, group=1, marks=True)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_kimi_k2_matches_llama_cpp(text):
    assert SPLITTERS["kimi-k2"].split(text) == llama_ports.kimi_k2(text)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_starcoder_is_digits_then_gpt2(text):
    """A chain: every \\p{N} is its own piece, then gpt2 runs inside each piece."""
    pieces = []
    for part in Splitter([r"\p{N}"]).split(text):
        pieces += llama_ports.gpt2(part)
    assert SPLITTERS["starcoder"].split(text) == pieces


@pytest.mark.parametrize("fam,text,pieces", [
    ("afmoe", "ab1234567", ["ab", "1", "234", "567"]),          # text before a run is glued, then split
    ("tiny_aya", "x 1234567 y", ["x", " ", "1", "234", "567", " y"]),
    ("superbpe", "1234567", ["1", "234", "567"]),
    ("deepseek-llm", "Hi  \n", ["Hi", "  ", "\n"]),
    ("default", "a+=b 1234", ["a", "+=", "b", " ", "123", "4"]),
    ("gemma4", "a b\n\nc", ["a b", "\n\n", "c"]),
    ("tekken", "HelloWorld", ["Hello", "World"]),
    ("gpt4o", "HELLOWorld's", ["HELLOWorld's"]),
])
def test_family_examples(fam, text, pieces):
    assert SPLITTERS[fam].split(text) == pieces


def test_collapsed_regex_like_llama_cpp():
    assert collapsed_regex(r"\p{L}+") == "[\xd2A-Za-z]+"
    assert collapsed_regex(r"[^\s\p{L}\p{N}]") == "[^\\s\xd2A-Za-z\xd10-9]"
    assert collapsed_regex(r"\s+$") == r"\s+\Z"
    assert collapsed_regex(r"[\p{P}\$]") == "[\xd3!-#%-*,-/:-;?-@\\[-\\]_\\{\\}\\$]"


def test_known_and_unknown_pre_names():
    assert resolve_pre("deepseek-r1-qwen").family == "qwen2"
    assert resolve_pre("smollm").flags == {"clean_spaces": False}
    assert resolve_pre("llama-bpe").flags == {"ignore_merges": True, "add_bos": True}
    for name in pretypes.known_pre_names():
        assert resolve_pre(name).family in REGEXES
    with pytest.warns(UserWarning, match="unknown pre-tokenizer 'no-such-pre'"):
        assert resolve_pre("no-such-pre").family == "default"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_pre("qwen2")


@pytest.mark.parametrize("ch,mark", [
    ("é", "\xd2"), ("\u0301", "\xd4"), ("٣", "\xd1"), ("ⅷ", "\xd1"), ("😀", "\xd5"), ("«", "\xd3"),
    ("\u00a0", "\x0b"), ("\u3000", "\x0b"), ("\x85", "\x0b"), ("\u200b", "\xd0"), ("\ue000", "\xd0"),
    ("\U00031350", "\xd2"), ("\U0002ebf0", "\xd2"),      # CJK Ext H / I: letters in llama.cpp's 15.1 tables
    ("\u1c89", "\xd0"), ("\U000323b0", "\xd0"),          # first assigned in Unicode 16 / 17: not yet there
])
def test_character_classes_follow_llama_cpp_tables(ch, mark):
    from inference.tokenizer.pretokenize import classify

    assert classify(ch) == mark
