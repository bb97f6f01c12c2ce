"""The variants table of a repository page: one row per quantization (split files count as one),
with size on disk, estimated RAM at the chosen context and a verdict against this machine's RAM.

Columns: Variant | Files | Size on disk | RAM at N tokens | Fit. The recommended row is marked
with a star and preselected once every estimate is in."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

VERDICT_TEXT = {"fits": "fits", "tight": "tight", "no": "does not fit"}
VERDICT_COLOR = {"fits": "#1a7f37", "tight": "#b35900", "no": "#cf222e"}
VERDICT_TIP = {
    "fits": "Weights and cache fit comfortably in this computer's memory.",
    "tight": "Fits, but leaves little memory for the rest of the system: expect slowdowns.",
    "no": "Needs more memory than this computer has: choose a smaller variant or context.",
}
COLUMNS = ("Variant", "Files", "Size on disk", "RAM needed", "Fit")
STAR = "★ "


def human(n) -> str:
    from inference.model_info import human_bytes

    return human_bytes(int(n or 0))


class VariantsTable(QTableWidget):
    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.setAlternatingRowColors(True)
        h = self.horizontalHeader()
        h.setSectionResizeMode(0, QHeaderView.Stretch)
        for c in range(1, len(COLUMNS)):
            h.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        self.variants: list = []
        self.estimates: dict[str, object] = {}      # variant name -> RamEstimate
        self.verdicts: dict[str, str] = {}
        self.recommended: str | None = None

    def set_context(self, n_ctx: int) -> None:
        self.setHorizontalHeaderItem(3, QTableWidgetItem(f"RAM at {n_ctx:,} tokens"))

    def set_variants(self, variants: list) -> None:
        self.variants = list(variants)
        self.estimates.clear()
        self.verdicts.clear()
        self.recommended = None
        self.clearSelection()
        self.setRowCount(len(self.variants))
        for r, v in enumerate(self.variants):
            n = len(v.files)
            self._set(r, 0, v.name, tip=", ".join(f.path for f in v.files))
            files = "1 file" if n == 1 else f"{n} parts"
            if not getattr(v, "complete", True):
                files += " (incomplete)"
            self._set(r, 1, files, align=Qt.AlignCenter,
                      tip="" if getattr(v, "complete", True) else
                      "Some parts of this split model are missing from the repository")
            self._set(r, 2, human(v.size), align=Qt.AlignRight | Qt.AlignVCenter)
            self._set(r, 3, "estimating…", align=Qt.AlignRight | Qt.AlignVCenter)
            self._set(r, 4, "")

    def clear_estimates(self) -> None:
        self.estimates.clear()
        self.verdicts.clear()
        for r in range(self.rowCount()):
            self._set(r, 3, "estimating…", align=Qt.AlignRight | Qt.AlignVCenter)
            self._set(r, 4, "")

    def row_of(self, name: str) -> int:
        return next((r for r, v in enumerate(self.variants) if v.name == name), -1)

    def set_estimate(self, name: str, est, verdict: str) -> None:
        r = self.row_of(name)
        if r < 0:
            return
        self.estimates[name], self.verdicts[name] = est, verdict
        approx = "" if getattr(est, "exact", True) else "~"
        arch = getattr(est, "architecture", "")
        tip = (f"weights {human(est.weights)} + cache {human(est.cache)}"
               + (f" at {est.n_ctx:,} tokens" if getattr(est, "n_ctx", 0) else "")
               + (f"; architecture {arch}" if arch else "")
               + ("" if approx == "" else " (estimated from the file size: the header could not be read)"))
        self._set(r, 3, approx + human(est.total), tip=tip, align=Qt.AlignRight | Qt.AlignVCenter)
        self._set(r, 4, VERDICT_TEXT.get(verdict, verdict), tip=VERDICT_TIP.get(verdict, ""),
                  color=VERDICT_COLOR.get(verdict))

    def set_estimate_failed(self, name: str, message: str) -> None:
        r = self.row_of(name)
        if r >= 0:
            self.estimates[name] = None
            self._set(r, 3, "unknown", tip=message, align=Qt.AlignRight | Qt.AlignVCenter)
            self._set(r, 4, "?", tip=message)

    def all_estimated(self) -> bool:
        return bool(self.variants) and all(v.name in self.estimates for v in self.variants)

    def mark_recommended(self, name: str | None) -> None:
        """Star the recommended row and select it."""
        self.recommended = name
        for r, v in enumerate(self.variants):
            item = self.item(r, 0)
            item.setText((STAR if v.name == name else "") + v.name)
            f = item.font()
            f.setBold(v.name == name)
            item.setFont(f)
            if v.name == name:
                item.setToolTip("Recommended: the largest variant that fits comfortably")
        r = self.row_of(name) if name else -1
        if r >= 0:
            self.selectRow(r)
            self.scrollToItem(self.item(r, 0))

    def selected_variant(self):
        rows = self.selectionModel().selectedRows()
        return self.variants[rows[0].row()] if rows else None

    def verdict_text(self, name: str) -> str:
        r = self.row_of(name)
        return self.item(r, 4).text() if r >= 0 else ""

    def _set(self, r: int, c: int, text: str, tip: str = "", align=None, color: str | None = None):
        item = QTableWidgetItem(text)
        if tip:
            item.setToolTip(tip)
        if align is not None:
            item.setTextAlignment(align)
        if color:
            item.setForeground(QBrush(QColor(color)))
            f = item.font()
            f.setBold(True)
            item.setFont(f)
        self.setItem(r, c, item)
