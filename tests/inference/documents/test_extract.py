"""extract()/extract_paths() on documents the tests write: every format, encoding and refusal."""
from __future__ import annotations

import json
import os
import zipfile

import pytest

from inference.documents import (
    BinaryFileError, DocumentError, EncryptedPdfError, ReadError, ScannedPdfError, TooLargeError,
    UnsupportedFileError, extract, extract_paths,
)
from tests.inference.documents.makers import (
    docx_paragraph, docx_table, encrypt_pdf, write_docx, write_pdf,
)

PAGES = [[f"Page {p} line {i}: the annual figures (in euros) rose." for i in range(3)]
         for p in range(1, 5)]


def test_a_multi_page_pdf_gives_every_line_under_its_page_marker(tmp_path):
    doc = extract(write_pdf(tmp_path / "report.pdf", PAGES))
    assert (doc.kind, doc.pages, doc.name, doc.encoding) == ("pdf", 4, "report.pdf", None)
    chunks = doc.text.split("--- page ")
    assert chunks[0] == ""
    for p, chunk in enumerate(chunks[1:], 1):
        head, body = chunk.split(" ---\n", 1)
        assert int(head) == p
        assert body.strip().splitlines() == PAGES[p - 1]
    assert doc.chars == len(doc.text)


def test_a_pdf_with_an_empty_user_password_opens(tmp_path):
    src = write_pdf(tmp_path / "plain.pdf", PAGES[:2])
    doc = extract(encrypt_pdf(src, tmp_path / "locked-edit.pdf", user_password=""))
    assert doc.text == extract(src).text and doc.pages == 2


def test_a_password_protected_pdf_is_refused_with_what_to_do(tmp_path):
    src = write_pdf(tmp_path / "plain.pdf", PAGES[:2])
    with pytest.raises(EncryptedPdfError, match="secret.pdf is encrypted.*unprotected copy"):
        extract(encrypt_pdf(src, tmp_path / "secret.pdf", user_password="hunter2"))


def test_a_pdf_without_text_is_reported_as_scanned(tmp_path):
    with pytest.raises(ScannedPdfError, match="scan.pdf has no extractable text .3 pages.*OCR"):
        extract(write_pdf(tmp_path / "scan.pdf", [[], [], []]))


@pytest.mark.parametrize("data", [b"%PDF-1.4\n" + b"garbage " * 50, b"", b"%PDF-1.7\n1 0 obj\n<<"])
def test_a_damaged_pdf_is_a_read_error(tmp_path, data):
    (tmp_path / "broken.pdf").write_bytes(data)
    with pytest.raises(DocumentError, match="broken.pdf"):
        extract(tmp_path / "broken.pdf")


def test_a_docx_gives_headings_paragraphs_and_table_rows_in_order(tmp_path):
    body = (docx_paragraph("Quarterly report", "Heading1") + docx_paragraph("Sales & costs <rose>.")
            + docx_table([["Region", "Sales"], ["North", "12"], ["South", "7"]])
            + docx_paragraph("Outlook", "Heading2") + docx_paragraph("Stable."))
    doc = extract(write_docx(tmp_path / "q.docx", body, pages=2))
    assert doc.kind == "docx" and doc.pages == 2
    assert doc.text.splitlines() == ["# Quarterly report", "Sales & costs <rose>.", "Region | Sales",
                                     "North | 12", "South | 7", "## Outlook", "Stable."]


def test_a_docx_that_is_not_a_word_zip_is_a_read_error(tmp_path):
    (tmp_path / "fake.docx").write_bytes(b"PK not really a zip")
    with pytest.raises(ReadError, match="fake.docx is not a valid .docx"):
        extract(tmp_path / "fake.docx")
    with zipfile.ZipFile(tmp_path / "other.docx", "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ReadError, match="word/document.xml is missing"):
        extract(tmp_path / "other.docx")
    with zipfile.ZipFile(tmp_path / "badxml.docx", "w") as zf:
        zf.writestr("word/document.xml", "<w:document><unclosed>")
    with pytest.raises(ReadError, match="damaged .docx"):
        extract(tmp_path / "badxml.docx")


@pytest.mark.parametrize("encoding,label", [
    ("cp1252", "cp1252"), ("utf-16", "utf-16"), ("utf-8-sig", "utf-8-sig"), ("utf-32", "utf-32"),
    ("utf-16-le", "utf-16-le"), ("cp1251", "cp1251"), ("utf-8", "utf-8"),
])
def test_text_in_each_encoding_is_decoded_and_the_encoding_reported(tmp_path, encoding, label):
    text = {"cp1251": "Отчёт за квартал: выручка выросла на двенадцать процентов.\n"}.get(
        encoding, "Le café coûte 3 € — très cher, déjà noté.\nZweite Zeile: Größe, Müller.\n")
    (tmp_path / "notes.txt").write_bytes(text.encode(encoding))
    doc = extract(tmp_path / "notes.txt")
    assert (doc.text, doc.encoding, doc.kind) == (text, label, "text")


def test_html_keeps_text_and_structure_and_drops_scripts_and_styles(tmp_path):
    (tmp_path / "page.html").write_text(
        "<html><head><title>Doc</title><style>p{color:red}</style><script>alert('x')</script>"
        "</head><body><h2>Intro</h2><p>First &amp; <b>bold</b>\n  paragraph.</p><p>Second.</p>"
        "<ul><li>one</li><li>two</li></ul><table><tr><th>k</th><th>v</th></tr><tr><td>a</td>"
        "<td>1</td></tr></table><pre>  indented\n    code</pre></body></html>", encoding="utf-8")
    doc = extract(tmp_path / "page.html")
    assert doc.kind == "html"
    assert "alert" not in doc.text and "color" not in doc.text
    assert doc.text.split("\n\n") == ["# Doc", "## Intro", "First & bold paragraph.", "Second.",
                                      "- one\n- two", "k | v\na | 1", "\n  indented\n    code"]


def test_json_is_pretty_printed_and_csv_code_markdown_kept(tmp_path):
    (tmp_path / "d.json").write_text('{"b": [1, 2], "name": "Zoë"}', encoding="utf-8")
    doc = extract(tmp_path / "d.json")
    assert doc.kind == "json" and json.loads(doc.text) == {"b": [1, 2], "name": "Zoë"}
    assert doc.text == json.dumps({"b": [1, 2], "name": "Zoë"}, indent=2, ensure_ascii=False)
    for name, kind in (("t.csv", "csv"), ("m.py", "code"), ("r.md", "markdown"), ("Makefile", "text")):
        (tmp_path / name).write_bytes(b"a,b\r\n1,2\r\n")
        doc = extract(tmp_path / name)
        assert (doc.kind, doc.text) == (kind, "a,b\n1,2\n")


def test_binary_and_unsupported_files_are_refused_with_advice(tmp_path):
    (tmp_path / "data.weird").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(BinaryFileError, match="data.weird is a binary file"):
        extract(tmp_path / "data.weird")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(UnsupportedFileError, match="photo.png: .png files hold no text"):
        extract(tmp_path / "photo.png")
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(UnsupportedFileError, match=r"save it as \.docx"):
        extract(tmp_path / "old.doc")


def test_size_and_character_limits(tmp_path):
    (tmp_path / "big.txt").write_text("x" * 5000)
    with pytest.raises(TooLargeError, match="big.txt is 5,000 bytes, over the 4,096 bytes limit"):
        extract(tmp_path / "big.txt", max_bytes=4096)
    with pytest.raises(TooLargeError, match="5,000 characters of text, over the limit of 1,000"):
        extract(tmp_path / "big.txt", max_chars=1000)
    assert extract(tmp_path / "big.txt", max_bytes=5000, max_chars=5000).chars == 5000


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ReadError, match="nope.txt: file not found"):
        extract(tmp_path / "nope.txt")
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(ReadError, match="folder.txt is not a regular file"):
        extract(tmp_path / "folder.txt")


def test_folders_expand_recursively_in_a_stable_order_skipping_hidden_and_reporting_binaries(tmp_path):
    root = tmp_path / "project"
    for rel, data in {"b.txt": b"bee", "a.md": b"# A", "sub/z.py": b"print(1)", "sub/blob.bin": b"\0\1",
                      ".git/config": b"[core]", "sub/.hidden.txt": b"no", "sub/deeper/c.csv": b"1,2"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (tmp_path / "single.txt").write_text("one file")
    docs, errors = extract_paths([root, tmp_path / "single.txt", tmp_path / "missing.txt",
                                  root / "a.md"])
    assert [d.name for d in docs] == ["project/a.md", "project/b.txt", "project/sub/deeper/c.csv",
                                      "project/sub/z.py", "single.txt"]
    assert [d.text for d in docs] == ["# A", "bee", "1,2", "print(1)", "one file"]
    assert sorted((os.path.basename(p), type(e)) for p, e in errors) == [
        ("blob.bin", UnsupportedFileError), ("missing.txt", ReadError)]
