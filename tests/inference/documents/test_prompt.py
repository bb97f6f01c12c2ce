"""The prompt layout, and the keep positions a read can be resumed from."""
from __future__ import annotations

import pytest

from inference.documents import Document, build_prompt, chat_tokens, layout
from inference.documents.prompt import INTRO
from inference.engine import Engine
from tests.conftest import golden_dir

TINY = golden_dir() / "models" / "tiny-llama-F16.gguf"


@pytest.fixture(scope="module")
def engine():
    return Engine.load(TINY)


def docs():
    return [Document("/x/report.pdf", "report.pdf", "pdf", "--- page 1 ---\nAlpha.\n\n--- page 2 ---\nBeta.", 2),
            Document("/x/notes.txt", "notes.txt", "text", "one\ntwo\n", None, encoding="utf-8")]


def test_documents_come_in_full_under_name_headers_and_the_question_last():
    prompt = build_prompt("What rose?", docs())
    assert prompt == (
        INTRO + "\n\n"
        "=== File: report.pdf ===\n--- page 1 ---\nAlpha.\n\n--- page 2 ---\nBeta.\n"
        "=== End of report.pdf (2 pages) ===\n\n"
        "=== File: notes.txt ===\none\ntwo\n=== End of notes.txt ===\n\n"
        "Question: What rose?")
    assert build_prompt("What rose?", docs()) == prompt            # deterministic
    assert build_prompt("Hi?", []) == "Hi?"


def test_layout_offsets_mark_the_end_of_each_text_and_of_the_documents():
    prompt, ends = layout("Q?", docs())
    assert prompt[:ends[0]].endswith("Beta.") and prompt[:ends[1]].endswith("one\ntwo")
    assert prompt[ends[2]:] == "Question: Q?"


def test_keep_positions_are_shared_with_another_question_and_a_grown_document(engine):
    d = docs()
    tokens, keep = chat_tokens(engine, "What rose?", d)
    assert tokens == engine.encode_chat([{"role": "user", "content": build_prompt("What rose?", d)}])
    assert len(keep) == 3 and keep == sorted(keep) and keep[-1] < len(tokens)
    other, _ = chat_tokens(engine, "Who wrote it?", d)
    assert other[:keep[-1]] == tokens[:keep[-1]]
    grown = [d[0], Document(d[1].path, d[1].name, "text", d[1].text + "three\nfour\n")]
    longer, _ = chat_tokens(engine, "What rose?", grown)
    assert longer[:keep[1]] == tokens[:keep[1]]           # the old text of notes.txt is a prefix
    # each keep position ends inside the last word of a document's text, never in its footer
    text = [engine.tokenizer.decode(tokens[:k], special=False) for k in keep]
    assert text[0].rstrip(".").endswith("Beta") and "End of report" not in text[0]
    assert text[1].rstrip().endswith("two") and "End of notes" not in text[1]
    assert text[2].endswith("=== End of notes.txt ===") or text[2].rstrip().endswith("===")
