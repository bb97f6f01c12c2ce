"""The main window: conversation list | chat view + message input, model picker in the toolbar,
status bar with loading progress and the context meter. Chat logic: chat_controller.ChatMixin.
The GUI talks to the engine only through the inference worker (app.worker)."""
from __future__ import annotations

import base64
import gc
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QColor, QKeySequence, QPalette
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMessageBox,
                               QProgressBar, QPushButton, QSplitter, QVBoxLayout, QWidget)

from . import gc_guard
from .chat_controller import ChatMixin
from .chat_view import ChatView
from .conversation_list import ConversationList
from .document_widgets import ReadingBar
from .documents_controller import DocumentsMixin
from .hub_control import HUB_WARM_MS, HubMixin
from .library import Library, ModelEntry, check_models_dir
from .message_input import ATTACH_SHORTCUT, MessageInput
from .model_picker import ModelPicker
from .remote_models import RemoteModelsMixin, is_remote
from .server_control import ServerControl
from .store import Store, export_json, export_markdown
from .worker import WorkerThread

CONTEXT_WARN = 0.8      # the meter turns red above this share of the context


class MainWindow(HubMixin, RemoteModelsMixin, DocumentsMixin, ChatMixin, QMainWindow):
    def __init__(self, store: Store, library: Library, ram_bytes: int | None = None):
        super().__init__()
        from inference import __version__

        self.version = __version__
        self.store, self.library = store, library
        gc_guard.hold()                     # collect garbage on this thread only (app.gc_guard)
        self.worker = WorkerThread(ram_bytes)
        self.model_path = ""
        self.model_entry: ModelEntry | None = None
        self.n_ctx = 0
        self.lid = 0
        self.loading_lid: int | None = None
        self.server = ServerControl(self)
        self.server_toggle: Callable[[bool], str] | None = self.server
        self.model_text = ""
        self.setWindowTitle("Lectern")
        self.setAcceptDrops(True)
        self._init_hub()
        self._build()
        self._actions()
        self._init_chat()
        w = self.worker.worker
        w.loadProgress.connect(self._on_load_progress)
        w.loaded.connect(self._on_loaded)
        w.loadFailed.connect(self._on_load_failed)
        self.refresh_models()
        self.restore_state()
        QTimer.singleShot(0, self, self.resume_downloads)     # a download queue left by the last run
        QTimer.singleShot(HUB_WARM_MS, self, self.warm_hub)

    # --- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.conversations = ConversationList()
        self.chat = ChatView()
        self.input = MessageInput()
        self.input.filesDropped.connect(self.drop_paths)
        self.reading = ReadingBar()
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.banner.setStyleSheet("QLabel { background: #f8d7da; color: #58151c; padding: 6px; "
                                  "border: 1px solid #f1aeb5; border-radius: 4px; }")
        self.banner_close = QPushButton("Dismiss")
        self.banner_close.clicked.connect(self.clear_banner)
        brow = QHBoxLayout()
        brow.addWidget(self.banner, 1)
        brow.addWidget(self.banner_close)
        self.banner_box = QWidget()
        self.banner_box.setLayout(brow)
        self.banner_box.setVisible(False)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 6, 6, 6)
        rl.addWidget(self.banner_box)
        rl.addWidget(self.chat, 1)
        rl.addWidget(self.reading)
        rl.addWidget(self.input)
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.conversations)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([240, 760])
        self.setCentralWidget(self.splitter)

        tb = self.addToolBar("Main")
        tb.setObjectName("main-toolbar")
        tb.setMovable(False)
        tb.addWidget(QLabel(" Model: "))
        self.picker = ModelPicker()
        tb.addWidget(self.picker)
        self.toolbar = tb

        sb = self.statusBar()
        self.model_label = QLabel("No model loaded")
        self.load_bar = QProgressBar()
        self.load_bar.setMaximumWidth(160)
        self.load_cancel = QPushButton("Cancel")
        self.load_cancel.clicked.connect(self.cancel_load)
        self.meter = QProgressBar()
        self.meter.setMaximumWidth(220)
        self.meter.setFormat("context %v / %m tokens")
        self.meter.setToolTip("Tokens of the conversation / the model's context size")
        for wdg in (self.model_label, self.load_bar, self.load_cancel):
            sb.addWidget(wdg)
        self.server_label = QLabel()
        self.server_label.setVisible(False)
        sb.addPermanentWidget(self.server_label)
        sb.addPermanentWidget(self.meter)
        self.load_bar.setVisible(False)
        self.load_cancel.setVisible(False)

        self.conversations.selected.connect(self.open_conversation)
        self.conversations.newRequested.connect(self.new_chat)
        self.conversations.renameRequested.connect(self.rename_conversation)
        self.conversations.deleteRequested.connect(self.delete_conversation)
        self.conversations.searchChanged.connect(lambda _t: self.refresh_list(select=self.current))
        self.picker.modelChosen.connect(self.load_model)
        self.picker.importRequested.connect(self.import_dialog)
        self.picker.remoteRequested.connect(self.add_remote_dialog)
        self.picker.hubRequested.connect(self.open_hub)

    def _act(self, menu, text, slot, shortcut=None, tip="") -> QAction:
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
            a.setShortcutContext(Qt.ApplicationShortcut)
        a.setToolTip(tip or text)
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    def _actions(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.act_new = self._act(f, "&New chat", self.new_chat, "Ctrl+N")
        self._act(f, "&Import model…", self.import_dialog, "Ctrl+O")
        self.act_hub = self._act(f, "&Download models…", self.open_hub, "Ctrl+Shift+M",
                                 tip="Find GGUF models on Hugging Face and download them")
        self._act(f, "Export chat as &Markdown…", lambda: self.export_dialog("md"))
        self._act(f, "Export chat as &JSON…", lambda: self.export_dialog("json"))
        f.addSeparator()
        self.act_settings = self._act(f, "&Settings…", self.open_settings, "Ctrl+,")
        f.addSeparator()
        self._act(f, "&Quit", self.close, "Ctrl+Q")
        e = mb.addMenu("&Chat")
        self._act(e, "&Find chats", self.focus_search, "Ctrl+F")
        self.act_attach = self._act(e, "&Attach documents…", self.attach_dialog, ATTACH_SHORTCUT,
                                    tip=f"Attach documents to the next message ({ATTACH_SHORTCUT})")
        self.act_stop = self._act(e, "&Stop answer", self.stop, "Esc")
        self.act_stop.setShortcutContext(Qt.WindowShortcut)     # Esc in the hub window closes it
        self.act_regen = self._act(e, "&Regenerate answer", self.regenerate, "Ctrl+R")
        self._act(e, "&Copy last answer", self.copy_last_answer, "Ctrl+Shift+C")
        t = mb.addMenu("&Tools")
        # The OpenAI-compatible server (issue 9) plugs in here: set window.server_toggle to a
        # callable(on: bool) -> status text; until then the action explains it is unavailable.
        self.act_server = self._act(t, "Local &API server", self.toggle_server,
                                    tip="Serve the loaded model over an OpenAI-compatible HTTP API")
        self.act_server.setCheckable(True)
        h = mb.addMenu("&Help")
        self._act(h, "&About Lectern", self.about)
        self.toolbar.addSeparator()
        self.toolbar.addAction(self.act_new)
        self.toolbar.addAction(self.act_regen)
        self.toolbar.addAction(self.act_settings)

    # --- banner, meter, list ------------------------------------------------------------------
    def show_banner(self, text: str) -> None:
        self.banner.setText(text)
        self.banner_box.setVisible(True)

    def clear_banner(self) -> None:
        self.banner.clear()
        self.banner_box.setVisible(False)

    def set_context_meter(self, used: int, total: int) -> None:
        total = max(int(total or 0), 1)
        self.meter.setMaximum(total)
        self.meter.setValue(min(int(used), total))
        max_tokens = int(self.model_settings().get("max_tokens", 0) or 0)
        full = used >= CONTEXT_WARN * total or (used and used + max_tokens > total)
        pal = QPalette()        # only the roles set here override the application's (theme) palette
        if full:
            pal.setColor(QPalette.Highlight, QColor("#c9302c"))
        self.meter.setPalette(pal)
        self.meter.setProperty("warning", bool(full))
        if full:
            self.meter.setToolTip("The conversation nearly fills the context: the next answers may "
                                  "not fit. Start a new chat or raise the context size in Settings.")
            self.statusBar().showMessage("Context nearly full: start a new chat soon", 8000)
        else:
            self.meter.setToolTip("Tokens of the conversation / the model's context size")

    def refresh_list(self, select: int | None = None) -> None:
        self.conversations.set_conversations(self.store.conversations(self.conversations.search.text()),
                                             select)

    def focus_search(self) -> None:
        self.conversations.search.setFocus()
        self.conversations.search.selectAll()

    # --- models -------------------------------------------------------------------------------
    def refresh_models(self) -> None:
        self.picker.set_entries(self.library.entries() + self.remote_entries(), self.model_path)

    def model_settings(self) -> dict:
        if self.model_entry is None:
            return {}
        return self.library.settings(self.model_entry)

    def sampling_params(self) -> dict:
        s = self.model_settings()
        keys = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "max_tokens")
        return {k: s[k] for k in keys if k in s}

    def load_model(self, path: str) -> None:
        self.stop()
        if self.loading_lid is not None:
            self.worker.cancel_load(self.loading_lid)
        if is_remote(path):
            return self.load_remote(path)
        entry = self.library.entry(path)
        self.lid += 1
        self.loading_lid = self.lid
        self.model_entry = entry
        self.picker.set_current(path)
        self.model_label.setText(f"Loading {entry.name}…")
        self.load_bar.setRange(0, 0)
        self.load_bar.setVisible(True)
        self.load_cancel.setVisible(True)
        self._failed_path = path
        gc.unfreeze()                       # a model loaded before may be collected again
        settings = self.library.settings(entry)
        self.worker.load(self.lid, path, settings["n_ctx"], settings["kv_type"])

    def cancel_load(self) -> None:
        if self.loading_lid is not None:
            self.worker.cancel_load(self.loading_lid)

    def _on_load_progress(self, lid: int, step: int, steps: int, what: str) -> None:
        if lid == self.loading_lid:
            self.load_bar.setRange(0, steps)
            self.load_bar.setValue(step)
            self.model_label.setText(f"Loading {self.model_entry.name}: {what}…")

    def _on_loaded(self, lid: int, info: dict) -> None:
        if lid != self.loading_lid:
            return
        self.loading_lid = None
        gc_guard.settle_after_load()
        self.model_path, self.n_ctx = info["path"], info["n_ctx"]
        self.store.set("last_model", self.model_path)
        self.load_bar.setVisible(False)
        self.load_cancel.setVisible(False)
        ctx = f" · context {self.n_ctx:,}" if self.n_ctx else ""
        self.model_text = f"{info['name']} · {info['architecture']}{ctx}"
        self.model_label.setText(self.model_text)
        self.clear_banner()
        if self.server.running:             # serve the model just loaded, on the same port
            self.server.stop()
            self.statusBar().showMessage(self.server.start(), 6000)
        self.set_context_meter(max(self.meter.value(), 0), self.n_ctx)
        self.measure_documents()
        if self.current is not None:
            self.store.set_conversation_model(self.current, self.model_path)
            msgs = self.store.messages(self.current)
            if msgs:
                self.count_rid = self._next_rid()
                self.worker.count(self.count_rid, self.prompt_messages(msgs))

    def _on_load_failed(self, lid: int, kind: str, message: str) -> None:
        if lid != self.loading_lid:
            return
        self.loading_lid = None
        self.load_bar.setVisible(False)
        self.load_cancel.setVisible(False)
        loaded = self.worker.worker.path
        self.model_path = loaded
        self.model_entry = self.library.entry(loaded) if loaded else None
        self.picker.set_current(loaded)
        self.model_label.setText(self.model_text if loaded else "No model loaded")
        if kind == "cancelled":
            self.statusBar().showMessage("Loading cancelled", 4000)
        else:
            name = Path(self._failed_path).name
            hint = {"missing": "Import the file again or pick another model in the toolbar.",
                    "memory": "", "error": "Pick another model in the toolbar."}.get(kind, "")
            self.show_banner(f"Could not load {name}: {message.rstrip('.')}. {hint}".strip())

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", str(Path.home()),
                                              "GGUF models (*.gguf)")
        if path:
            self.import_model(path)

    def import_model(self, path: str) -> ModelEntry:
        e = self.library.import_file(path)
        if e.error:
            self.show_banner(f"Cannot import {Path(path).name}: {e.error}")
            return e
        self.refresh_models()
        self.statusBar().showMessage(f"Imported {e.name}: {e.summary()}", 8000)
        self.load_model(e.path)
        return e

    def open_settings(self, focus: str | None = None) -> None:
        """The settings dialog; focus: a field to start in ("n_ctx" for the context size)."""
        from .settings_dialog import SettingsDialog

        d = SettingsDialog(str(self.library.models_dir), self.model_entry, self.model_settings(), self)
        self.settings_dialog = d
        if focus and hasattr(d, focus):
            field = getattr(d, focus)
            field.setFocus()
            if hasattr(field, "selectAll"):
                field.selectAll()
        if d.exec():
            self.apply_settings(d.models_dir.text(), d.values())

    def apply_settings(self, models_dir: str, values: dict) -> None:
        if models_dir.strip() and Path(models_dir.strip()).expanduser().absolute() != self.library.models_dir:
            try:
                folder = check_models_dir(models_dir)
            except ValueError as e:
                self.show_banner(str(e))
            else:           # the library scans it; new downloads go there (started ones stay put)
                self.library.models_dir = folder
                self.store.set("models_dir", str(folder))
                if self.downloads is not None:
                    self.downloads.manager.models_dir = folder
                self.refresh_models()
        if self.model_entry is not None:
            old = self.model_settings().get("n_ctx")
            self.library.save_settings(self.model_entry, values)
            if values.get("n_ctx") != old and self.model_path:
                self.load_model(self.model_path)

    # --- the rest -----------------------------------------------------------------------------
    def export_dialog(self, kind: str) -> None:
        if self.current is None:
            self.show_banner("Open a chat to export it.")
            return
        title = self.store.conversation(self.current).title
        name = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in title).strip() or "chat"
        path, _ = QFileDialog.getSaveFileName(self, "Export chat", str(Path.home() / f"{name}.{kind}"))
        if path:
            text = export_markdown(self.store, self.current) if kind == "md" else \
                export_json(self.store, self.current)
            Path(path).write_text(text, encoding="utf-8")
            self.statusBar().showMessage(f"Exported to {path}", 4000)

    def toggle_server(self, on: bool) -> None:
        if self.server_toggle is None:
            self.act_server.setChecked(False)
            self.show_banner("The local API server is not available in this build yet.")
            return
        self.statusBar().showMessage(self.server_toggle(on), 6000)

    def about(self) -> None:
        QMessageBox.about(self, "About Lectern",
                          f"<h3>Lectern {self.version}</h3><p>Chat with local LLMs about long "
                          "documents. GGUF models run on Lectern's own inference engine; nothing "
                          "leaves your machine.</p><p>MIT licensed.</p>")

    def restore_state(self) -> None:
        geo = self.store.get("window_geometry")
        if geo:
            self.restoreGeometry(QByteArray(base64.b64decode(geo)))
        else:
            self.resize(1000, 680)
        split = self.store.get("splitter")
        if split:
            self.splitter.restoreState(QByteArray(base64.b64decode(split)))
        last = self.store.get("last_conversation")
        self.refresh_list(select=last)
        if last is not None and self.store.conversation(last) is not None:
            self.open_conversation(last)
        QTimer.singleShot(0, self.chat.scroll_to_end)

    def save_state(self) -> None:
        self.store.set("window_geometry", base64.b64encode(bytes(self.saveGeometry())).decode())
        self.store.set("splitter", base64.b64encode(bytes(self.splitter.saveState())).decode())
        self.store.set("last_conversation", self.current)

    def closeEvent(self, ev) -> None:
        if getattr(self, "_closed", False):
            return super().closeEvent(ev)
        self._closed = True
        self.cancel_extraction()
        self.stop()
        self.save_state()
        self.server.stop()
        self.close_hub()
        self.worker.shutdown()
        gc_guard.release()
        super().closeEvent(ev)
