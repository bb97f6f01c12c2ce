"""Settings: the models folder (app-wide) and the current model's own settings."""
from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from .library import DEFAULT_SETTINGS, ModelEntry


class SettingsDialog(QDialog):
    def __init__(self, models_dir: str, entry: ModelEntry | None, values: dict, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.entry = entry
        lay = QVBoxLayout(self)

        general = QGroupBox("Library")
        f = QFormLayout(general)
        self.models_dir = QLineEdit(models_dir)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.models_dir, 1)
        row.addWidget(browse)
        w = QWidget()
        w.setLayout(row)
        f.addRow("Models folder:", w)
        lay.addWidget(general)

        title = f"Model: {entry.name}" if entry else "Model (none loaded)"
        box = QGroupBox(title)
        f = QFormLayout(box)
        if entry:
            info = QLabel(entry.summary())
            info.setWordWrap(True)
            f.addRow(info)
        v = {**DEFAULT_SETTINGS, **values}
        self.system_prompt = QPlainTextEdit(v["system_prompt"])
        self.system_prompt.setFixedHeight(70)
        f.addRow("System prompt:", self.system_prompt)
        self.temperature = self._dspin(v["temperature"], 0, 5, 0.05)
        f.addRow("Temperature (0 = greedy):", self.temperature)
        self.top_k = self._spin(v["top_k"], 0, 1000)
        f.addRow("Top-k (0 = off):", self.top_k)
        self.top_p = self._dspin(v["top_p"], 0, 1, 0.01)
        f.addRow("Top-p (1 = off):", self.top_p)
        self.min_p = self._dspin(v["min_p"], 0, 1, 0.01)
        f.addRow("Min-p (0 = off):", self.min_p)
        self.repeat_penalty = self._dspin(v["repeat_penalty"], 0.5, 3, 0.05)
        f.addRow("Repeat penalty (1 = off):", self.repeat_penalty)
        self.max_tokens = self._spin(v["max_tokens"], 1, 1 << 20)
        f.addRow("Longest answer (tokens):", self.max_tokens)
        limit = entry.context_length if entry and entry.context_length else 1 << 20
        self.n_ctx = self._spin(min(v["n_ctx"], limit), 64, limit)
        f.addRow(f"Context size (tokens, at most {limit:,}):", self.n_ctx)
        self.kv_type = self._kv_combo(v["kv_type"])
        f.addRow("KV cache type:", self.kv_type)
        note = QLabel("F16 (llama.cpp's default) keeps the attention cache in half the memory of F32; "
                      "F32 keeps it unrounded. A new cache type takes effect the next time the model "
                      "is loaded; saved sessions continue only with the type they were saved with.")
        note.setWordWrap(True)
        f.addRow(note)
        box.setEnabled(entry is not None)
        lay.addWidget(box)

        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel
                                   | QDialogButtonBox.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.RestoreDefaults).clicked.connect(self._defaults)
        lay.addWidget(buttons)

    @staticmethod
    def _spin(v, lo, hi):
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setValue(int(v))
        return s

    @staticmethod
    def _kv_combo(v):
        """f16 / f32 (inference.kv_cache.KV_TYPES); an unknown stored value shows the default."""
        c = QComboBox()
        for name, label in (("f16", "F16 (default, half the memory)"), ("f32", "F32 (unrounded)")):
            c.addItem(label, name)
        c.setCurrentIndex(max(0, c.findData(str(v))))
        return c

    @staticmethod
    def _dspin(v, lo, hi, step):
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setDecimals(2)
        s.setValue(float(v))
        return s

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Models folder", self.models_dir.text())
        if d:
            self.models_dir.setText(d)

    def _defaults(self) -> None:
        from .library import default_settings

        d = default_settings(self.entry) if self.entry else DEFAULT_SETTINGS
        self.system_prompt.setPlainText(d["system_prompt"])
        for k in ("temperature", "top_p", "min_p", "repeat_penalty", "top_k", "max_tokens", "n_ctx"):
            getattr(self, k).setValue(d[k])
        self.kv_type.setCurrentIndex(max(0, self.kv_type.findData(d["kv_type"])))

    def values(self) -> dict:
        return {
            "system_prompt": self.system_prompt.toPlainText(),
            "temperature": round(self.temperature.value(), 4), "top_k": self.top_k.value(),
            "top_p": round(self.top_p.value(), 4), "min_p": round(self.min_p.value(), 4),
            "repeat_penalty": round(self.repeat_penalty.value(), 4),
            "max_tokens": self.max_tokens.value(), "n_ctx": self.n_ctx.value(),
            "kv_type": self.kv_type.currentData(),
        }
