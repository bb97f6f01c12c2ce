"""The "Find models" window: search GGUF repositories on Hugging Face, read a repository's page,
pick a quantization by size and fit, and follow the downloads.

Layout (vertical splitter):
    notice bar (offline / errors, Retry)  ·  token bar (gated or private repositories)
    [ search box + sort          |  repository title                          [Token…] ]
    [ "Curated models"/results   |  model card (markdown)                             ]
    [ result list                |  context length [spin]   this computer: N GiB RAM  ]
    [                            |  variants table (size, RAM, fit)      [Download]   ]
    -------------------------------------------------------------------------------------
    downloads panel (one row per job: progress, bytes, speed, ETA, Pause/Resume/Cancel)

Every network call goes through HubService (a thread pool); answers arrive as signals, and an
answer for a request that is no longer current (older search, other repository, other context)
is dropped.
"""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QSpinBox, QSplitter, QVBoxLayout, QWidget)

from .hub_downloads import DownloadsPanel
from .hub_notice import NoticeBar, TokenBar
from .hub_results import ModelCard, ResultsList
from .hub_service import HubService
from .hub_variants import VariantsTable, human
from .qt_compat import emit

SEARCH_DELAY_MS = 350          # debounce: search once typing pauses
ESTIMATE_DELAY_MS = 400        # and re-estimate once the context spin box settles
SEE_ABOVE = "see the message at the top of the window."
SORTS = (("Most downloaded", "downloads"), ("Most liked", "likes"), ("Recently updated", "recent"))


class HubWindow(QDialog):
    loadRequested = Signal(str)          # a finished download to load in the main window

    def __init__(self, service: HubService, bridge, ram_bytes: int, n_ctx: int, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Find models on Hugging Face")
        self.setWindowFlag(Qt.Window, True)
        self.service, self.bridge, self.ram = service, bridge, int(ram_bytes)
        self.repo: str | None = None
        self._search_rid = self._variants_rid = self._card_rid = self._token_rid = 0
        self._estimate_rid = 0
        self._retry = None              # what to run again after Retry / a saved token
        self._build(n_ctx)
        service.done.connect(self._on_done)
        service.failed.connect(self._on_failed)
        if bridge is not None:
            self.downloads.set_bridge(bridge)
        self.show_curated()
        self.resize(1100, 760)

    # --- layout -------------------------------------------------------------------------------
    def _build(self, n_ctx: int) -> None:
        self.notice = NoticeBar()
        self.notice.retryRequested.connect(self.retry)
        self.token_bar = TokenBar()
        self.token_bar.tokenEntered.connect(self.save_token)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search GGUF models…")
        self.search.setClearButtonEnabled(True)
        self.sort = QComboBox()
        for label, key in SORTS:
            self.sort.addItem(label, key)
        self.list_title = QLabel()
        self.results = ResultsList()
        self.results.currentItemChanged.connect(self._on_result_chosen)
        self._debounce = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._debounce.timeout.connect(self.search_now)
        self.search.textChanged.connect(lambda _t: self._debounce.start())
        self.search.returnPressed.connect(self.search_now)
        self.sort.currentIndexChanged.connect(lambda _i: self.search_now())
        self.token_btn = QPushButton("Token…")
        self.token_btn.setToolTip("Enter a Hugging Face token for gated or private repositories")
        self.token_btn.clicked.connect(lambda: self.token_bar.ask(
            "It is sent only to the Hub, with every request.", "Hugging Face token."))
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.sort)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(top)
        ll.addWidget(self.list_title)
        ll.addWidget(self.results, 1)

        self.repo_title = QLabel("<b>Choose a model on the left</b>")
        self.repo_title.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.card = ModelCard()
        self.ctx_spin = QSpinBox()
        self.ctx_spin.setRange(256, 1 << 20)
        self.ctx_spin.setSingleStep(1024)
        self.ctx_spin.setValue(max(256, int(n_ctx)))
        self.ctx_spin.setSuffix(" tokens")
        self.ctx_spin.setToolTip("The context length you will use: the cache grows with it")
        self._ctx_timer = QTimer(self, singleShot=True, interval=ESTIMATE_DELAY_MS)
        self._ctx_timer.timeout.connect(self.estimate_all)
        self.ctx_spin.valueChanged.connect(lambda _v: self._ctx_timer.start())
        self.ram_label = QLabel(f"This computer: {human(self.ram)} RAM")
        self.variants = VariantsTable()
        self.variants.set_context(self.ctx_spin.value())
        self.variants.itemSelectionChanged.connect(self._update_download_button)
        self.variants.doubleClicked.connect(lambda _i: self.download())
        self.variant_note = QLabel()
        self.variant_note.setWordWrap(True)
        self.download_btn = QPushButton("Download")
        self.download_btn.setDefault(False)
        self.download_btn.setAutoDefault(False)
        self.download_btn.clicked.connect(self.download)
        ctx_row = QHBoxLayout()
        ctx_row.addWidget(QLabel("Context length:"))
        ctx_row.addWidget(self.ctx_spin)
        ctx_row.addStretch(1)
        ctx_row.addWidget(self.ram_label)
        dl_row = QHBoxLayout()
        dl_row.addWidget(self.variant_note, 1)
        dl_row.addWidget(self.download_btn)
        vbox = QWidget()
        vl = QVBoxLayout(vbox)
        vl.setContentsMargins(0, 0, 0, 0)
        vl.addLayout(ctx_row)
        vl.addWidget(self.variants, 1)
        vl.addLayout(dl_row)
        page = QSplitter(Qt.Vertical)      # model card above the variants
        page.addWidget(self.card)
        page.addWidget(vbox)
        page.setSizes([260, 300])
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(self.repo_title, 1)
        head.addWidget(self.token_btn)
        rl.addLayout(head)
        rl.addWidget(page, 1)

        main = QSplitter(Qt.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setStretchFactor(1, 1)
        main.setSizes([330, 770])
        self.downloads = DownloadsPanel()
        self.downloads.loadRequested.connect(lambda p: emit(self.loadRequested, p))
        self.downloads.failed.connect(lambda m: self.notice.show_message("error", m))
        outer = QSplitter(Qt.Vertical)
        outer.addWidget(main)
        outer.addWidget(self.downloads)
        outer.setStretchFactor(0, 1)
        outer.setSizes([540, 220])
        self.splitter = outer
        lay = QVBoxLayout(self)
        lay.addWidget(self.notice)
        lay.addWidget(self.token_bar)
        lay.addWidget(outer, 1)
        self._update_download_button()

    # --- left: curated list and search --------------------------------------------------------
    def show_curated(self) -> None:
        self._search_rid = 0
        self.list_title.setText("<b>Curated models</b> — or search above")
        try:
            curated = self.service.curated()
        except Exception as e:  # the list is local; a broken install still must not crash
            self.notice.show_message("error", f"The curated list is unavailable: {e}")
            return
        self.results.set_curated(curated)

    def search_now(self) -> None:
        self._debounce.stop()
        text = self.search.text().strip()
        if not text:
            self.show_curated()
            return
        self.list_title.setText(f"Searching for “{html.escape(text)}”…")
        self._search_rid = self.service.search(text, self.sort.currentData())

    def _show_results(self, text: str, repos: list) -> None:
        text = html.escape(text)
        sort = self.sort.currentText().lower()
        self.list_title.setText(f"<b>{len(repos)}</b> GGUF repositories for “{text}” ({sort})"
                                if repos else f"No GGUF repositories match “{text}”.")
        self.results.set_repos(repos)

    def result_ids(self) -> list[str]:
        return self.results.repo_ids()

    def _on_result_chosen(self, item, _prev=None) -> None:
        if item is not None:
            self.open_repo(item.data(Qt.UserRole))

    # --- right: a repository page -------------------------------------------------------------
    def open_repo(self, repo_id: str) -> None:
        self.repo = repo_id
        self._retry = None
        rid = html.escape(repo_id)
        self.repo_title.setText(f'<b>{rid}</b> &nbsp; <a href="https://huggingface.co/{rid}">'
                                "open on huggingface.co</a>")
        self.repo_title.setOpenExternalLinks(True)
        self.card.setPlainText("Loading the model card…")
        self.variants.set_variants([])
        self.variant_note.setText("Reading the repository's files…")
        self._estimate_rid = 0
        self._variants_rid = self.service.variants(repo_id)
        self._card_rid = self.service.card(repo_id)
        self._update_download_button()

    def estimate_all(self) -> None:
        """RAM estimates for every variant at the context length in the spin box."""
        self._ctx_timer.stop()
        n_ctx = self.ctx_spin.value()
        self.variants.set_context(n_ctx)
        self._estimate_rid = 0
        if not self.variants.variants:
            return
        self.variants.clear_estimates()
        self.variant_note.setText("Estimating the memory each variant needs…")
        self._estimate_rid = self.service.estimate(self.repo, self.variants.variants, n_ctx)

    def _on_estimates(self, estimates: list) -> None:
        for v, est in zip(self.variants.variants, estimates):
            self.variants.set_estimate(v.name, est, self.service.fit_verdict(est.total, self.ram))
        self._maybe_recommend()

    def _maybe_recommend(self) -> None:
        if not self.variants.all_estimated():
            return
        t = self.variants
        est = t.estimates
        # only variants this engine can run (architecture read from the header) and complete
        usable = [v for v in t.variants if est.get(v.name) is not None
                  and getattr(est[v.name], "supported", None) is not False
                  and getattr(v, "complete", True)]
        best = self.service.recommend(usable, [est[v.name] for v in usable], self.ram) \
            if usable else None
        t.mark_recommended(best.name if best else None)
        unsupported = sorted({e.architecture for e in est.values()
                              if e is not None and getattr(e, "supported", None) is False})
        if best:
            note = (f"Recommended: <b>{html.escape(best.name)}</b>, the largest variant that fits "
                    f"comfortably in {human(self.ram)} of RAM.")
        elif usable:
            note = ("No variant fits this computer's memory at this context length: try a "
                    "shorter context or a smaller model.")
        elif unsupported:
            note = ""
        else:
            note = "The memory needed could not be estimated."
        if unsupported:
            note += (f" <span style='color: #cf222e;'>Lectern cannot run the architecture "
                     f"{html.escape(', '.join(unsupported))} yet.</span>")
        self.variant_note.setText(note.strip())
        self._update_download_button()

    def _update_download_button(self) -> None:
        v = self.variants.selected_variant()
        self.download_btn.setEnabled(v is not None and self.bridge is not None)
        self.download_btn.setText(f"Download {v.name} ({human(v.size)})" if v else "Download")

    def download(self) -> None:
        v = self.variants.selected_variant()
        if v is None or self.repo is None or self.bridge is None:
            return
        from .hub_service import error_kind, error_text

        try:
            job_id = self.bridge.add(self.repo, v)
        except Exception as e:  # full disk, bad state file…: say so in the window
            if error_kind(e) == "auth":
                self._retry = self.download
                self.token_bar.ask(error_text(e))
            else:
                self.notice.show_message("error", f"Cannot download {v.name}: {error_text(e)}")
            return
        self.notice.clear()
        st = next((j for j in self.bridge.jobs() if j.job_id == job_id), None)
        if st is not None and st.state == "done":
            self.notice.show_message("info", f"{self.repo} {v.name} is already downloaded: it is "
                                     "in the model picker (Load model below).")

    # --- answers from the service -------------------------------------------------------------
    def _on_done(self, rid: int, kind: str, result) -> None:
        if kind == "search" and rid == self._search_rid:
            self._clear_network_notice()
            self._show_results(self.search.text().strip(), result)
        elif kind == "variants" and rid == self._variants_rid:
            self._clear_network_notice()
            self.variants.set_variants(result)
            if not result:
                self.variant_note.setText("This repository has no GGUF files.")
            self.estimate_all()
            self._update_download_button()
        elif kind == "card" and rid == self._card_rid:
            self.card.show_card(result)
        elif kind == "estimate" and rid == self._estimate_rid:
            self._on_estimates(result)
        elif kind == "token" and rid == self._token_rid:
            self._token_rid = 0
            self.token_bar.setVisible(False)
            self.token_bar.field.clear()
            self.retry()
            who = f" for the account {result}" if isinstance(result, str) and result else ""
            self.notice.show_message("info", f"Hugging Face token saved{who}.")

    def _on_failed(self, rid: int, kind: str, ekind: str, message: str) -> None:
        if kind == "estimate" and rid == self._estimate_rid:
            for v in self.variants.variants:
                self.variants.set_estimate_failed(v.name, message)
            self._maybe_recommend()
            if ekind not in ("offline", "auth"):
                return
        elif kind == "token" and rid == self._token_rid:
            self._token_rid = 0
            self.token_bar.save_failed(message)
            return
        elif kind == "card" and rid == self._card_rid:
            self.card.setPlainText("The model card could not be loaded: " +
                                   (SEE_ABOVE if ekind in ("offline", "auth") else message))
            if ekind not in ("offline", "auth"):
                return
        elif not ((kind == "search" and rid == self._search_rid)
                  or (kind == "variants" and rid == self._variants_rid)):
            return
        self._retry = self.search_now if kind == "search" else \
            (lambda repo=self.repo: self.open_repo(repo))
        if kind == "search":
            self.show_curated()
            self.list_title.setText("<b>The search failed</b> — curated models:")
        if kind == "variants":
            self.variant_note.setText("The repository's files could not be listed: " +
                                      (SEE_ABOVE if ekind in ("offline", "auth") else message))
        self.show_error(ekind, message)

    def show_error(self, ekind: str, message: str) -> None:
        if ekind == "auth":
            self.token_bar.ask(message)
        elif ekind == "offline":
            self.notice.show_message("offline", message, retry=True)     # says what still works
        elif ekind == "notfound":
            self.notice.show_message("error", message)
        else:
            self.notice.show_message("error", message, retry=True)

    def _clear_network_notice(self) -> None:
        if self.notice.kind in ("offline", "error"):
            self.notice.clear()

    # --- retry and tokens ---------------------------------------------------------------------
    def retry(self) -> None:
        self.notice.clear()
        again, self._retry = self._retry, None
        if again is not None:
            again()
        elif self.search.text().strip():
            self.search_now()

    def save_token(self, token: str) -> None:
        self.token_bar.saving()
        self._token_rid = self.service.save_token(token)
