"""What happens in a chat: send, stream, stop, regenerate, edit, switch conversations.

A mixin of MainWindow (it uses the window's store, worker, chat view, input and banner). The
answer being written lives in the store from its first token (PartialWriter flushes it), so a
crash keeps it; the view shows the same text. Events of a request that was stopped or replaced
are ignored by id.
"""
from __future__ import annotations

import time

from .store import Message, PartialWriter

TITLE_CHARS = 48


class ChatMixin:
    # state (set up by MainWindow.__init__): self.current, self.active_rid, self.writer, ...
    def _init_chat(self) -> None:
        self.current: int | None = None
        self.rid = 0
        self.active_rid: int | None = None
        self.active_mid: int | None = None
        self.writer: PartialWriter | None = None
        self.stopped_rids: dict[int, int] = {}     # rid -> message id of answers stopped by the user
        self.count_rid: int | None = None
        self.editing: int | None = None
        self.stop_requested_at = 0.0
        w = self.worker.worker
        w.token.connect(self._on_token)
        w.done.connect(self._on_done)
        w.error.connect(self._on_error)
        w.promptProgress.connect(self._on_prompt_progress)
        w.started.connect(self._on_started)
        self._init_documents()
        self.live_used = 0
        self.chat.editRequested.connect(self.start_edit)
        self.chat.regenerateRequested.connect(lambda _mid: self.regenerate())
        self.chat.copyRequested.connect(lambda _mid: self.statusBar().showMessage("Copied", 2000))
        self.input.sendRequested.connect(self.send)
        self.input.stopRequested.connect(self.stop)
        self.input.editCancelled.connect(self.cancel_edit)

    @property
    def busy(self) -> bool:
        return self.active_rid is not None

    # --- conversations ------------------------------------------------------------------------
    def new_chat(self) -> int:
        self.stop()
        c = self.store.new_conversation("New chat", self.model_path or "")
        self.refresh_list(select=c.id)
        self.open_conversation(c.id)
        self.input.edit.setFocus()
        return c.id

    def open_conversation(self, cid: int | None) -> None:
        if cid == self.current and cid is not None:
            return
        self.stop()
        self.cancel_edit()
        self.current = cid
        self.count_rid = None           # a count still on its way describes the last conversation
        self.store.set("last_conversation", cid)
        msgs = self.store.messages(cid) if cid is not None else []
        self.show_messages(msgs)
        self.clear_banner()
        self.measure_documents()
        last = next((m for m in reversed(msgs) if m.role == "assistant" and m.stats.get("used")), None)
        if last is not None:
            self.set_context_meter(last.stats["used"], self.n_ctx or last.stats.get("n_ctx", 0))
        else:
            self.set_context_meter(0, self.n_ctx)
        if msgs and self.model_path:
            self.count_rid = self._next_rid()
            self.worker.count(self.count_rid, self.prompt_messages(msgs))

    def delete_conversation(self, cid: int) -> None:
        if cid == self.current:
            self.stop()
        self.store.delete_conversation(cid)
        if cid == self.current:
            self.current = None
            rest = self.store.conversations()
            self.open_conversation(rest[0].id if rest else None)
        self.refresh_list(select=self.current)

    def rename_conversation(self, cid: int, title: str) -> None:
        self.store.rename_conversation(cid, title)
        self.refresh_list(select=self.current)

    # --- sending ------------------------------------------------------------------------------
    def _next_rid(self) -> int:
        self.rid += 1
        return self.rid

    def prompt_messages(self, msgs: list[Message]) -> list[dict]:
        out = []
        system = self.model_settings().get("system_prompt", "").strip()
        if system:
            out.append({"role": "system", "content": system})
        for m in msgs:
            if m.role == "assistant" and (m.state == "error" or not m.content):
                continue
            out.append({"role": m.role, "content": self.user_prompt_text(m) if m.role == "user"
                        else m.content})
        return out

    def send(self, text: str) -> None:
        text = text.strip()
        if not text or self.busy or not self.documents_ready(text):
            return
        if self.current is None or self.store.conversation(self.current) is None:
            self.current = None
            cid = self.store.new_conversation("New chat", self.model_path or "").id
            self.current = cid
            self.store.set("last_conversation", cid)
        cid = self.current
        if self.editing is not None:
            self.store.delete_messages_from(cid, self.editing)
            self.cancel_edit()
        conv = self.store.conversation(cid)
        if conv.title == "New chat":
            title = " ".join(text.split())
            self.store.rename_conversation(cid, title[:TITLE_CHARS] + ("…" if len(title) > TITLE_CHARS else ""))
        m = self.store.add_message(cid, "user", text)
        self.save_pending_documents(m.id)
        self.input.take_text()
        self._generate()

    def _generate(self) -> None:
        """Answer the current conversation's last user message."""
        cid = self.current
        self.clear_banner()
        history = self.store.messages(cid)
        answer = self.store.add_message(cid, "assistant", "", state="streaming")
        self.writer = PartialWriter(self.store, answer.id)
        self.count_rid = None            # a pending count would describe the conversation before
        self.active_rid, self.active_mid = self._next_rid(), answer.id
        self.show_messages(history + [answer], busy=True)
        self.input.set_busy(True)
        self.refresh_list(select=cid)
        messages = self.prompt_messages(history)
        self.worker.prompt(self.active_rid, messages, self.sampling_params(),
                           self.documents_request(history, messages))

    def _on_started(self, rid: int, prompt_tokens: int, n_ctx: int) -> None:
        if rid == self.active_rid:
            self.live_used = prompt_tokens
            self.set_context_meter(prompt_tokens, n_ctx)

    def _on_token(self, rid: int, piece: str) -> None:
        if rid != self.active_rid:
            return
        if self.reading.isVisible():
            self.hide_reading()
        self.writer.add(piece)
        self.chat.update_text(self.active_mid, self.writer.text)
        self.live_used += 1                    # about one piece per token; exact at the end
        if self.live_used <= self.meter.maximum():
            self.meter.setValue(self.live_used)

    def _on_prompt_progress(self, rid: int, done: int, total: int) -> None:
        self.show_reading(rid, done, total)

    def _on_done(self, rid: int, text: str, stats: dict) -> None:
        if stats.get("stop_reason") == "count":
            if rid == self.count_rid and not self.busy:
                self.set_context_meter(stats["used"], stats["n_ctx"])
            return
        if rid in self.stopped_rids:          # stopped earlier: keep the text shown, add the stats
            mid = self.stopped_rids.pop(rid)
            self.store.update_message(mid, stats=stats)
            self.chat.update_text(mid, self.chat.message(mid).content if self.chat.message(mid) else "",
                                  stats=stats, now=True)
            return
        if rid != self.active_rid:
            return
        state = "stopped" if stats.get("stop_reason") == "cancelled" else "complete"
        self.writer.text = text
        self._finish(state, stats)
        self.note_saved_state(stats)
        self.set_context_meter(stats.get("used", 0), stats.get("n_ctx", self.n_ctx))

    def _on_error(self, rid: int, kind: str, message: str) -> None:
        if rid != self.active_rid:
            return
        mid, cid = self.active_mid, self.current
        if self.writer.text:
            self._finish("error", {})
        else:
            self.writer = None
            self.active_rid = self.active_mid = None
            self.store.delete_messages_from(cid, mid)
            self.show_messages(self.store.messages(cid))
            self.input.set_busy(False)
            self.hide_reading()
        hint = {"context": " Start a new chat (Ctrl+N), edit an earlier message, or raise the context "
                           "size in Settings (Ctrl+,).",
                "nomodel": "", "memory": ""}.get(kind, "")
        if kind == "context" and cid is not None:        # show how full it is now
            self.count_rid = self._next_rid()
            self.worker.count(self.count_rid, self.prompt_messages(self.store.messages(cid)))
        message = message[:1].upper() + message[1:]
        self.show_banner(message.rstrip(".") + "." + hint)

    def _finish(self, state: str, stats: dict) -> None:
        self.hide_reading()
        self.writer.finish(state, stats)
        self.chat.busy = False
        self.chat.update_text(self.active_mid, self.writer.text, state=state, stats=stats, now=True)
        self.active_rid = self.active_mid = None
        self.writer = None
        self.input.set_busy(False)

    def stop(self) -> None:
        """Halt the answer now: the view and the store stop here; the worker ends at its next
        token or prefill chunk and its late events are ignored."""
        if not self.busy:
            return
        self.stop_requested_at = time.perf_counter()
        rid, mid = self.active_rid, self.active_mid
        self.worker.stop(rid)
        self.stopped_rids[rid] = mid
        self._finish("stopped", {"stop_reason": "cancelled"})

    # --- regenerate / edit --------------------------------------------------------------------
    def regenerate(self) -> None:
        if self.busy or self.current is None:
            return
        msgs = self.store.messages(self.current)
        if not msgs:
            return
        if msgs[-1].role == "assistant":
            self.store.delete_messages_from(self.current, msgs[-1].id)
            msgs = msgs[:-1]
        if msgs and msgs[-1].role == "user":
            self._generate()

    def start_edit(self, mid: int) -> None:
        m = self.chat.message(mid)
        if m is None or m.role != "user" or self.busy:
            return
        self.editing = mid
        self.input.set_editing(m.content)
        self.attach_rows(self.store.attachments(mid))      # its documents come along

    def cancel_edit(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.input.set_editing(None)
            self.input.take_text()

    def copy_last_answer(self) -> None:
        from PySide6.QtGui import QGuiApplication

        m = self.chat.last_answer()
        if m is not None and m.content:
            QGuiApplication.clipboard().setText(m.content)
            self.statusBar().showMessage("Copied the last answer", 2000)
