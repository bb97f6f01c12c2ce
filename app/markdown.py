"""A small markdown-to-HTML converter for chat messages (QTextBrowser's HTML subset). No Qt.

Handles what models write: paragraphs, headings, **bold**, *italic* / _italic_, `inline code`,
bullet and numbered lists, block quotes, fenced code blocks (monospace, with a copy link) and
<think>...</think> sections (folded unless open; an unclosed one is still being thought).
Everything else is text: all input is HTML-escaped first, so a message can never inject markup.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+#.-]*)\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*(\d+)[.)]\s+(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_THINK = re.compile(r"<think>(.*?)(</think>|$)", re.S)


@dataclass
class Colors:
    text: str = "#1f2328"
    muted: str = "#6e7781"
    code_bg: str = "#f2f4f7"
    border: str = "#d0d7de"
    link: str = "#0969da"


@dataclass
class Rendered:
    html: str
    code_blocks: list[str] = field(default_factory=list)   # raw text of each fenced block, in order
    thinks: int = 0                                          # number of <think> sections


def inline(text: str, c: Colors) -> str:
    """Escape, then inline code, bold, italic."""
    parts = re.split(r"(`[^`\n]+`)", text)
    out = []
    for p in parts:
        if len(p) >= 2 and p.startswith("`") and p.endswith("`"):
            out.append(f'<code style="font-family: monospace; background-color: {c.code_bg};">'
                       f"{html.escape(p[1:-1], quote=False)}</code>")
            continue
        s = html.escape(p, quote=False)
        s = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<b>\1</b>", s)
        s = re.sub(r"__(?=\S)(.+?)(?<=\S)__", r"<b>\1</b>", s)
        s = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"<i>\1</i>", s)
        s = re.sub(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])", r"<i>\1</i>", s)
        out.append(s)
    return "".join(out)


def blocks_to_html(text: str, c: Colors, code_blocks: list[str], link_prefix: str) -> str:
    """Markdown (no <think> handling) -> HTML. Code block texts are appended to code_blocks and
    get a copy link `{link_prefix}{index}`."""
    lines = text.split("\n")
    out: list[str] = []
    para: list[str] = []
    lst: list[str] = []
    lst_kind = ""

    def end_para():
        if para:
            out.append("<p>" + "<br>".join(inline(x, c) for x in para) + "</p>")
            para.clear()

    def end_list():
        nonlocal lst_kind
        if lst:
            out.append(f"<{lst_kind}>" + "".join(f"<li>{x}</li>" for x in lst) + f"</{lst_kind}>")
            lst.clear()
        lst_kind = ""

    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if m:
            end_para(), end_list()
            fence, lang = m.group(1), m.group(2)
            body = []
            i += 1
            while i < len(lines) and lines[i].strip() != fence:
                body.append(lines[i])
                i += 1
            i += 1      # the closing fence (or the end: a block still being written)
            code = "\n".join(body)
            idx = len(code_blocks)
            code_blocks.append(code)
            label = html.escape(lang) + " · " if lang else ""
            out.append(
                f'<table width="100%" cellspacing="0" cellpadding="6" '
                f'style="background-color: {c.code_bg}; border: 1px solid {c.border}; margin: 4px 0;">'
                f'<tr><td style="color: {c.muted}; font-size: small;">{label}'
                f'<a href="{link_prefix}{idx}" style="color: {c.link};">Copy code</a></td></tr>'
                f'<tr><td><pre style="font-family: monospace; margin: 0;">'
                f"{html.escape(code, quote=False)}</pre></td></tr></table>")
            continue
        if not line.strip():
            end_para(), end_list()
        elif h := _HEADING.match(line):
            end_para(), end_list()
            level = min(len(h.group(1)) + 2, 6)
            out.append(f"<h{level}>{inline(h.group(2), c)}</h{level}>")
        elif (b := _BULLET.match(line)) or (n := _NUMBERED.match(line)):
            end_para()
            kind = "ul" if b else "ol"
            if lst_kind and lst_kind != kind:
                end_list()
            lst_kind = kind
            lst.append(inline(b.group(1) if b else n.group(2), c))
        elif line.startswith(">"):
            end_para(), end_list()
            out.append(f'<blockquote style="color: {c.muted};">{inline(line.lstrip("> "), c)}</blockquote>')
        elif lst and line.startswith(("  ", "\t")):
            lst[-1] += " " + inline(line.strip(), c)
        else:
            end_list()
            para.append(line)
        i += 1
    end_para(), end_list()
    return "".join(out)


def render(text: str, c: Colors | None = None, open_thinks: set[int] | frozenset = frozenset(),
           link_prefix: str = "lectern:code/", think_prefix: str = "lectern:think/") -> Rendered:
    """A message -> HTML. <think> section k is shown only if k is in open_thinks; its fold link is
    `{think_prefix}{k}`."""
    c = c or Colors()
    code: list[str] = []
    out: list[str] = []
    pos = 0
    k = 0
    for m in _THINK.finditer(text):
        if m.start() > pos:
            out.append(blocks_to_html(text[pos:m.start()], c, code, link_prefix))
        inner, closed = m.group(1).strip(), bool(m.group(2))
        words = len(inner.split())
        if k in open_thinks:
            head = f'<a href="{think_prefix}{k}" style="color: {c.link};">▾ Hide thinking</a>'
            body = blocks_to_html(inner, c, code, link_prefix)
            out.append(f'<div style="color: {c.muted}; font-style: italic; margin-left: 12px;">'
                       f"<p>{head}</p>{body}</div>")
        else:
            what = f"Thought ({words} words)" if closed else f"Thinking… ({words} words)"
            out.append(f'<p style="color: {c.muted};"><a href="{think_prefix}{k}" '
                       f'style="color: {c.link};">▸ {what}</a></p>')
        k += 1
        pos = m.end()
    if pos < len(text):
        out.append(blocks_to_html(text[pos:], c, code, link_prefix))
    return Rendered("".join(out), code, k)
