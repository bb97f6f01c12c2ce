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
