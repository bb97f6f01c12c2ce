"""The message box: Enter sends, Shift+Enter starts a new line; Send turns into Stop while answering.

Above the box: the chips of attached documents (document_widgets.AttachmentBar). Left of it: the
paperclip (attach documents, Ctrl+Shift+A). Below it: the fit line (does the prompt with the
documents fit the context, and what it costs), with a button for the context remedy.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QToolButton,
                               QVBoxLayout, QWidget)

from .document_widgets import AttachmentBar, paperclip_icon
from .qt_compat import emit

ATTACH_SHORTCUT = "Ctrl+Shift+A"


class MessageEdit(QPlainTextEdit):
    submitted = Signal()
    filesDropped = Signal(object)     # [local paths]: files dropped on the box are attached

    def canInsertFromMimeData(self, source) -> bool:
        return any(u.isLocalFile() for u in source.urls()) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source) -> None:
        paths = [u.toLocalFile() for u in source.urls() if u.isLocalFile()]
        if paths:
            emit(self.filesDropped, paths)
        else:
            super().insertFromMimeData(source)

    def keyPressEvent(self, e) -> None:
        if e.key() in (Qt.Key_Return, Qt.Key_Enter) and not (e.modifiers() & Qt.ShiftModifier):
            emit(self.submitted)
            return
        super().keyPressEvent(e)


class MessageInput(QWidget):
    sendRequested = Signal(str)
    stopRequested = Signal()
    editCancelled = Signal()
    attachRequested = Signal()
    raiseContextRequested = Signal()
    filesDropped = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.edit = MessageEdit()
        self.edit.setPlaceholderText("Message the model (Enter sends, Shift+Enter new line)")
        self.edit.setFixedHeight(72)
        self.button = QPushButton("Send")
        self.button.setMinimumWidth(80)
        self.attach = QToolButton()
        self.attach.setIcon(paperclip_icon())
        self.attach.setAutoRaise(True)
        self.attach.setToolTip(f"Attach documents: text, PDF, Word, HTML, CSV, JSON, code, or a "
                               f"folder ({ATTACH_SHORTCUT}; or drop files on the chat)")
        self.attach.clicked.connect(lambda: emit(self.attachRequested))
        self.attachments = AttachmentBar()
        self.banner = QLabel()
        self.banner.setVisible(False)
        self.cancel_edit = QPushButton("Cancel edit")
        self.cancel_edit.setVisible(False)
        self.fit_label = QLabel()
        self.fit_label.setWordWrap(True)
        self.fit_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.fit_fix = QPushButton("Raise context…")
        self.fit_fix.setToolTip("Open Settings at the context size")
        self.fit_fix.clicked.connect(lambda: emit(self.raiseContextRequested))
        self.fit_ok: bool | None = None          # None: no documents / not measured yet
        row = QHBoxLayout()
        clip = QVBoxLayout()
        clip.addWidget(self.attach)
        clip.addStretch(1)
        row.addLayout(clip)
        row.addWidget(self.edit, 1)
        col = QVBoxLayout()
        col.addWidget(self.button)
        col.addWidget(self.cancel_edit)
        col.addStretch(1)
        row.addLayout(col)
        fit = QHBoxLayout()
        fit.addWidget(self.fit_label, 1)
        fit.addWidget(self.fit_fix)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(3)
        lay.addWidget(self.banner)
        lay.addWidget(self.attachments)
        lay.addLayout(row)
        lay.addLayout(fit)
        self.set_fit(None)
        self.busy = False
        self.edit.submitted.connect(self._send)
        self.edit.filesDropped.connect(lambda paths: emit(self.filesDropped, paths))
        self.button.clicked.connect(lambda: emit(self.stopRequested) if self.busy else self._send())
        self.cancel_edit.clicked.connect(self.editCancelled)

    def _send(self) -> None:
        if self.busy:
            return
        text = self.edit.toPlainText().strip()
        if text:
            emit(self.sendRequested, text)

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.button.setText("Stop" if busy else "Send")
        self.button.setToolTip("Stop the answer (Esc)" if busy else "Send (Enter)")

    def set_fit(self, text: str | None, ok: bool | None = None, can_raise: bool = False) -> None:
        """The fit line: hidden (None), measuring (ok None), fits (ok True) or not (ok False)."""
        self.fit_ok = ok if text is not None else None
        self.fit_label.setVisible(text is not None)
        self.fit_label.setText(text or "")
        color = {True: "", False: "color: #c9302c;", None: "color: palette(mid);"}[ok]
        self.fit_label.setStyleSheet(f"QLabel {{ {color} }}")
        self.fit_fix.setVisible(text is not None and ok is False and can_raise)

    def set_editing(self, text: str | None) -> None:
        """Show that the next send replaces a past message (text) or not (None)."""
        on = text is not None
        self.banner.setVisible(on)
        self.cancel_edit.setVisible(on)
        if on:
            self.banner.setText("Editing a past message: sending replaces it and everything after it.")
            self.edit.setPlainText(text)
            self.edit.setFocus()

    def take_text(self) -> None:
        self.edit.clear()
