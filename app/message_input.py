"""The message box: Enter sends, Shift+Enter starts a new line; Send turns into Stop while answering."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from .qt_compat import emit


class MessageEdit(QPlainTextEdit):
    submitted = Signal()

    def keyPressEvent(self, e) -> None:
        if e.key() in (Qt.Key_Return, Qt.Key_Enter) and not (e.modifiers() & Qt.ShiftModifier):
            emit(self.submitted)
            return
        super().keyPressEvent(e)


class MessageInput(QWidget):
    sendRequested = Signal(str)
    stopRequested = Signal()
    editCancelled = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.edit = MessageEdit()
        self.edit.setPlaceholderText("Message the model (Enter sends, Shift+Enter new line)")
        self.edit.setFixedHeight(72)
        self.button = QPushButton("Send")
        self.button.setMinimumWidth(80)
        self.banner = QLabel()
        self.banner.setVisible(False)
        self.cancel_edit = QPushButton("Cancel edit")
        self.cancel_edit.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(self.edit, 1)
        col = QVBoxLayout()
        col.addWidget(self.button)
        col.addWidget(self.cancel_edit)
        col.addStretch(1)
        row.addLayout(col)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.banner)
        lay.addLayout(row)
        self.busy = False
        self.edit.submitted.connect(self._send)
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
