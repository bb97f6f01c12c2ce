"""Attached documents in the window: attach (paperclip, Ctrl+Shift+A, drop), extract off the GUI
thread, chips, preview, the fit line before sending, the reading bar while the model reads, and
a new conversation from documents already read.

A mixin of MainWindow (uses its store, worker, input, chat view, banner). The documents of a
user message are kept in the store with their extracted text (store.add_document), so the
prompt of a conversation is the same after a restart: its user message becomes
build_prompt(question, documents) for the model, while the chat shows the question and chips.
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from .document_widgets import PreviewDialog, doc_summary
from .qt_compat import emit

FILE_FILTER = ("Documents (*.txt *.md *.markdown *.rst *.pdf *.docx *.html *.htm *.csv *.tsv *.json "
               "*.py *.js *.ts *.c *.h *.cpp *.java *.go *.rs *.rb *.sh *.toml *.yaml *.yml *.xml "
               "*.tex *.log);;All files (*)")
READING_MIN_TOKENS = 64       # prompts shorter than this read too fast for a bar


class _ExtractSignals(QObject):
    finished = Signal(int, object, object)       # job id, [Document], [(path, DocumentError)]
    progress = Signal(int, int, int)             # job id, files done, files


class ExtractJob(QRunnable):
    """extract_paths(paths) on a pool thread (a big PDF takes seconds)."""

    def __init__(self, jid: int, paths: list[str]):
        super().__init__()
        self.jid, self.paths = jid, paths
        self.signals = _ExtractSignals()
        self.cancelled = False          # set when the window closes: stop between files
        self.setAutoDelete(False)

    def run(self) -> None:
        from inference.documents import DocumentError, extract_paths

        try:
            docs, errors = extract_paths(
                self.paths, progress=lambda d, n: emit(self.signals.progress, self.jid, d, n),
                cancel=lambda: self.cancelled)
        except DocumentError as e:
            docs, errors = [], [(self.paths[0], e)]
        except Exception as e:  # noqa: BLE001 (reported in the banner; the app keeps running)
            docs, errors = [], [(self.paths[0], RuntimeError(
                f"could not read {', '.join(self.paths)}: {type(e).__name__}: {e}"))]
        emit(self.signals.finished, self.jid, docs, errors)


def document_from_row(row: dict):
    """A stored attachment row back into an inference.documents.Document."""
    from inference.documents import Document

    return Document(path=row["path"], name=row["name"], kind=row["mime"], text=row["text"] or "",
                    pages=row["pages"], chars=row["chars"], encoding=row["encoding"] or "")


class DocumentsMixin:
    def _init_documents(self) -> None:
        self.extract_jobs: dict[int, ExtractJob] = {}
        self.extract_seq = 0
        self.measure_rid: int | None = None
        self.fit: dict | None = None             # the last measurement of the pending documents
        self.send_after_measure: str | None = None
        self.reading_started: tuple[int, float, int] | None = None   # rid, time, done
        inp = self.input
        inp.attachRequested.connect(self.attach_dialog)
        inp.attachments.changed.connect(self.measure_documents)
        inp.attachments.previewRequested.connect(self.preview_document)
        inp.raiseContextRequested.connect(lambda: self.open_settings(focus="n_ctx"))
        self.chat.documentRequested.connect(self.preview_attachment)
        self.chat.branchRequested.connect(self.new_chat_from_documents)
        self.worker.worker.measured.connect(self._on_measured)

    # --- attaching ----------------------------------------------------------------------------
    def attach_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        paths, _ = QFileDialog.getOpenFileNames(self, "Attach documents", str(Path.home()), FILE_FILTER)
        if paths:
            self.attach_paths(paths)

    def attach_paths(self, paths: list[str]) -> int:
        """Extract files or folders in the background; they become chips (or banner lines)."""
        self.extract_seq += 1
        job = ExtractJob(self.extract_seq, [str(p) for p in paths])
        job.signals.finished.connect(self._on_extracted)
        job.signals.progress.connect(self._on_extract_progress)
        self.extract_jobs[job.jid] = job
        what = Path(paths[0]).name if len(paths) == 1 else f"{len(paths)} items"
        self.input.attachments.set_busy(f"Reading {what}…")
        QThreadPool.globalInstance().start(job)
        return job.jid

    def dragEnterEvent(self, ev) -> None:
        if any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        self.drop_paths([u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()])

    def drop_paths(self, paths: list[str]) -> None:
        """Dropped .gguf files are models to import (main_window); anything else is attached."""
        docs = []
        for p in paths:
            if p.lower().endswith(".gguf"):
                self.import_model(p)
            else:
                docs.append(p)
        if docs:
            self.attach_paths(docs)

    def _on_extract_progress(self, jid: int, done: int, total: int) -> None:
        if jid in self.extract_jobs and total > 1:
            self.input.attachments.set_busy(f"Reading files: {done:,} of {total:,}…")

    def cancel_extraction(self) -> None:
        for job in self.extract_jobs.values():
            job.cancelled = True

    @property
    def extracting(self) -> bool:
        return bool(self.extract_jobs)

    def _on_extracted(self, jid: int, docs: list, errors: list) -> None:
        self.extract_jobs.pop(jid, None)
        bar = self.input.attachments
        if not self.extract_jobs:
            bar.set_busy(None)
        have = {str(d.path) for d in bar.docs()}
        for d in docs:
            if str(d.path) not in have:
                bar.add(d)
                have.add(str(d.path))
        if errors:
            lines = [self._error_line(e) for _path, e in errors]
            self.show_banner("Not attached:\n" + "\n".join(lines))
        if self.send_after_measure is not None and not self.extract_jobs and not docs:
            self.send_after_measure = None      # nothing came of the files: let the user decide

    @staticmethod
    def _error_line(e: Exception) -> str:
        return "• " + str(e).strip()            # messages start with the file's name

    def preview_document(self, doc, tokens: int | None = None) -> PreviewDialog:
        d = PreviewDialog(doc.name, doc_summary(str(doc.path), doc.pages, doc.chars, tokens),
                          doc.text, self)
        d.show()
        self.preview = d
        return d

    def preview_attachment(self, aid: int) -> PreviewDialog | None:
        row = self.store.attachment(aid)
        if row is None:
            return None
        return self.preview_document(document_from_row(row), row.get("tokens") or None)

    def attach_rows(self, rows: list[dict]) -> None:
        """Stored documents back as chips (editing their message, a new chat from them)."""
        bar = self.input.attachments
        have = {str(d.path) for d in bar.docs()}
        for r in rows:
            if r["path"] not in have:
                bar.add(document_from_row(r)).set_tokens(r.get("tokens") or None)

    # --- the fit line -------------------------------------------------------------------------
    def pending_messages(self, question: str) -> list[dict]:
        """The prompt if `question` were sent now with the pending documents."""
        from inference.documents import build_prompt

        history = self.store.messages(self.current) if self.current is not None else []
        docs = self.input.attachments.docs()
        content = build_prompt(question, docs) if docs else question
        return self.prompt_messages(history) + [{"role": "user", "content": content}]

    def measure_documents(self) -> None:
        """Count the pending documents' tokens and check the fit (answer in _on_measured)."""
        docs = self.input.attachments.docs()
        self.fit = None
        if not docs:
            self.measure_rid = self.send_after_measure = None
            self.input.set_fit(None)
            return
        if self.worker.worker.engine is None or not self.model_path:
            self.measure_rid = None
            self.input.set_fit("Load a local model to check whether the documents fit.", None)
            return
        self.measure_rid = self._next_rid()
        question = self.input.edit.toPlainText().strip() or "?"
        max_tokens = int(self.model_settings().get("max_tokens", 0) or 0)
        self.input.set_fit("Counting tokens…", None)
        self.worker.measure(self.measure_rid, [d.text for d in docs], self.pending_messages(question),
                            max_tokens)

    def _on_measured(self, rid: int, r: dict) -> None:
        if rid != self.measure_rid:
            return
        self.measure_rid = None
        if "error" in r:
            self.fit = None
            self.input.set_fit(f"Could not count the tokens: {r['error']}", None)
            return
        self.input.attachments.set_tokens(r["doc_tokens"])
        self.fit = f = r["fit"]
        self.input.set_fit(self.fit_text(f), bool(f["fits"]),
                           can_raise=f["n_tokens"] <= (f.get("n_ctx_train") or 0))
        if self.send_after_measure is not None:
            self._retry_send()

    @staticmethod
    def fit_text(f: dict) -> str:
        from inference.model_info import human_bytes

        state = f" · state {human_bytes(f['state_bytes'])}" if f.get("state_bytes") else ""
        if f["fits"]:
            return f"Fits: {f['n_tokens']:,} of {f['n_ctx']:,} tokens{state}"
        fixes = "; ".join(f["remedies"])
        return f"Does not fit: {f['n_tokens']:,} tokens, the context holds {f['n_ctx']:,}{state}" + \
               (f" — {fixes}" if fixes else "")

    def _retry_send(self) -> None:
        text, self.send_after_measure = self.send_after_measure, None
        if text == self.input.edit.toPlainText().strip():
            self.send(text)

    def documents_ready(self, text: str) -> bool:
        """May `text` be sent with the pending documents now? If not, say why (or wait)."""
        if self.extracting:
            self.send_after_measure = text
            self.statusBar().showMessage("Sending once the files are read…", 4000)
            return False
        if not self.input.attachments.docs():
            return True
        if self.fit is None:
            if self.worker.worker.engine is None:       # a remote model: nothing to count with
                return True
            self.send_after_measure = text
            if self.measure_rid is None:
                self.measure_documents()
            return False
        if not self.fit["fits"]:
            self.show_banner("Not sent. " + self.fit_text(self.fit) + ".")
            return False
        return True

    def save_pending_documents(self, mid: int) -> None:
        bar = self.input.attachments
        for chip in bar.chips:
            self.store.add_document(mid, chip.doc, chip.tokens or 0)
        bar.clear()

    # --- the prompt ---------------------------------------------------------------------------
    def user_prompt_text(self, m) -> str:
        """What the model reads for user message m: its question, after its documents if any."""
        rows = self.store.attachments(m.id)
        if not rows:
            return m.content
        from inference.documents import build_prompt

        return build_prompt(m.content, [document_from_row(r) for r in rows])

    def documents_request(self, history: list, messages: list[dict]) -> dict | None:
        """The worker's `docs` argument: which prompt message holds the latest documents."""
        with_docs = [m for m in history if m.role == "user" and self.store.attachments(m.id)]
        if not with_docs:
            return None
        last = with_docs[-1]
        users = [i for i, pm in enumerate(messages) if pm["role"] == "user"]
        user_ids = [m.id for m in history if m.role == "user"]
        nth = user_ids.index(last.id)
        # where each document ends (character offsets in the message, then where the question
        # starts): states kept there serve another question or a grown document. Found only on
        # the first question about them; by a follow-up they were kept already.
        ends: list[int] = []
        if last.id == user_ids[-1]:
            from inference.documents import layout

            ends = layout(last.content, [document_from_row(r) for r in self.store.attachments(last.id)])[1]
        return {"index": users[nth], "ends": ends}

    def show_messages(self, msgs: list, busy: bool = False) -> None:
        self.chat.attachments = self.store.conversation_attachments(self.current) \
            if self.current is not None else {}
        self.chat.set_messages(msgs, busy=busy)

    # --- reading progress ---------------------------------------------------------------------
    def show_reading(self, rid: int, done: int, total: int) -> None:
        if rid != self.active_rid or total < READING_MIN_TOKENS:
            return
        now = time.perf_counter()
        if self.reading_started is None or self.reading_started[0] != rid:
            self.reading_started = (rid, now, done)
        _, t0, d0 = self.reading_started
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else 0.0
        self.reading.show_progress(done, total, rate)
        if done >= total:
            self.hide_reading()

    def note_saved_state(self, stats: dict) -> None:
        if stats.get("state_bytes"):
            from inference.model_info import human_bytes

            self.statusBar().showMessage(
                f"Read state saved ({human_bytes(stats['state_bytes'])}): follow-up questions and "
                "new chats with these documents start without reading them again", 10000)

    def hide_reading(self) -> None:
        self.reading.setVisible(False)
        self.reading_started = None

    # --- a new conversation from documents ----------------------------------------------------
    def new_chat_from_documents(self, aids: list[int]) -> int | None:
        """A new conversation with these documents attached, ready for a question (their saved
        reading state makes the first answer start without reading them again)."""
        rows = [r for r in (self.store.attachment(a) for a in aids) if r is not None]
        if not rows:
            return None
        cid = self.new_chat()
        self.input.attachments.clear()
        self.attach_rows(rows)
        self.statusBar().showMessage("New chat with " + ", ".join(r["name"] for r in rows), 6000)
        return cid
