"""The conversation, rendered as HTML in a QTextBrowser (markdown via app.markdown).

Links inside the document are commands: `lectern:copy/<mid>`, `lectern:edit/<mid>`,
`lectern:regen/<mid>`, `lectern:code/<mid>/<k>` (copy a code block), `lectern:think/<mid>/<k>`
(fold or unfold a thinking section), `lectern:doc/<attachment id>` (preview an attached document),
`lectern:branch/<mid>` (a new conversation with the message's documents). A user message with
documents shows them as chips above its text (`attachments`: {mid: [attachment rows]}), never
their text. Streaming text is re-rendered at most every RENDER_MS.
"""
from __future__ import annotations

import html

from PySide6.QtCore import QEvent, QTimer, QUrl, Signal
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import QMenu, QTextBrowser

from . import markdown
from .store import Message
from .qt_compat import emit

RENDER_MS = 40
ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}
STATE_NOTES = {"stopped": "stopped", "interrupted": "interrupted (the app closed while answering)",
               "error": "failed"}


def colors_for(palette: QPalette) -> markdown.Colors:
    dark = palette.color(QPalette.Window).lightness() < 128
    if dark:
        return markdown.Colors(text="#e6edf3", muted="#8b949e", code_bg="#161b22",
                               border="#30363d", link="#58a6ff")
    return markdown.Colors()


def stats_line(stats: dict) -> str:
    if not stats or stats.get("stop_reason") in (None, "", "count"):
        return ""
    parts = []
    if stats.get("generated_tokens") is not None:
        parts.append(f"{stats['generated_tokens']} tokens")
    if stats.get("tokens_per_s"):
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if stats.get("ttft"):
        parts.append(f"first token {stats['ttft']:.2f} s")
    if stats.get("prompt_tokens"):
        parts.append(f"prompt {stats['prompt_tokens']} tokens")
    if stats.get("reused_tokens"):
        parts.append(f"{stats['reused_tokens']} reused")
    if stats.get("state_bytes"):
        from inference.model_info import human_bytes

        parts.append(f"saved state {human_bytes(stats['state_bytes'])}")
    return " · ".join(parts)


def chips_html(rows: list[dict], c: markdown.Colors) -> str:
    """The documents of a user message: a linked name (preview) and its size, one per line."""
    from .document_widgets import doc_summary

    out = []
    for a in rows:
        rest = doc_summary("", a.get("pages"), a.get("chars") or 0, a.get("tokens") or None)
        out.append(f'<span style="background-color: {c.border};">&nbsp;&#9636;&nbsp;'
                   f'<a href="lectern:doc/{a["id"]}" style="color: {c.link};" '
                   f'title="{html.escape(a["path"])}: click to preview the text; right-click to '
                   f'start a new conversation from it">'
                   f'{html.escape(a["name"])}</a>&nbsp;</span>'
                   f'<span style="color: {c.muted};">{html.escape(rest)}</span>')
    return f'<p style="margin-bottom: 4px;">{"<br>".join(out)}</p>' 


class ChatView(QTextBrowser):
    copyRequested = Signal(int)       # message id (the view copies it; the window shows a note)
    editRequested = Signal(int)
    regenerateRequested = Signal(int)
    documentRequested = Signal(int)   # attachment id: preview it
    branchRequested = Signal(object)  # [attachment ids]: a new conversation with these documents

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        self.messages: list[Message] = []
        self.attachments: dict[int, list[dict]] = {}
        self.busy = False
        self.open_thinks: set[tuple[int, int]] = set()
        self.code_blocks: dict[tuple[int, int], str] = {}
        self._timer = QTimer(self, singleShot=True, interval=RENDER_MS)
        self._timer.timeout.connect(self.render)
        self.setPlaceholderText("Ask anything. Enter sends, Shift+Enter starts a new line.")

    # --- content ------------------------------------------------------------------------------
    def set_messages(self, messages: list[Message], busy: bool = False) -> None:
        self.messages = list(messages)
        self.busy = busy
        self.open_thinks.clear()
        self.render()
        self.scroll_to_end()

    def append(self, msg: Message) -> None:
        self.messages.append(msg)
        self.render()
        self.scroll_to_end()

    def update_text(self, mid: int, text: str, state: str | None = None, stats: dict | None = None,
                    now: bool = False) -> None:
        for m in self.messages:
            if m.id == mid:
                m.content = text
                if state is not None:
                    m.state = state
                if stats is not None:
                    m.stats = stats
        if now:
            self.render()
        elif not self._timer.isActive():
            self._timer.start()

    def message(self, mid: int) -> Message | None:
        return next((m for m in self.messages if m.id == mid), None)

    def last_answer(self) -> Message | None:
        return next((m for m in reversed(self.messages) if m.role == "assistant"), None)

    # --- rendering ----------------------------------------------------------------------------
    def render(self) -> None:
        sb = self.verticalScrollBar()
        at_end = sb.value() >= sb.maximum() - 8
        keep = sb.value()
        c = colors_for(QGuiApplication.palette())
        self.code_blocks.clear()
        body = [f'<body style="color: {c.text};">']
        last_user = max((m.id for m in self.messages if m.role == "user"), default=-1)
        last_asst = max((m.id for m in self.messages if m.role == "assistant"), default=-1)
        for m in self.messages:
            body.append(self._message_html(m, c, m.id == last_user, m.id == last_asst))
        body.append("</body>")
        self.setHtml("".join(body))
        sb.setValue(sb.maximum() if at_end else keep)

    def _message_html(self, m: Message, c: markdown.Colors, last_user: bool, last_asst: bool) -> str:
        opened = {k for (mid, k) in self.open_thinks if mid == m.id}
        r = markdown.render(m.content, c, opened, link_prefix=f"lectern:code/{m.id}/",
                            think_prefix=f"lectern:think/{m.id}/")
        for k, code in enumerate(r.code_blocks):
            self.code_blocks[(m.id, k)] = code
        name = ROLE_NAMES.get(m.role, m.role)
        streaming = m.state == "streaming"
        note = STATE_NOTES.get(m.state, "")
        head = f"<b>{name}</b>"
        if note:
            head += f' <span style="color: {c.muted};">({html.escape(note)})</span>'
        text = r.html
        docs = self.attachments.get(m.id, [])
        if docs:
            text = chips_html(docs, c) + text
        if streaming and not m.content:
            text = f'<p style="color: {c.muted};">…</p>'
        links = []
        if not streaming:
            links.append(f'<a href="lectern:copy/{m.id}" style="color: {c.link};">Copy</a>')
            if m.role == "user" and not self.busy:
                links.append(f'<a href="lectern:edit/{m.id}" style="color: {c.link};">Edit</a>')
            if docs:
                what = "this document" if len(docs) == 1 else "these documents"
                links.append(f'<a href="lectern:branch/{m.id}" style="color: {c.link};">'
                             f'New chat with {what}</a>')
            if m.role == "assistant" and last_asst and not self.busy:
                links.append(f'<a href="lectern:regen/{m.id}" style="color: {c.link};">Regenerate</a>')
        foot = " · ".join(links)
        sl = stats_line(m.stats)
        if sl:
            foot += (" · " if foot else "") + f'<span style="color: {c.muted};">{html.escape(sl)}</span>'
        bg = c.code_bg if m.role == "user" else "transparent"
        return (f'<table width="100%" cellspacing="0" cellpadding="8" style="margin-bottom: 6px; '
                f'background-color: {bg};"><tr><td>{head}{text}'
                f'<p style="font-size: small;">{foot}</p></td></tr></table>')

    def changeEvent(self, ev) -> None:
        super().changeEvent(ev)
        if ev.type() == QEvent.PaletteChange:
            self.render()

    def scroll_to_end(self) -> None:
        sb = self.verticalScrollBar()
        sb.setValue(sb.maximum())

    # --- links --------------------------------------------------------------------------------
    def _on_anchor(self, url: QUrl) -> None:
        s = url.toString()
        if not s.startswith("lectern:"):
            return
        parts = s[len("lectern:"):].split("/")
        try:
            cmd, mid = parts[0], int(parts[1])
            k = int(parts[2]) if len(parts) > 2 else 0
        except (IndexError, ValueError):
            return
        if cmd == "copy":
            m = self.message(mid)
            if m is not None:
                QGuiApplication.clipboard().setText(m.content)
                emit(self.copyRequested, mid)
        elif cmd == "code":
            code = self.code_blocks.get((mid, k))
            if code is not None:
                QGuiApplication.clipboard().setText(code)
                emit(self.copyRequested, mid)
        elif cmd == "think":
            self.open_thinks ^= {(mid, k)}
            self.render()
        elif cmd == "edit":
            emit(self.editRequested, mid)
        elif cmd == "regen":
            emit(self.regenerateRequested, mid)
        elif cmd == "doc":
            emit(self.documentRequested, mid)
        elif cmd == "branch":
            emit(self.branchRequested, [a["id"] for a in self.attachments.get(mid, [])])

    def contextMenuEvent(self, ev) -> None:
        """On a document's name: preview it or start a new conversation from it."""
        href = self.anchorAt(ev.pos())
        if not href.startswith("lectern:doc/"):
            return super().contextMenuEvent(ev)
        aid = int(href.rsplit("/", 1)[1])
        m = QMenu(self)
        m.addAction("Preview text…", lambda: emit(self.documentRequested, aid))
        m.addAction("New conversation from this document", lambda: emit(self.branchRequested, [aid]))
        m.exec(ev.globalPos())
