"""Widgets for attached documents: the paperclip icon, a chip per document (name, pages,
characters, tokens; x removes it, a click previews it), the row of chips with a busy indicator
while files are extracted, the preview dialog (read-only text, Ctrl+F finds), and the reading
bar shown while the model reads a long prompt (done / total tokens, tok/s, time left)."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QKeySequence, QPainter, QPainterPath, QPen, QPixmap, QShortcut
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFrame, QHBoxLayout, QLabel, QLayout,
                               QLineEdit, QMenu, QPlainTextEdit, QProgressBar, QScrollArea,
                               QToolButton, QVBoxLayout, QWidget)

from .qt_compat import emit


def paperclip_icon(color: str = "#5f6368", size: int = 32) -> QIcon:
    """A paperclip drawn as one stroke: three nested U-turns (no icon font or emoji needed)."""
    pm = QPixmap(size, size)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    s = size / 24.0
    pen = QPen(Qt.black, 1.8 * s, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin)
    pen.setColor(color)
    p.setPen(pen)
    path = QPainterPath(QPointF(15 * s, 8 * s))
    path.lineTo(15 * s, 17 * s)                                  # inner leg, down
    path.arcTo(QRectF(9 * s, 14 * s, 6 * s, 6 * s), 0, -180)     # bottom U (inner)
    path.lineTo(9 * s, 6 * s)
    path.arcTo(QRectF(9 * s, 2 * s, 8 * s, 8 * s), 180, -180)    # top U
    path.lineTo(17 * s, 18 * s)
    path.arcTo(QRectF(6 * s, 13 * s, 11 * s, 9 * s), 0, -180)    # bottom U (outer)
    path.lineTo(6 * s, 9 * s)
    p.drawPath(path)
    p.end()
    return QIcon(pm)


def human_bytes(n: int) -> str:
    from inference.model_info import human_bytes as hb

    return hb(n)


def doc_summary(name: str, pages: int | None, chars: int, tokens: int | None) -> str:
    """'report.pdf · 12 pages · 45,123 characters · 9,876 tokens' (tokens once counted)."""
    parts = [name]
    if pages:
        parts.append(f"{pages:,} page" + ("s" if pages != 1 else ""))
    parts.append(f"{chars:,} characters")
    if tokens:
        parts.append(f"{tokens:,} tokens")
    return " · ".join(parts)


class Chip(QFrame):
    """One attached document waiting to be sent. `doc` is an inference.documents.Document."""
    removeRequested = Signal(object)     # the chip
    previewRequested = Signal(object)

    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.tokens: int | None = None
        self.setObjectName("doc-chip")
        self.setFrameShape(QFrame.StyledPanel)
        self.setStyleSheet("#doc-chip { border: 1px solid palette(mid); border-radius: 10px; "
                           "background: palette(alternate-base); }")
        self.setCursor(Qt.PointingHandCursor)
        self.label = QLabel()
        self.close_button = QToolButton()
        self.close_button.setText("×")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip(f"Remove {doc.name}")
        self.close_button.clicked.connect(lambda: emit(self.removeRequested, self))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 1, 2, 1)
        lay.setSpacing(2)
        lay.addWidget(self.label)
        lay.addWidget(self.close_button)
        self.refresh()

    def set_tokens(self, n: int | None) -> None:
        self.tokens = n
        self.refresh()

    def refresh(self) -> None:
        d = self.doc
        self.label.setText(doc_summary(d.name, d.pages, d.chars, self.tokens))
        tip = [str(d.path), f"{d.kind}" + (f", {d.encoding}" if d.encoding else ""),
               "Click to preview the extracted text."]
        self.setToolTip("\n".join(tip))

    def mouseReleaseEvent(self, ev) -> None:
        if ev.button() == Qt.LeftButton:
            emit(self.previewRequested, self)
        super().mouseReleaseEvent(ev)

    def contextMenuEvent(self, ev) -> None:
        m = QMenu(self)
        m.addAction("Preview text…", lambda: emit(self.previewRequested, self))
        m.addAction("Remove", lambda: emit(self.removeRequested, self))
        m.exec(ev.globalPos())


class FlowLayout(QLayout):
    """Left to right, wrapping onto new rows (Qt's flow layout example, trimmed)."""

    def __init__(self, parent=None, spacing: int = 6):
        super().__init__(parent)
        self.items: list = []
        self.gap = spacing
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item) -> None:
        self.items.append(item)

    def count(self) -> int:
        return len(self.items)

    def itemAt(self, i):
        return self.items[i] if 0 <= i < len(self.items) else None

    def takeAt(self, i):
        return self.items.pop(i) if 0 <= i < len(self.items) else None

    def expandingDirections(self):
        return Qt.Orientations(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect) -> None:
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self):
        return self.minimumSize()

    def minimumSize(self):
        size = QSize()
        for it in self.items:
            size = size.expandedTo(it.minimumSize())
        return size

    def _place(self, rect, move: bool) -> int:
        x, y, row_h = rect.x(), rect.y(), 0
        for it in self.items:
            w, h = it.sizeHint().width(), it.sizeHint().height()
            if x + w > rect.right() and row_h > 0:          # wrap
                x, y, row_h = rect.x(), y + row_h + self.gap, 0
            if move:
                it.setGeometry(QRect(QPoint(x, y), it.sizeHint()))
            x += w + self.gap
            row_h = max(row_h, h)
        return y + row_h - rect.y()


class AttachmentBar(QWidget):
    """The chips of the message being written (wrapping; at most MAX_HEIGHT, then scrolling),
    and 'Reading files…' while extraction runs."""
    changed = Signal()
    previewRequested = Signal(object)    # Document
    MAX_HEIGHT = 96

    def __init__(self, parent=None):
        super().__init__(parent)
        self.chips: list[Chip] = []
        self.busy_label = QLabel()
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(90)
        self.busy_bar.setMaximumHeight(12)
        inner = QWidget()
        self.flow = FlowLayout(inner)
        self.scroll = QScrollArea()
        self.scroll.setWidget(inner)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        busy = QHBoxLayout()
        busy.addWidget(self.busy_bar)
        busy.addWidget(self.busy_label)
        busy.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 2)
        lay.setSpacing(2)
        lay.addWidget(self.scroll)
        lay.addLayout(busy)
        self.set_busy(None)
        self._update_visible()

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._fit_height()

    def _fit_height(self) -> None:
        width = self.scroll.viewport().width() or self.width()
        need = self.flow.heightForWidth(width) if self.chips else 0
        self.scroll.setFixedHeight(min(need, self.MAX_HEIGHT))
        self.scroll.setVisible(bool(self.chips))

    def docs(self) -> list:
        return [c.doc for c in self.chips]

    def add(self, doc) -> Chip:
        c = Chip(doc)
        c.removeRequested.connect(self.remove)
        c.previewRequested.connect(lambda chip: emit(self.previewRequested, chip.doc))
        self.flow.addWidget(c)
        self.chips.append(c)
        self._update_visible()
        emit(self.changed)
        return c

    def remove(self, chip: Chip) -> None:
        if chip in self.chips:
            self.chips.remove(chip)
            chip.setParent(None)
            chip.deleteLater()
            self._update_visible()
            emit(self.changed)

    def clear(self) -> None:
        for c in list(self.chips):
            self.chips.remove(c)
            c.setParent(None)
            c.deleteLater()
        self._update_visible()
        emit(self.changed)

    def set_tokens(self, counts: list[int]) -> None:
        for c, n in zip(self.chips, counts):
            c.set_tokens(n)
        self._fit_height()

    def set_busy(self, text: str | None) -> None:
        self.busy_bar.setVisible(text is not None)
        self.busy_label.setVisible(text is not None)
        self.busy_label.setText(text or "")
        self._update_visible()

    def _update_visible(self) -> None:
        self.setVisible(bool(self.chips) or self.busy_label.isVisibleTo(self))
        self._fit_height()


class PreviewDialog(QDialog):
    """The extracted text of one document, read-only; Ctrl+F (or typing in the box) finds."""

    def __init__(self, name: str, summary: str, text: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"{name} — extracted text")
        self.resize(760, 560)
        self.info = QLabel(summary)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setPlainText(text)
        self.text.setLineWrapMode(QPlainTextEdit.WidgetWidth)
        self.find_box = QLineEdit()
        self.find_box.setPlaceholderText("Find in the text (Ctrl+F; Enter finds the next)")
        self.find_box.setClearButtonEnabled(True)
        self.find_note = QLabel()
        self.find_box.returnPressed.connect(self.find_next)
        self.find_box.textEdited.connect(lambda _t: self.find_next(from_start=True))
        QShortcut(QKeySequence.Find, self, activated=self._focus_find)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        frow = QHBoxLayout()
        frow.addWidget(self.find_box, 1)
        frow.addWidget(self.find_note)
        lay = QVBoxLayout(self)
        lay.addWidget(self.info)
        lay.addLayout(frow)
        lay.addWidget(self.text, 1)
        lay.addWidget(buttons)

    def _focus_find(self) -> None:
        self.find_box.setFocus()
        self.find_box.selectAll()

    def find_next(self, from_start: bool = False) -> bool:
        """Select the next match of the find box's text (wrapping round); False if none."""
        needle = self.find_box.text()
        if not needle:
            self.find_note.clear()
            return False
        if from_start:
            self.text.moveCursor(self.text.textCursor().MoveOperation.Start)
        found = self.text.find(needle)
        if not found:                                   # wrap round once
            self.text.moveCursor(self.text.textCursor().MoveOperation.Start)
            found = self.text.find(needle)
        self.find_note.setText("" if found else "not found")
        return found


class ReadingBar(QWidget):
    """'Reading: 1,024 / 30,000 tokens · 412 tok/s · 71 s left' over a thin bar (the Send
    button beside the message box is Stop meanwhile, as is Esc)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(8)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(2)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        self.setVisible(False)

    def show_progress(self, done: int, total: int, rate: float) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(min(done, total))
        text = f"Reading: {done:,} / {total:,} tokens"
        if rate > 0:
            left = (total - done) / rate
            text += f" · {rate:,.0f} tok/s · {left:,.0f} s left"
        self.label.setText(text + " — Stop (Esc) keeps what was read")
        self.setVisible(True)
