"""The chat's markdown-to-HTML converter."""
from __future__ import annotations

import html
import re

from hypothesis import given, strategies as stt

from app.markdown import render


def test_paragraphs_emphasis_inline_code():
    r = render("Hello **bold** and *it* and _also_ and `x < y`.\n\nSecond para")
    assert "<b>bold</b>" in r.html and "<i>it</i>" in r.html and "<i>also</i>" in r.html
    assert re.search(r"<code[^>]*>x &lt; y</code>", r.html)
    assert r.html.count("<p>") == 2


def test_lists_and_headings():
    r = render("# Title\n- one\n- two\n\n1. first\n2. second")
    assert "<h3>Title</h3>" in r.html
    assert "<ul><li>one</li><li>two</li></ul>" in r.html
    assert "<ol><li>first</li><li>second</li></ol>" in r.html


def test_fenced_code_block_is_kept_verbatim_with_a_copy_link():
    code = 'def f(a):\n    return a ** 2  # <not a tag> *not italic*'
    r = render(f"Look:\n```python\n{code}\n```\nafter", link_prefix="lectern:code/7/")
    assert r.code_blocks == [code]
    assert html.escape(code, quote=False) in r.html
    assert '<a href="lectern:code/7/0"' in r.html and "python" in r.html
    assert "<i>" not in r.html                       # no markdown inside code


def test_unclosed_fence_while_streaming():
    r = render("```\nprint(1)")
    assert r.code_blocks == ["print(1)"]


def test_think_sections_fold_and_unfold():
    text = "<think>secret plan here</think>The answer."
    folded = render(text, think_prefix="lectern:think/3/")
    assert "secret plan" not in folded.html
    assert "Thought (3 words)" in folded.html and 'href="lectern:think/3/0"' in folded.html
    assert "The answer." in folded.html
    opened = render(text, open_thinks={0})
    assert "secret plan here" in opened.html and "Hide thinking" in opened.html


def test_unclosed_think_is_still_thinking():
    r = render("<think>step one, step two")
    assert "Thinking…" in r.html and "step one" not in r.html and r.thinks == 1


def test_html_in_messages_is_escaped():
    r = render('<script>alert(1)</script> <b>x</b> <a href="javascript:1">y</a>')
    assert "<script>" not in r.html and "<b>x</b>" not in r.html and "<a href=\"javascript" not in r.html
    assert "&lt;script&gt;" in r.html


@given(stt.text(alphabet=stt.characters(blacklist_categories=("Cs",)), max_size=200))
def test_never_passes_raw_markup_through(text):
    out = render(text).html
    # every '<' in the output starts one of the tags the converter itself writes
    for m in re.finditer(r"<(/?)([a-z0-9]+)", out):
        assert m.group(2) in {"p", "br", "b", "i", "code", "pre", "ul", "ol", "li", "h3", "h4", "h5",
                              "h6", "blockquote", "table", "tr", "td", "a", "div"}
    assert "<think" not in out
