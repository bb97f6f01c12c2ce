"""Two pieces of the hub window: the list of repositories (curated or search results, each a
rich-text entry holding its repo id) and the model card (markdown, with working links)."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QTextBrowser


def summary_line(r) -> str:
    parts = [f"↓ {int(r.downloads or 0):,}", f"♥ {int(r.likes or 0):,}"]
    if r.last_modified:
        parts.append(f"updated {str(r.last_modified)[:10]}")
    if r.gated:
        parts.append("gated: needs a token")
    return "  ·  ".join(parts)


class ResultsList(QListWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWordWrap(True)
        # a light selection: the entries are rich-text labels that keep their own text colours
        self.setStyleSheet("QListWidget::item:selected { background: rgba(47, 111, 235, 60); }"
                           "QListWidget::item { border-bottom: 1px solid rgba(128, 128, 128, 50); }")

    def set_curated(self, curated: list) -> None:
        self.clear()
        for c in curated:
            self._add(c.repo_id, f"<b>{html.escape(c.title)}</b><br>"
                      f'<span style="color: gray;">{html.escape(c.repo_id)}</span><br>'
                      f"{html.escape(c.note)}")

    def set_repos(self, repos: list) -> None:
        self.clear()
        for r in repos:
            self._add(r.repo_id, f"<b>{html.escape(r.repo_id)}</b><br>"
                      f'<span style="color: gray;">{html.escape(summary_line(r))}</span>')

    def repo_ids(self) -> list[str]:
        return [self.item(i).data(Qt.UserRole) for i in range(self.count())]

    def _add(self, repo_id: str, rich: str) -> None:
        it = QListWidgetItem()
        it.setData(Qt.UserRole, repo_id)
        it.setToolTip(repo_id)
        label = QLabel(rich)
        label.setTextFormat(Qt.RichText)
        label.setWordWrap(True)
        label.setContentsMargins(6, 4, 6, 4)
        label.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.addItem(it)
        self.setItemWidget(it, label)
        it.setSizeHint(label.sizeHint())


class ModelCard(QTextBrowser):
    """README.md rendered with app.markdown (no YAML front matter); web links open in the
    browser, "Copy code" copies a code block."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._on_link)
        self.code_blocks: list[str] = []

    def show_card(self, text: str) -> None:
        from .chat_view import colors_for
        from .markdown import render

        body = (text or "").strip()
        if body.startswith("---"):         # YAML front matter: metadata, not for reading
            end = body.find("\n---", 3)
            body = body[end + 4:].strip() if end > 0 else body
        r = render(body, colors_for(self.palette()))
        self.code_blocks = r.code_blocks
        self.setHtml(r.html if body else "<p><i>This repository has no model card.</i></p>")

    def _on_link(self, url) -> None:
        from PySide6.QtGui import QDesktopServices, QGuiApplication

        text = url.toString()
        if text.startswith("lectern:code/"):
            i = int(text.rsplit("/", 1)[1])
            if i < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[i])
        elif url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)
