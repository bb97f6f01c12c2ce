"""Dark and light follow the system: Fusion style with a palette chosen from Qt's colour scheme."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette


def is_dark(app) -> bool:
    return app.styleHints().colorScheme() == Qt.ColorScheme.Dark


def dark_palette() -> QPalette:
    p = QPalette()
    c = {QPalette.Window: "#1e1f22", QPalette.WindowText: "#e6edf3", QPalette.Base: "#16171a",
         QPalette.AlternateBase: "#25262a", QPalette.Text: "#e6edf3", QPalette.Button: "#2b2d31",
         QPalette.ButtonText: "#e6edf3", QPalette.Highlight: "#2f6feb",
         QPalette.HighlightedText: "#ffffff", QPalette.ToolTipBase: "#2b2d31",
         QPalette.ToolTipText: "#e6edf3", QPalette.PlaceholderText: "#8b949e",
         QPalette.Link: "#58a6ff"}
    for role, col in c.items():
        p.setColor(role, QColor(col))
    p.setColor(QPalette.Disabled, QPalette.Text, QColor("#6e7681"))
    p.setColor(QPalette.Disabled, QPalette.ButtonText, QColor("#6e7681"))
    return p


def apply(app, dark: bool | None = None) -> None:
    """Fusion everywhere (same look on every desktop); dark palette when the system is dark."""
    app.setStyle("Fusion")
    dark = is_dark(app) if dark is None else dark
    app.setPalette(dark_palette() if dark else app.style().standardPalette())


def follow_system(app, on_change=None) -> None:
    def changed(_scheme):
        apply(app)
        if on_change:
            on_change()

    app.styleHints().colorSchemeChanged.connect(changed)
