"""Part of MainWindow: the model hub (File > Download models…, the picker's "Download models…").

The window owns one HubService (thread pool for hub requests) and, once needed, one
DownloadBridge (the download queue). A queue saved by an earlier run is resumed at start; a
finished download refreshes the library so the model is in the picker at once."""
from __future__ import annotations

import base64
import threading

from PySide6.QtCore import QByteArray

from . import hub_service
from .hub_service import DownloadBridge, HubService, error_text, has_saved_jobs

HUB_GEOMETRY = "hub_window_geometry"     # store setting: the hub window's size and place
HUB_WARM_MS = 3000      # after start, the hub client is imported off the GUI thread (MainWindow)


def _import_hub() -> None:
    try:
        hub_service.hub()
    except Exception:  # noqa: BLE001 - a broken install is reported when the hub is opened
        pass


class HubMixin:
    def _init_hub(self) -> None:
        self.hub_service = HubService(self)
        self.downloads: DownloadBridge | None = None
        self.hub_window = None
        self._announced: set = set()         # job ids whose end was already reported
        self._jobs: dict = {}                 # job id -> latest JobStatus
        self.download_status = None           # status bar button while downloads run

    def warm_hub(self) -> threading.Thread:
        """Import the hub client (huggingface_hub, ~0.3 s) on a background thread a little after
        start, so the first File > Download models… does not freeze the window for it."""
        t = threading.Thread(target=_import_hub, name="lectern-hub-import", daemon=True)
        t.start()
        return t

    def resume_downloads(self) -> None:
        """At start: only if an earlier run left a queue (otherwise nothing imports the hub on the
        GUI thread; warm_hub imports it on its own thread a little later)."""
        if has_saved_jobs():
            self.ensure_downloads()

    def ensure_downloads(self) -> DownloadBridge | None:
        if self.downloads is None:
            try:
                self.downloads = DownloadBridge(self.library.models_dir, parent=self)
            except Exception as e:  # a broken state file or install: the rest of the app works
                self.show_banner(f"Downloads are unavailable: {error_text(e)}")
                return None
            self.downloads.jobUpdated.connect(self._on_download_update)
            jobs = self.downloads.jobs()
            for st in jobs:
                if st.state in ("done", "failed"):
                    self._announced.add(st.job_id)
                self._on_download_update(st)
            if any(st.state == "done" for st in jobs):
                self.refresh_models()       # one may have finished before the signal was connected
            broken = getattr(self.downloads.manager, "load_error", "")
            if broken:
                self.show_banner(broken)
        return self.downloads

    def open_hub(self):
        from .hub_dialog import HubWindow
        from .library import DEFAULT_N_CTX, total_ram

        if self.hub_window is None:
            bridge = self.ensure_downloads()
            n_ctx = int(self.model_settings().get("n_ctx") or DEFAULT_N_CTX)
            ram = self.worker.worker.ram_bytes or total_ram()
            self.hub_window = HubWindow(self.hub_service, bridge, ram, n_ctx, self)
            self.hub_window.loadRequested.connect(self._load_downloaded)
            self.hub_window.finished.connect(lambda _r: self._save_hub_geometry())
            geo = self.store.get(HUB_GEOMETRY)
            if geo:
                self.hub_window.restoreGeometry(QByteArray(base64.b64decode(geo)))
        self.hub_window.show()
        self.hub_window.raise_()
        self.hub_window.activateWindow()
        return self.hub_window

    def _on_download_update(self, st) -> None:
        self._jobs[st.job_id] = st
        self._show_download_progress()
        if st.state in ("done", "failed") and st.job_id not in self._announced:
            self._announced.add(st.job_id)
            if st.state == "done":
                self.refresh_models()
                self.statusBar().showMessage(f"Downloaded {st.repo_id} {st.name}: it is in the "
                                             "model picker now", 10000)
            else:
                self.statusBar().showMessage(f"Download of {st.repo_id} {st.name} failed: "
                                             f"{st.error}", 10000)
        elif st.state not in ("done", "failed"):
            self._announced.discard(st.job_id)      # retried: announce its end again

    def _show_download_progress(self) -> None:
        """Status bar: 'Downloading 2 models: 45%' while any job is active; opens the hub."""
        from PySide6.QtWidgets import QPushButton

        active = [s for s in self._jobs.values() if s.state in ("queued", "running")]
        if self.download_status is None:
            if not active:
                return
            self.download_status = QPushButton()
            self.download_status.setFlat(True)
            self.download_status.setToolTip("Show the downloads (File > Download models…)")
            self.download_status.clicked.connect(self.open_hub)
            self.statusBar().addPermanentWidget(self.download_status)
        done = sum(int(s.done_bytes or 0) for s in active)
        total = sum(int(s.total_bytes or 0) for s in active)
        pct = f": {100 * done // total}%" if total else ""
        n = len(active)
        self.download_status.setText(f"Downloading {n} model{'s' if n > 1 else ''}{pct}")
        self.download_status.setVisible(bool(active))

    def _save_hub_geometry(self) -> None:
        if self.hub_window is not None:
            geo = bytes(self.hub_window.saveGeometry())
            self.store.set(HUB_GEOMETRY, base64.b64encode(geo).decode())

    def _load_downloaded(self, path: str) -> None:
        self.refresh_models()
        self.load_model(path)

    def close_hub(self) -> None:
        if self.hub_window is not None and self.hub_window.isVisible():
            self.hub_window.close()         # saves its geometry
        self.hub_service.close()
        if self.downloads is not None:
            self.downloads.close()
