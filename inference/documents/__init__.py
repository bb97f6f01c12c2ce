"""Documents: files -> text, the prompt that carries them, whether they fit, and reading them
once (saved states with checkpoints, reused by follow-up questions and new conversations).

No Qt here. The app's attach/preview UI and `lectern extract` / `lectern chat --attach` use it.

Typical use (app/cli/chat_documents.py does exactly this):
    docs, errors = extract_paths(paths)        # chip: d.name, d.pages, d.chars, count_tokens(engine, d.text)
    tokens, keep = chat_tokens(engine, question, docs)
    report = fit_check(engine, len(tokens) + answer_room, n_ctx, available_ram())
    if not report.fits: show report.message (it lists report.remedies)
    store = StateStore(cache_dir() / "states")
    r = read_tokens(session, tokens, store, progress=..., cancel=..., keep_at=keep)
    session.chat(document_messages(question, docs), params)   # its prefill now evaluates nothing
Follow-ups append {"assistant"}, {"user"} messages and call session.chat again. After a restart
or in a new (branched) conversation, read_tokens(new_session, engine.encode_chat(messages),
store) restores the longest saved prefix (the read documents) instead of reading them again.
To keep a conversation's state on disk: store.save(session, kind="conversation", pinned=True)
(never pruned until store.pin(entry, False) or store.remove(entry)).
"""
from __future__ import annotations

from .errors import (  # noqa: F401
    BinaryFileError, DocumentError, EncryptedPdfError, ReadError, ScannedPdfError, TooLargeError,
    UnsupportedFileError,
)
from .extract import MAX_CHARS, MAX_FILE_BYTES, Document, expand_paths, extract, extract_paths, kind_of  # noqa: F401
from .prompt import build_prompt, chat_tokens, count_tokens, document_messages, layout  # noqa: F401
from .fit import FitReport, available_ram, fit_check, state_size  # noqa: F401
from .reading import checkpoints, read_tokens, restore_best  # noqa: F401
from .state_store import StateEntry, StateStore, prefix_hash  # noqa: F401
