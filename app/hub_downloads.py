"""The downloads panel of the hub window: one row per job, newest at the top.

Row layout:  name (repo · variant)                        [Pause|Resume|Retry] [Cancel] [Load model]
             [=====progress=====]  1.2 GiB of 4.5 GiB · 12.3 MiB/s · 4 min left
Rows follow DownloadBridge.jobUpdated; the buttons call the bridge (which only queues the request
for the manager's worker thread, so they never block)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea,
                               QVBoxLayout, QWidget)

from .hub_variants import human
from .qt_compat import emit

STATE_TEXT = {"queued": "Queued", "running": "Downloading", "paused": "Paused", "done": "Done",
              "failed": "Failed", "cancelled": "Cancelled"}
ACTIVE = ("queued", "running", "paused")


def duration(seconds) -> str:
    if seconds is None or seconds < 0:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def detail_text(st) -> str:
    done, total = int(st.done_bytes or 0), int(st.total_bytes or 0)
    amount = f"{human(done)} of {human(total)}" if total else human(done)
    if st.state == "running":
        parts = [amount]
        if st.speed_bps:
            parts.append(f"{human(st.speed_bps)}/s")
        left = duration(st.eta_s)
        if left:
            parts.append(f"{left} left")
        return " · ".join(parts)
    if st.state == "done":
        paths = list(st.local_paths or [])
        return f"Done, {human(total or done)}" + (f": {Path(paths[0]).name}" if paths else "")
    if st.state == "failed":
        return f"Failed: {st.error or 'unknown error'}"
    if st.state == "paused":
        return f"Paused at {amount}"
    if st.state == "cancelled":
        return "Cancelled; the partial file was removed"
    return f"Queued, {human(total)}" if total else "Queued"


class JobRow(QFrame):
    def __init__(self, panel: "DownloadsPanel", st):
        super().__init__()
        self.panel, self.job_id = panel, st.job_id
        self.setFrameShape(QFrame.StyledPanel)
        self.name = QLabel(f"<b>{st.repo_id}</b> · {st.name}")
        self.name.setTextFormat(Qt.RichText)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.detail = QLabel()
        self.detail.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.pause_btn = QPushButton("Pause")
        self.cancel_btn = QPushButton("Cancel")
        self.load_btn = QPushButton("Load model")
        self.pause_btn.clicked.connect(self._pause_resume)
        self.cancel_btn.clicked.connect(lambda: panel.cancel(self.job_id))
        self.load_btn.clicked.connect(self._load)
        top = QHBoxLayout()
        top.addWidget(self.name, 1)
        for b in (self.pause_btn, self.cancel_btn, self.load_btn):
            top.addWidget(b)
        bottom = QHBoxLayout()
        bottom.addWidget(self.bar, 2)
        bottom.addWidget(self.detail, 3)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.addLayout(top)
        lay.addLayout(bottom)
        self.status = st
        self.update_status(st)

    def update_status(self, st) -> None:
        self.status = st
        total, done = int(st.total_bytes or 0), int(st.done_bytes or 0)
        # progress in KiB: QProgressBar holds an int, files reach hundreds of GB
        self.bar.setRange(0, max(total >> 10, 1))
        self.bar.setValue(min(done >> 10, max(total >> 10, 1)) if total else 0)
        self.bar.setFormat(f"{STATE_TEXT.get(st.state, st.state)} %p%")
        self.detail.setText(detail_text(st))
        self.detail.setToolTip("\n".join(st.local_paths or []) or (st.error or ""))
        color = {"failed": "#cf222e", "done": "#1a7f37"}.get(st.state)
        self.detail.setStyleSheet(f"color: {color};" if color else "")
        active = st.state in ACTIVE
        self.pause_btn.setVisible(active or st.state == "failed")
        self.pause_btn.setText({"paused": "Resume", "failed": "Retry"}.get(st.state, "Pause"))
        self.cancel_btn.setVisible(active or st.state == "failed")
        self.load_btn.setVisible(st.state == "done" and bool(st.local_paths))

    def _pause_resume(self) -> None:
        if self.status.state in ("paused", "failed"):
            self.panel.resume(self.job_id)
        else:
            self.panel.pause(self.job_id)

    def _load(self) -> None:
        paths = list(self.status.local_paths or [])
        if paths:
            emit(self.panel.loadRequested, str(paths[0]))


class DownloadsPanel(QWidget):
    loadRequested = Signal(str)          # local path of a finished download
    failed = Signal(str)                 # a pause/resume/cancel request was refused: message

    def __init__(self, bridge=None, parent=None):
        super().__init__(parent)
        self.bridge = None
        self.rows: dict = {}
        self.title = QLabel("<b>Downloads</b>")
        self.empty = QLabel("No downloads yet: choose a variant above and press Download.")
        self.empty.setStyleSheet("color: palette(placeholder-text);")
        self.box = QWidget()
        self.list = QVBoxLayout(self.box)
        self.list.setContentsMargins(0, 0, 0, 0)
        self.list.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setWidget(self.box)
        self.clear_btn = QPushButton("Clear finished")
        self.clear_btn.setToolTip("Remove done, failed and cancelled downloads from this list "
                                  "(downloaded files stay)")
        self.clear_btn.clicked.connect(self.clear_finished)
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.clear_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(head)
        lay.addWidget(self.empty)
        lay.addWidget(scroll, 1)
        if bridge is not None:
            self.set_bridge(bridge)

    def set_bridge(self, bridge) -> None:
        self.bridge = bridge
        bridge.jobUpdated.connect(self.update_job)
        for st in bridge.jobs():
            self.update_job(st)

    def update_job(self, st) -> None:
        row = self.rows.get(st.job_id)
        if row is None:
            row = self.rows[st.job_id] = JobRow(self, st)
            self.list.insertWidget(0, row)          # newest first
        else:
            row.update_status(st)
        self._update_header()

    def _update_header(self) -> None:
        self.empty.setVisible(not self.rows)
        active = sum(1 for r in self.rows.values() if r.status.state in ACTIVE)
        self.title.setText(f"<b>Downloads</b> ({active} active)" if active else "<b>Downloads</b>")
        self.clear_btn.setEnabled(len(self.rows) > active)

    def clear_finished(self) -> None:
        for job_id, row in list(self.rows.items()):
            if row.status.state not in ACTIVE:
                self._do("remove", job_id)
                if not any(j.job_id == job_id for j in self.bridge.jobs()):
                    self.rows.pop(job_id)
                    row.deleteLater()
        self._update_header()

    def _do(self, what: str, job_id) -> None:
        from .hub_service import error_text

        try:
            getattr(self.bridge, what)(job_id)
        except Exception as e:  # a refused request is a message, not a crash
            emit(self.failed, f"Could not {what} the download: {error_text(e)}")

    def pause(self, job_id) -> None:
        self._do("pause", job_id)

    def resume(self, job_id) -> None:
        self._do("resume", job_id)

    def cancel(self, job_id) -> None:
        self._do("cancel", job_id)
