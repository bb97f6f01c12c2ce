"""The model picker in the toolbar: library entries plus "Import a .gguf file…", "Add remote
endpoint…" and "Download models from Hugging Face…"."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox

from .library import ModelEntry
from .qt_compat import emit

IMPORT = "__import__"
REMOTE = "__remote__"
HUB = "__hub__"
ACTIONS = (IMPORT, REMOTE, HUB)


class ModelPicker(QComboBox):
    modelChosen = Signal(str)        # path
    importRequested = Signal()
    remoteRequested = Signal()
    hubRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumContentsLength(28)
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.activated.connect(self._activated)
        self._current = ""

    def set_entries(self, entries: list[ModelEntry], current: str = "") -> None:
        self.blockSignals(True)
        self.clear()
        for e in entries:
            label = e.name if e.ok else f"{e.name} (unusable)"
            if e.ok and not e.fits_in_ram:
                label += " (too big for RAM)"
            self.addItem(label, e.path)
            self.setItemData(self.count() - 1, e.summary(), 3)   # Qt.ToolTipRole
        self.addItem("Import a .gguf file…", IMPORT)
        self.addItem("Add remote endpoint…", REMOTE)
        self.addItem("Download models from Hugging Face…", HUB)
        self.blockSignals(False)
        self.set_current(current)

    def set_current(self, path: str) -> None:
        self._current = path
        i = self.findData(path)
        if i >= 0:
            self.setCurrentIndex(i)

    def paths(self) -> list[str]:
        return [self.itemData(i) for i in range(self.count()) if self.itemData(i) not in ACTIONS]

    def _activated(self, i: int) -> None:
        path = self.itemData(i)
        if path == IMPORT:
            self.set_current(self._current)
            emit(self.importRequested)
        elif path == REMOTE:
            self.set_current(self._current)
            emit(self.remoteRequested)
        elif path == HUB:
            self.set_current(self._current)
            emit(self.hubRequested)
        elif path and path != self._current:
            self._current = path
            emit(self.modelChosen, path)
