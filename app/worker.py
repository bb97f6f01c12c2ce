"""The inference worker: one long-lived QObject on its own QThread that owns the engine.

Slots are commands (load, prompt, unload), queued from the GUI thread and run one after another
here. Signals are events (loading progress, token, done, error), delivered to the GUI thread.
Cancelling cannot wait in the queue behind the work it cancels, so `stop(rid)` and
`cancel_load(lid)` are plain thread-safe methods the GUI calls directly: they record the id, and
the running generation (which checks `cancel` between tokens and prefill chunks) or load (which
checks between its stages) ends at the next boundary.
"""
from __future__ import annotations

import threading
import time
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot

from .qt_compat import emit

LOAD_STAGES = ("checking the file", "reading the model", "preparing the chat template",
               "allocating the context", "ready")


def stats_dict(st, n_ctx: int, seconds: float) -> dict:
    return {
        "prompt_tokens": st.prompt_tokens, "reused_tokens": st.reused_tokens,
        "generated_tokens": st.generated_tokens, "prefill_tokens_per_s": st.prefill_tokens_per_s,
        "tokens_per_s": st.decode_tokens_per_s, "ttft": st.time_to_first_token,
        "stop_reason": st.stop_reason, "seconds": seconds, "n_ctx": n_ctx,
        "used": st.prompt_tokens + st.generated_tokens,
    }


class InferenceWorker(QObject):
    loadProgress = Signal(int, int, int, str)   # load id, step, steps, what
    loaded = Signal(int, object)                  # load id, {path, name, n_ctx, architecture}
    loadFailed = Signal(int, str, str)          # load id, kind (missing|memory|cancelled|error), message
    unloaded = Signal()
    promptProgress = Signal(int, int, int)      # request id, prompt tokens done, to do
    started = Signal(int, int, int)             # request id, prompt tokens, context size
    token = Signal(int, str)                    # request id, text piece
    done = Signal(int, str, object)               # request id, whole answer, stats
    error = Signal(int, str, str)               # request id, kind (context|nomodel|memory|error), message
    measured = Signal(int, object)              # request id, {"doc_tokens": [...], "fit": {...}} or {"error"}

    def __init__(self, ram_bytes: int | None = None):
        super().__init__()
        self.engine = None
        self.session = None
        self.remote = None          # (RemoteBackend, model id) when a remote endpoint answers
        self.path = ""
        self.ram_bytes = ram_bytes
        self._stopped = set()
        self._load_cancelled = set()
        self._lock = threading.Lock()
        self._remote_gen = None     # (rid, RemoteGeneration) while a remote answer streams
        # held while the engine computes; the app's API server (server_control) shares it, so the
        # model and the JIT pool's single job slot serve one caller at a time
        self.engine_lock = threading.Lock()
        self.busy = False
        self.closing = False
        self.states_dir = None      # saved reading states (read once); None: cache_dir()/states
        self._states = None
        self.checkpoint_every = 4096  # tokens between saved checkpoints of a long read

    # --- called directly from any thread --------------------------------------------------------
    def stop(self, rid: int) -> None:
        with self._lock:
            self._stopped.add(int(rid))
            gen = self._remote_gen
        if gen is not None and gen[0] == int(rid):
            gen[1].abort()          # a remote answer may be silent (a long prompt): cut the line

    def cancel_load(self, lid: int) -> None:
        with self._lock:
            self._load_cancelled.add(int(lid))

    def _is_stopped(self, rid: int) -> bool:
        return self.closing or rid in self._stopped

    # --- commands (run on the worker thread) ----------------------------------------------------
    @Slot(int, str, int, str)
    def load(self, lid: int, path: str, n_ctx: int, kv_type: str = "f16") -> None:
        from inference import LecternError
        from inference.engine import Engine
        from inference.kv_cache import check_kv_type
        from inference.models import load_model

        from .library import inspect, total_ram

        steps = len(LOAD_STAGES) - 1

        def stage(i):
            if lid in self._load_cancelled or self.closing:
                raise _Cancelled()
            emit(self.loadProgress, lid, i, steps, LOAD_STAGES[i])

        try:
            stage(0)
            kv_type = check_kv_type(kv_type)          # a bad stored setting: a clear load error
            entry = inspect(path, n_ctx=n_ctx, kv_type=kv_type)
            if entry.error:
                kind = "missing" if "not found" in entry.error else "error"
                emit(self.loadFailed, lid, kind, entry.error)
                return
            ram = self.ram_bytes or total_ram()
            if entry.memory_bytes > 0.9 * ram:
                from inference.model_info import human_bytes

                emit(self.loadFailed, lid, "memory", (
                    f"{entry.name} needs about {human_bytes(entry.memory_bytes)} with a context of "
                    f"{n_ctx:,} tokens, but this machine has {human_bytes(ram)} of RAM. Pick a smaller "
                    "model or a smaller context size in Settings."))
                return
            stage(1)
            engine = Engine(load_model(path, kv_type=kv_type))
            stage(2)
            _ = engine.template
            stage(3)
            n = min(int(n_ctx), engine.n_ctx_train) if n_ctx else None
            session = engine.session(n)
            if lid in self._load_cancelled:
                raise _Cancelled()
            self.engine, self.session, self.path = engine, session, str(path)
            self.remote = None
            emit(self.loadProgress, lid, steps, steps, LOAD_STAGES[-1])
            emit(self.loaded, lid, {"path": str(path), "name": entry.name, "n_ctx": session.n_ctx,
                                   "architecture": entry.architecture, "kv_type": engine.kv_type})
        except _Cancelled:
            emit(self.loadFailed, lid, "cancelled", "loading was cancelled")
        except MemoryError:
            emit(self.loadFailed, lid, "memory", "out of memory while loading the model; pick a smaller "
                                                "model or context size")
        except FileNotFoundError as e:
            emit(self.loadFailed, lid, "missing", str(e))
        except LecternError as e:
            emit(self.loadFailed, lid, "error", str(e))
        except Exception as e:  # noqa: BLE001 (any failure must reach the window, not kill the thread)
            traceback.print_exc()
            emit(self.loadFailed, lid, "error", f"{type(e).__name__}: {e}")

    @Slot(int, str, object)
    def load_remote(self, lid: int, path: str, ep: dict) -> None:
        """Answer from now on through a remote OpenAI-compatible endpoint (app.remote_models)."""
        from inference.remote import RemoteBackend, RemoteError

        try:
            backend = RemoteBackend(ep["url"], ep.get("api_key") or None, ep.get("timeout", 60.0))
        except RemoteError as e:
            emit(self.loadFailed, lid, "error", str(e))
            return
        self.engine = self.session = None
        self.remote, self.path = (backend, ep["model"]), path
        emit(self.loaded, lid, {"path": path, "name": f"{ep['model']} (remote)", "n_ctx": 0,
                                "architecture": f"remote {ep['url']}"})

    @Slot()
    def unload(self) -> None:
        self.engine = self.session = self.remote = None
        self.path = ""
        emit(self.unloaded)

    def state_store(self):
        from inference.documents import StateStore
        from inference.paths import cache_dir

        d = self.states_dir or (cache_dir() / "states")
        if self._states is None or str(self._states[0]) != str(d):
            self._states = (d, StateStore(d))
        return self._states[1]

    @Slot(int, object, object, object)
    def prompt(self, rid: int, messages: list, params: dict, docs: dict | None = None) -> None:
        """Answer the last message of `messages` ([{role, content}]) with sampling `params`.

        docs (a conversation with documents): {"index": the message holding the latest ones,
        "ends": where they end in it (first question only)}; the prompt is then read once
        through the state store (worker_documents)."""
        from inference import ContextOverflowError, LecternError
        from inference.sampling import SamplingParams

        if self._is_stopped(rid):
            emit(self.done, rid, "", {"stop_reason": "cancelled", "generated_tokens": 0})
            return
        if self.remote is not None:
            return self._prompt_remote(rid, messages, params)
        if self.session is None:
            emit(self.error, rid, "nomodel", "No model is loaded. Pick one in the toolbar.")
            return
        t0 = time.perf_counter()
        self.busy = True
        try:
            sp = SamplingParams(**params)
            cancel = lambda: self._is_stopped(rid)          # noqa: E731
            progress = lambda d, n: emit(self.promptProgress, rid, d, n)   # noqa: E731
            read = None
            with self.engine_lock:
                tokens = self.engine.encode_chat(messages)
                gen = self.session.generate(tokens, sp, cancel=cancel, progress=progress)
                emit(self.started, rid, len(gen.prompt), self.session.n_ctx)
                if docs is not None:
                    read = self._read_once(tokens, messages, docs, progress, cancel)
                if read is None or not read.cancelled:
                    for piece in gen:
                        emit(self.token, rid, piece)
            stats = stats_dict(gen.stats, self.session.n_ctx, time.perf_counter() - t0)
            if read is not None:
                stats.update(reused_tokens=read.n_reused, state_bytes=read.state_bytes,
                             prefill_tokens_per_s=read.n_evaluated / read.seconds if read.seconds else 0.0,
                             ttft=stats["ttft"] + read.seconds,
                             stop_reason="cancelled" if read.cancelled else stats["stop_reason"])
            emit(self.done, rid, gen.text, stats)
        except ContextOverflowError as e:
            emit(self.error, rid, "context", str(e))
        except MemoryError:
            emit(self.error, rid, "memory", "out of memory while answering; use a smaller context size")
        except (LecternError, ValueError) as e:
            emit(self.error, rid, "error", str(e))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            emit(self.error, rid, "error", f"{type(e).__name__}: {e}")
        finally:
            self.busy = False
            with self._lock:
                self._stopped.discard(rid)

    def _read_once(self, tokens, messages, docs, progress, cancel):
        """Read the prompt through the state store; a cancelled read ends the generation too."""
        from . import worker_documents as wd

        keep = wd.doc_keeps(self.engine, tokens, messages, docs["index"], docs.get("ends") or [])
        r = wd.read_prompt(self.session, tokens, self.state_store(), keep, progress, cancel,
                           every=self.checkpoint_every)
        return r

    def _prompt_remote(self, rid: int, messages: list, params: dict) -> None:
        from inference import LecternError
        from inference.sampling import SamplingParams

        backend, model = self.remote
        t0 = time.perf_counter()
        self.busy = True
        try:
            gen = backend.chat(messages, SamplingParams(**params), model=model,
                               cancel=lambda: self._is_stopped(rid))
            with self._lock:
                self._remote_gen = (rid, gen)
            emit(self.started, rid, 0, 0)
            for piece in gen:
                emit(self.token, rid, piece)
            emit(self.done, rid, gen.text, stats_dict(gen.stats, 0, time.perf_counter() - t0))
        except (LecternError, ValueError) as e:      # RemoteError: connection, timeout, HTTP
            emit(self.error, rid, "error", str(e))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            emit(self.error, rid, "error", f"{type(e).__name__}: {e}")
        finally:
            self.busy = False
            with self._lock:
                self._stopped.discard(rid)
                self._remote_gen = None

    @Slot(int, object)
    def count(self, rid: int, messages: list) -> None:
        """How many tokens the conversation takes (for the context meter); reported as `done`
        with stats {"used", "n_ctx", "stop_reason": "count"}."""
        if self.engine is None or not messages:
            return
        try:
            n = len(self.engine.encode_chat(messages, add_generation_prompt=False))
        except Exception:  # noqa: BLE001 (only a meter)
            return
        emit(self.done, rid, "", {"used": n, "n_ctx": self.session.n_ctx, "stop_reason": "count"})


    @Slot(int, object, object, int)
    def measure(self, rid: int, texts: list, messages: list, max_tokens: int) -> None:
        """Token counts of the attached documents and whether the prompt fits (measured)."""
        from inference.documents import available_ram

        from . import worker_documents as wd

        if self.engine is None:
            emit(self.measured, rid, {"error": "no local model is loaded"})
            return
        try:
            with self.engine_lock:
                r = wd.measure(self.engine, self.session.n_ctx, texts, messages, max_tokens,
                               self.ram_bytes or available_ram())
        except Exception as e:  # noqa: BLE001 (a meter: the window shows the reason)
            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {e}"}
        emit(self.measured, rid, r)


class _Cancelled(Exception):
    pass


class WorkerThread(QObject):
    """Owns the QThread and the worker; `call` queues a command onto the worker thread."""

    _load = Signal(int, str, int, str)
    _load_remote = Signal(int, str, object)
    _prompt = Signal(int, object, object, object)
    _count = Signal(int, object)
    _measure = Signal(int, object, object, int)
    _unload = Signal()

    def __init__(self, ram_bytes: int | None = None, parent=None):
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("lectern-inference")
        self.worker = InferenceWorker(ram_bytes)
        self.worker.moveToThread(self.thread)
        self._load.connect(self.worker.load)
        self._load_remote.connect(self.worker.load_remote)
        self._prompt.connect(self.worker.prompt)
        self._count.connect(self.worker.count)
        self._measure.connect(self.worker.measure)
        self._unload.connect(self.worker.unload)
        self.thread.start()

    def load(self, lid: int, path: str, n_ctx: int, kv_type: str = "f16") -> None:
        emit(self._load, lid, str(path), int(n_ctx), str(kv_type))

    def load_remote(self, lid: int, path: str, ep: dict) -> None:
        emit(self._load_remote, lid, str(path), dict(ep))

    def prompt(self, rid: int, messages: list, params: dict, docs: dict | None = None) -> None:
        emit(self._prompt, rid, list(messages), dict(params), dict(docs) if docs else None)

    def measure(self, rid: int, texts: list[str], messages: list, max_tokens: int) -> None:
        emit(self._measure, rid, list(texts), list(messages), int(max_tokens or 0))

    def count(self, rid: int, messages: list) -> None:
        emit(self._count, rid, list(messages))

    def unload(self) -> None:
        emit(self._unload)

    def stop(self, rid: int) -> None:
        self.worker.stop(rid)

    def cancel_load(self, lid: int) -> None:
        self.worker.cancel_load(lid)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop whatever runs and end the thread (the current token finishes first)."""
        self.worker.closing = True
        self.thread.quit()
        self.thread.wait(timeout_ms)
