"""Messages at the top of the hub window: a notice bar (offline / error, with Retry) and the token
bar shown for gated or private repositories (HubAuthError): a password field whose token is saved
with huggingface_hub's own token storage, then the failed request is retried."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout

from .qt_compat import emit

STYLE = {   # (frame, text colour): the same light boxes in both themes, like the main banner
    "error": ("background: #f8d7da; border: 1px solid #f1aeb5;", "#58151c"),
    "offline": ("background: #fff3cd; border: 1px solid #ffe69c;", "#664d03"),
    "info": ("background: #cfe2ff; border: 1px solid #9ec5fe;", "#052c65"),
}


def box_style(cls: str, kind: str) -> str:
    frame, text = STYLE.get(kind, STYLE["error"])
    return (f"{cls} {{ {frame} border-radius: 4px; }}"
            f"QLabel {{ background: transparent; border: none; color: {text}; }}")
TOKEN_URL = "https://huggingface.co/settings/tokens"


class NoticeBar(QFrame):
    retryRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.kind = ""
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.retry = QPushButton("Retry")
        self.retry.clicked.connect(lambda: emit(self.retryRequested))
        self.close_btn = QPushButton("Dismiss")
        self.close_btn.clicked.connect(self.clear)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.retry)
        lay.addWidget(self.close_btn)
        self.setVisible(False)

    def show_message(self, kind: str, text: str, retry: bool = False) -> None:
        self.kind = kind
        self.text.setText(text)
        self.setStyleSheet(box_style("NoticeBar", kind))
        self.retry.setVisible(retry)
        self.setVisible(True)

    def clear(self) -> None:
        self.kind = ""
        self.text.clear()
        self.setVisible(False)


class TokenBar(QFrame):
    """'This repository needs a Hugging Face token' + field + Save and retry."""
    tokenEntered = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.RichText)
        self.message.setOpenExternalLinks(True)
        self.field = QLineEdit()
        self.field.setEchoMode(QLineEdit.Password)
        self.field.setPlaceholderText("hf_…  (a read token is enough)")
        self.field.returnPressed.connect(self._save)
        self.save = QPushButton("Save token and retry")
        self.save.clicked.connect(self._save)
        self.status = QLabel()
        row = QHBoxLayout()
        row.addWidget(QLabel("Hugging Face token:"))
        row.addWidget(self.field, 1)
        row.addWidget(self.save)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.message)
        lay.addLayout(row)
        lay.addWidget(self.status)
        self.setStyleSheet(box_style("TokenBar", "info"))
        self.status.setVisible(False)
        self.setVisible(False)

    def ask(self, reason: str, headline: str = "Hugging Face refused access to this repository.") -> None:
        self.message.setText(
            f"<b>{headline}</b> {html.escape(reason)}<br>Gated models ask you "
            f"to accept their terms on the model's page first. Create a token at "
            f'<a href="{TOKEN_URL}">{TOKEN_URL}</a>; it is stored where huggingface_hub keeps it.')
        self.save.setEnabled(True)
        self.field.setEnabled(True)
        self.status.setVisible(False)
        self.setVisible(True)
        self.field.setFocus()

    def saving(self) -> None:
        self.save.setEnabled(False)
        self.field.setEnabled(False)
        self.status.setText("Saving the token and retrying…")
        self.status.setVisible(True)

    def save_failed(self, text: str) -> None:
        self.save.setEnabled(True)
        self.field.setEnabled(True)
        self.status.setText(f"The token was not saved: {text}")
        self.status.setVisible(True)

    def _save(self) -> None:
        token = self.field.text().strip()
        if not token:
            self.status.setText("Paste a token first.")
            self.status.setVisible(True)
            return
        emit(self.tokenEntered, token)
