"""Files and folders -> Documents (extracted text plus what the attachment chip shows).

Kinds by extension: text, markdown, code (source and config files), html, pdf, docx, csv, json.
A file with an unknown extension is read as text if it decodes as text, else refused as binary.
Known binary types (images, archives, old Office formats, ...) are refused without reading.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import formats
from .decode import decode_bytes
from .errors import BinaryFileError, DocumentError, ReadError, TooLargeError, UnsupportedFileError

MAX_FILE_BYTES = 64 << 20      # files over this are refused before reading
MAX_CHARS = 16_000_000         # extracted text over this is refused (~4M tokens)
MAX_FOLDER_FILES = 10_000      # a folder with more files is refused (probably the wrong folder)

TEXT = {".txt", ".text", ".log", ".rst", ".adoc", ".org", ".tex", ".srt", ".vtt", ".nfo"}
MARKDOWN = {".md", ".markdown", ".mdown", ".mkd"}
CODE = {
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".c", ".h", ".cc", ".cpp", ".cxx",
    ".hpp", ".hh", ".java", ".kt", ".kts", ".go", ".rs", ".rb", ".php", ".cs", ".swift", ".m",
    ".mm", ".scala", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd", ".sql", ".r",
    ".lua", ".pl", ".pm", ".hs", ".ml", ".mli", ".ex", ".exs", ".erl", ".clj", ".dart", ".jl",
    ".zig", ".nim", ".v", ".vhd", ".f90", ".asm", ".s", ".yaml", ".yml", ".toml", ".ini", ".cfg",
    ".conf", ".xml", ".css", ".scss", ".sass", ".less", ".vue", ".svelte", ".proto", ".graphql",
    ".cmake", ".mk", ".gradle", ".diff", ".patch", ".ipynb", ".tf", ".nix", ".el", ".vim",
}
HTML = {".html", ".htm", ".xhtml"}
BINARY = {
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ico", ".heic", ".svgz",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar", ".zst", ".exe", ".dll", ".so",
    ".dylib", ".bin", ".o", ".a", ".class", ".jar", ".pyc", ".whl", ".iso", ".dmg", ".mp3",
    ".wav", ".flac", ".ogg", ".m4a", ".mp4", ".mkv", ".mov", ".avi", ".webm", ".ttf", ".otf",
    ".woff", ".woff2", ".gguf", ".safetensors", ".pt", ".npz", ".npy", ".sqlite", ".db",
}
OFFICE = {".doc": ".docx", ".xls": ".csv", ".xlsx": ".csv", ".ppt": ".pdf", ".pptx": ".pdf",
          ".odt": ".docx", ".ods": ".csv", ".odp": ".pdf", ".rtf": ".docx", ".pages": ".pdf",
          ".epub": ".pdf"}
Progress = Callable[[int, int], None]


@dataclass
class Document:
    path: str
    name: str                 # shown in the prompt header and on the chip
    kind: str                 # text | markdown | code | html | pdf | docx | csv | json
    text: str
    pages: int | None = None
    chars: int = 0
    encoding: str | None = None

    def __post_init__(self):
        self.chars = len(self.text)


def kind_of(path: Path) -> str | None:
    ext = path.suffix.lower()
    for kind, exts in (("text", TEXT), ("markdown", MARKDOWN), ("code", CODE), ("html", HTML)):
        if ext in exts:
            return kind
    return {".pdf": "pdf", ".docx": "docx", ".csv": "csv", ".tsv": "csv", ".json": "json"}.get(ext)


def extract(path: str | os.PathLike, name: str | None = None, max_bytes: int | None = None,
            max_chars: int | None = None, progress: Progress | None = None) -> Document:
    """One file -> Document. Raises a DocumentError subclass saying what to do instead."""
    p = Path(path)
    name = name or p.name
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    max_chars = MAX_CHARS if max_chars is None else max_chars
    ext = p.suffix.lower()
    if ext in OFFICE:
        raise UnsupportedFileError(f"{name}: {ext} files are not supported; save it as "
                                   f"{OFFICE[ext]} (or PDF) and attach that")
    if ext in BINARY:
        raise UnsupportedFileError(f"{name}: {ext} files hold no text Lectern can read; attach "
                                   "text, Markdown, source code, HTML, PDF, DOCX, CSV or JSON files")
    size = _size(p, name)
    if size > max_bytes:
        raise TooLargeError(f"{name} is {_mib(size)}, over the {_mib(max_bytes)} limit for one "
                            "file; split it or attach only the part you need")
    kind = kind_of(p) or "text"
    if kind == "pdf":
        text, pages = formats.pdf_text(p, progress)
        doc = Document(str(p), name, kind, text, pages)
    elif kind == "docx":
        text, pages = formats.docx_text(p)
        doc = Document(str(p), name, kind, text, pages)
    else:
        doc = _plain(p, name, kind)
    if doc.chars > max_chars:
        raise TooLargeError(f"{name} holds {doc.chars:,} characters of text, over the limit of "
                            f"{max_chars:,}; split it or attach only the part you need")
    return doc


def _size(p: Path, name: str) -> int:
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ReadError(f"{name}: file not found ({p}); check the path") from None
    except OSError as e:
        raise ReadError(f"{name} cannot be read ({e.strerror or e}); check its permissions") from None
    if not p.is_file():
        raise ReadError(f"{name} is not a regular file; attach files or folders")
    return st.st_size


def _read_bytes(p: Path, name: str) -> bytes:
    try:
        return p.read_bytes()
    except OSError as e:
        raise ReadError(f"{name} cannot be read ({e.strerror or e}); check its permissions") from None


def _plain(p: Path, name: str, kind: str) -> Document:
    raw = _read_bytes(p, name)
    text, enc = decode_bytes(raw, name)
    if kind == "html":
        declared = formats.html_charset(raw)
        if enc not in ("utf-8", "utf-8-sig") and declared and not enc.startswith("utf-"):
            try:
                text, enc = raw.decode(declared), declared
            except (LookupError, UnicodeDecodeError):
                pass
        text = formats.html_text(text)
    elif kind == "json":
        text = _pretty_json(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Document(str(p), name, kind, text, None, encoding=enc)


def _pretty_json(text: str) -> str:
    """Indented JSON (non-ASCII kept); text that does not parse is kept as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


# --- several files and folders ------------------------------------------------------------------
def expand_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[Path, str]], list]:
    """Files to read as (path, display name) in a stable order, and errors for missing paths.
    Folders are walked recursively in sorted order, hidden files and folders skipped, symlinked
    folders not followed; a file's display name is its path relative to the folder's parent."""
    files: list[tuple[Path, str]] = []
    errors: list[tuple[str, DocumentError]] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = _walk(p)
            if len(found) > MAX_FOLDER_FILES:
                errors.append((str(p), TooLargeError(
                    f"{p.name} holds {len(found):,} files, over the limit of {MAX_FOLDER_FILES:,}; "
                    "attach a smaller folder")))
                continue
            items = [(f, f.relative_to(p.parent).as_posix()) for f in found]
        elif p.exists() or p.is_symlink():
            items = [(p, p.name)]
        else:
            errors.append((str(p), ReadError(f"{p.name}: file not found ({p}); check the path")))
            continue
        for f, name in items:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append((f, name))
    return files, errors


def _walk(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return sorted(out, key=lambda f: f.relative_to(root).parts)


def extract_paths(paths: Iterable[str | os.PathLike], max_bytes: int | None = None,
                  max_chars: int | None = None, progress: Progress | None = None,
                  cancel: Callable[[], bool] | None = None
                  ) -> tuple[list[Document], list[tuple[str, DocumentError]]]:
    """(documents, [(path, error)]) for files and folders; a file that fails is skipped with
    its error, the others are still read. progress(files done, files total)."""
    files, errors = expand_paths(paths)
    docs = []
    for i, (f, name) in enumerate(files):
        if cancel is not None and cancel():
            break
        try:
            docs.append(extract(f, name, max_bytes, max_chars))
        except DocumentError as e:
            errors.append((str(f), e))
        if progress:
            progress(i + 1, len(files))
    return docs, errors


__all__ = ["Document", "extract", "extract_paths", "expand_paths", "kind_of", "MAX_FILE_BYTES",
           "MAX_CHARS", "BinaryFileError"]
