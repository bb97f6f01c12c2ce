"""Documents: files -> text, the prompt that carries them, whether they fit, and reading them
once (saved states with checkpoints, reused by follow-up questions and new conversations).

No Qt here. The app's attach/preview UI and `lectern extract` / `lectern chat --attach` use it.
"""
from __future__ import annotations

from .errors import (  # noqa: F401
    BinaryFileError, DocumentError, EncryptedPdfError, ReadError, ScannedPdfError, TooLargeError,
    UnsupportedFileError,
)
from .extract import MAX_CHARS, MAX_FILE_BYTES, Document, expand_paths, extract, extract_paths, kind_of  # noqa: F401
from .prompt import build_prompt, chat_tokens, document_messages, layout  # noqa: F401
from .fit import FitReport, available_ram, fit_check, state_size  # noqa: F401
from .reading import checkpoints, read_tokens, restore_best  # noqa: F401
from .state_store import StateEntry, StateStore, prefix_hash  # noqa: F401
