"""The conversation list: search box, newest first, new / rename / delete."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLineEdit, QListWidget, QListWidgetItem,
                               QMenu, QMessageBox, QPushButton, QVBoxLayout, QWidget)

from .store import Conversation
from .qt_compat import emit


class ConversationList(QWidget):
    selected = Signal(int)            # conversation id
    newRequested = Signal()
    renameRequested = Signal(int, str)
    deleteRequested = Signal(int)
    searchChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.search = QLineEdit(placeholderText="Search chats (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.new_button = QPushButton("New chat")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.list = QListWidget()
        self.list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.itemDoubleClicked.connect(lambda it: self.rename(it.data(Qt.UserRole)))
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.new_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 0, 6)
        lay.addLayout(top)
        lay.addWidget(self.list, 1)
        self.new_button.clicked.connect(self.newRequested)
        self._debounce = QTimer(self, singleShot=True, interval=150)
        self._debounce.timeout.connect(lambda: emit(self.searchChanged, self.search.text()))
        self.search.textChanged.connect(lambda _: self._debounce.start())
        self._filling = False

    def set_conversations(self, convs: list[Conversation], current: int | None) -> None:
        self._filling = True
        self.list.clear()
        for c in convs:
            it = QListWidgetItem(c.title or "Untitled")
            it.setData(Qt.UserRole, c.id)
            it.setToolTip(c.title)
            self.list.addItem(it)
            if c.id == current:
                self.list.setCurrentItem(it)
        self._filling = False

    def current_id(self) -> int | None:
        it = self.list.currentItem()
        return it.data(Qt.UserRole) if it else None

    def ids(self) -> list[int]:
        return [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]

    def _current_changed(self, cur, _prev) -> None:
        if cur is not None and not self._filling:
            emit(self.selected, cur.data(Qt.UserRole))

    def _item(self, cid: int):
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.UserRole) == cid:
                return self.list.item(i)
        return None

    def _menu(self, pos) -> None:
        it = self.list.itemAt(pos)
        if it is None:
            return
        cid = it.data(Qt.UserRole)
        m = QMenu(self)
        m.addAction("Rename…", lambda: self.rename(cid))
        m.addAction("Delete…", lambda: self.confirm_delete(cid))
        m.exec(self.list.viewport().mapToGlobal(pos))

    def rename(self, cid: int) -> None:
        it = self._item(cid)
        old = it.text() if it else ""
        title, ok = QInputDialog.getText(self, "Rename chat", "Title:", text=old)
        if ok and title.strip():
            emit(self.renameRequested, cid, title.strip())

    def confirm_delete(self, cid: int) -> None:
        it = self._item(cid)
        name = it.text() if it else "this chat"
        if QMessageBox.question(self, "Delete chat", f"Delete “{name}” and all its messages?") \
                == QMessageBox.Yes:
            emit(self.deleteRequested, cid)
