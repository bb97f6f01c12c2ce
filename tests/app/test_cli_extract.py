"""`lectern extract` and `lectern chat --attach/--ask` on documents the tests write."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from inference.documents import build_prompt, extract
from inference.engine import Engine
from inference.sampling import GREEDY
from inference.tokenizer import Tokenizer
from tests.conftest import REPO, golden_dir
from tests.inference.documents.makers import write_docx, write_pdf, docx_paragraph

TINY = golden_dir() / "models" / "tiny-llama-F16.gguf"


def lectern(*args, cache=None, timeout=900):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    if cache is not None:
        env["LECTERN_CACHE_DIR"] = str(cache)
    p = subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_extract_prints_the_text_and_json_with_token_counts(tmp_path):
    pdf = write_pdf(tmp_path / "r.pdf", [["First page text."], ["Second page text."]])
    docx = write_docx(tmp_path / "n.docx", docx_paragraph("Word text") + docx_paragraph("More"))
    code, out, err = lectern("extract", pdf)
    assert code == 0 and err == ""
    assert out == extract(pdf).text + "\n"
    code, out, err = lectern("extract", "--json", "-m", TINY, pdf, docx, tmp_path / "gone.txt")
    assert code == 1 and "gone.txt: file not found" in err
    data = json.loads(out)
    tok = Tokenizer.from_gguf(Engine.load(TINY).gguf)
    rows = [(d["name"], d["kind"], d["pages"], d["characters"], d["tokens"]) for d in data["documents"]]
    assert rows == [("r.pdf", "pdf", 2, len(extract(pdf).text),
                     len(tok.encode(extract(pdf).text, add_bos=False))),
                    ("n.docx", "docx", None, len("Word text\nMore"),
                     len(tok.encode("Word text\nMore", add_bos=False)))]
    assert data["documents"][1]["text"] == "Word text\nMore"
    assert [os.path.basename(e["path"]) for e in data["errors"]] == ["gone.txt"]


def test_ask_about_a_document_then_ask_again_without_rereading_it(tmp_path):
    text = " ".join(f"Line {i}: the {['red', 'blue', 'green'][i % 3]} box holds {i * 3} coins."
                    for i in range(8))
    (tmp_path / "boxes.txt").write_text(text, encoding="utf-8")
    cache = tmp_path / "cache"
    args = ("chat", "-m", TINY, "--attach", tmp_path / "boxes.txt", "--temp", "0", "-n", "6")
    code, out, err = lectern(*args, "--ask", "Which box holds 9 coins?", cache=cache)
    assert code == 0, err
    assert re.search(r"reading: ([\d,]+)/\1 tokens", err) and "reused" not in err
    doc = extract(tmp_path / "boxes.txt")
    e = Engine.load(TINY)
    want = e.session(4096).chat([{"role": "user", "content": build_prompt("Which box holds 9 coins?", [doc])}],
                                GREEDY.with_(max_tokens=6)).run().text
    assert out == want + "\n"
    assert list((cache / "states").glob("*.state"))

    code, out2, err2 = lectern(*args, "--ask", "How many boxes are red?", cache=cache)
    assert code == 0, err2
    reused = int(re.search(r"reused ([\d,]+) tokens", err2).group(1).replace(",", ""))
    n_doc = len(e.encode_text(build_prompt("", [doc])))
    assert reused >= n_doc - 40                 # all of the document; only the question is new
    want2 = e.session(4096).chat([{"role": "user", "content": build_prompt("How many boxes are red?", [doc])}],
                                 GREEDY.with_(max_tokens=6)).run().text
    assert out2 == want2 + "\n"


def test_documents_that_do_not_fit_are_refused_with_the_remedies(tmp_path):
    (tmp_path / "long.txt").write_text("word " * 200)
    code, out, err = lectern("chat", "-m", TINY, "-c", "512", "--attach", tmp_path / "long.txt",
                             "--ask", "Summarise", cache=tmp_path / "cache")
    assert code == 1 and out == ""
    assert "It does not fit: raise the context setting to at least" in err
    assert "trim the documents by about" in err
    (tmp_path / "pic.png").write_bytes(b"\x89PNG")
    code, out, err = lectern("chat", "-m", TINY, "--attach", tmp_path / "pic.png", "--ask", "x",
                             cache=tmp_path / "cache")
    assert code == 1 and "not attached: pic.png" in err and "no document could be read" in err


def test_ask_without_documents_answers_the_question_alone(tmp_path):
    code, out, err = lectern("chat", "-m", TINY, "--ask", "hello there", "--temp", "0", "-n", "5",
                             cache=tmp_path / "cache")
    assert code == 0, err
    want = Engine.load(TINY).session(4096).chat([{"role": "user", "content": "hello there"}],
                                                GREEDY.with_(max_tokens=5)).run().text
    assert out == want + "\n" and "document" not in err
