"""Text out of the structured formats: PDF (pypdf), DOCX (the zip's word/document.xml), HTML.

PDF text gets one marker line per page, "--- page N ---", so answers can cite pages.
DOCX: paragraphs in body order, headings as "#"-prefixed lines, tables one row per line with
cells joined by " | ". HTML: script/style/head content dropped, block elements end lines,
list items start with "- ", table cells joined by " | ", <pre> kept verbatim.
"""
from __future__ import annotations

import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

from .errors import EncryptedPdfError, ReadError, ScannedPdfError, TooLargeError

Progress = Callable[[int, int], None]


# --- PDF ----------------------------------------------------------------------------------------
def pdf_text(path: Path, progress: Progress | None = None) -> tuple[str, int]:
    """(text with page markers, page count)."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)   # pypdf warns on every quirk it repairs
    name = path.name
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not _decrypt(reader):
            raise EncryptedPdfError(f"{name} is encrypted with a password; open it in a PDF viewer "
                                    "and save or print an unprotected copy, then attach that")
        n = len(reader.pages)
        parts = []
        for i, page in enumerate(reader.pages):
            parts.append(f"--- page {i + 1} ---\n{_clean(page.extract_text() or '')}")
            if progress:
                progress(i + 1, n)
    except (EncryptedPdfError, ScannedPdfError):
        raise
    except (FileNotDecryptedError, DependencyError) as e:
        raise EncryptedPdfError(f"{name} is encrypted in a way Lectern cannot open ({e}); save an "
                                "unprotected copy from a PDF viewer and attach that") from None
    except (PdfReadError, ValueError, KeyError, TypeError, IndexError, AttributeError,
            RecursionError, OSError, AssertionError, ZeroDivisionError) as e:
        raise ReadError(f"{name} is a damaged PDF that cannot be read ({type(e).__name__}: {e}); "
                        "re-export it from the program that made it") from None
    body = "\n\n".join(parts).rstrip()
    if not re.sub(r"--- page \d+ ---|\s", "", body):
        raise ScannedPdfError(f"{name} has no extractable text ({n} page{'s' * (n != 1)}); it looks "
                              "scanned: run OCR on it first (e.g. ocrmypdf) and attach the result")
    return body, n


def _decrypt(reader) -> bool:
    """Many PDFs are 'encrypted' with an empty user password (only editing is restricted)."""
    from pypdf import PasswordType

    return reader.decrypt("") != PasswordType.NOT_DECRYPTED


def _clean(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()


# --- DOCX ---------------------------------------------------------------------------------------
W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
MAX_XML_BYTES = 512 << 20     # uncompressed document.xml (zip bombs are refused)


def docx_text(path: Path) -> tuple[str, int | None]:
    """(text, page count from docProps/app.xml if Word wrote one)."""
    name = path.name
    try:
        with zipfile.ZipFile(path) as zf:
            root = ElementTree.fromstring(_member(zf, "word/document.xml", name))
            pages = _docx_pages(zf)
    except zipfile.BadZipFile:
        raise ReadError(f"{name} is not a valid .docx file (not a zip archive); re-save it from "
                        "Word or LibreOffice") from None
    except ElementTree.ParseError as e:
        raise ReadError(f"{name} is a damaged .docx file ({e}); re-save it from Word or "
                        "LibreOffice") from None
    body = root.find(f"{W}body")
    lines = _blocks(body) if body is not None else []
    return "\n".join(lines).strip(), pages


def _member(zf: zipfile.ZipFile, member: str, name: str) -> bytes:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise ReadError(f"{name} is not a Word document ({member} is missing); re-save it as "
                        ".docx from Word or LibreOffice") from None
    if info.file_size > MAX_XML_BYTES:
        raise TooLargeError(f"{name}: its text part is {info.file_size >> 20} MiB uncompressed, "
                            f"over the {MAX_XML_BYTES >> 20} MiB limit; split the document")
    with zf.open(info) as f:
        return f.read(MAX_XML_BYTES + 1)


def _docx_pages(zf: zipfile.ZipFile) -> int | None:
    try:
        root = ElementTree.fromstring(zf.read("docProps/app.xml")[:1 << 20])
    except (KeyError, ElementTree.ParseError):
        return None
    for el in root.iter():
        if el.tag.endswith("}Pages") and (el.text or "").strip().isdigit():
            return int(el.text.strip())
    return None


def _blocks(parent) -> list[str]:
    lines = []
    for el in parent:
        if el.tag == f"{W}p":
            lines.append(_paragraph(el))
        elif el.tag == f"{W}tbl":
            for row in el.iter(f"{W}tr"):
                cells = [" ".join(filter(None, _blocks(tc))).strip() for tc in row.findall(f"{W}tc")]
                lines.append(" | ".join(cells))
        elif el.tag == f"{W}sdt":            # content controls wrap ordinary paragraphs
            content = el.find(f"{W}sdtContent")
            if content is not None:
                lines.extend(_blocks(content))
    return lines


def _paragraph(p) -> str:
    out = []
    for el in p.iter():
        if el.tag == f"{W}t" and el.text:
            out.append(el.text)
        elif el.tag == f"{W}tab":
            out.append("\t")
        elif el.tag in (f"{W}br", f"{W}cr"):
            out.append("\n")
    text = "".join(out)
    style = p.find(f"{W}pPr/{W}pStyle")
    level = _heading_level(style.get(f"{W}val", "") if style is not None else "")
    return ("#" * level + " " + text) if level and text else text


def _heading_level(style: str) -> int:
    m = re.fullmatch(r"(?i)heading\s*(\d)", style)
    return int(m.group(1)) if m else (1 if style.lower() == "title" else 0)


# --- HTML ---------------------------------------------------------------------------------------
_BLOCK = {"p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "h1", "h2",
          "h3", "h4", "h5", "h6", "ul", "ol", "table", "blockquote", "figure", "figcaption",
          "dl", "dt", "dd", "hr", "address", "form", "fieldset", "details", "summary", "caption"}
_SKIP = {"script", "style", "noscript", "template", "svg", "head"}


class _HTMLText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        if tag in _SKIP:
            self.skip += 1
        elif tag == "pre":
            self.pre += 1
            self.out.append("\n\x00")     # the NUL keeps the first line's indentation
        elif tag in _BLOCK or tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag == "tr":
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append(" | ")
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and not self.skip:
            self.out.append("#" * int(tag[1]) + " ")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.out.append("\n")
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
        if self.skip:
            return
        # <pre> newlines travel as NUL so the line clean-up below leaves their indentation alone
        self.out.append(data.replace("\n", "\x00") if self.pre else re.sub(r"\s+", " ", data))


def html_text(source: str) -> str:
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    lines = [re.sub(r"^\|\s*", "", line.strip()) for line in "".join(parser.out).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip().replace("\x00", "\n")
    title = re.sub(r"\s+", " ", "".join(parser.title)).strip()
    if title and not text.startswith(title):
        text = f"# {title}\n\n{text}"
    return text


def html_charset(raw: bytes) -> str | None:
    """The charset a <meta> tag declares in the first 4 KiB, if any."""
    m = re.search(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_\-]+)", raw[:4096], re.I)
    return m.group(1).decode("ascii").lower() if m else None
