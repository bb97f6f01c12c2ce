"""Errors raised while turning a file into document text. Each message names the file, says what
happened and what to do; none of them is fatal to the app (the file is simply not attached)."""
from __future__ import annotations

from ..errors import LecternError


class DocumentError(LecternError):
    """A file could not be turned into document text."""


class UnsupportedFileError(DocumentError):
    """A file type Lectern does not read (images, archives, old Office formats, ...)."""


class BinaryFileError(DocumentError):
    """A file that is not text in any encoding Lectern knows."""


class ScannedPdfError(DocumentError):
    """A PDF whose pages hold no extractable text (scanned images)."""


class EncryptedPdfError(DocumentError):
    """A PDF that needs a password to open."""


class TooLargeError(DocumentError):
    """A file over the size limit, or whose text is over the character limit."""


class ReadError(DocumentError):
    """A file that cannot be read: missing, no permission, or a damaged PDF/DOCX."""
