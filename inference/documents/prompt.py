"""The prompt that carries whole documents, and the token positions worth checkpointing in it.

Layout of `build_prompt(question, docs)` (deterministic; documents in the order given):

    The user attached the documents below. Each is given in full between a "=== File: NAME ===" line and an "=== End of NAME ===" line.
    <blank line>
    === File: report.pdf ===
    --- page 1 ---
    ...the extracted text...
    === End of report.pdf (12 pages) ===
    <blank line>
    === File: notes.txt ===
    ...
    === End of notes.txt ===
    <blank line>
    Question: <question>

Nothing that changes when a document grows or another is added (page counts, the number of
documents) comes before a document's text, so a grown document's prompt shares every token up
to the end of its old text with the old prompt, and a state saved there is continued instead
of re-read. With no documents the prompt is the question alone.

The prompt goes into the first user message of a chat; follow-up questions are plain user
messages after it, so the documents are read once per conversation.
"""
from __future__ import annotations

from typing import Sequence

from .extract import Document

INTRO = ('The user attached the documents below. Each is given in full between a '
         '"=== File: NAME ===" line and an "=== End of NAME ===" line.')


def _header(doc: Document) -> str:
    return f"=== File: {doc.name} ===\n"


def _footer(doc: Document) -> str:
    pages = f" ({doc.pages} page{'s' * (doc.pages != 1)})" if doc.pages else ""
    return f"\n=== End of {doc.name}{pages} ==="


def layout(question: str, docs: Sequence[Document]) -> tuple[str, list[int]]:
    """(prompt text, character offsets where each document's text ends, then where the
    documents part ends, i.e. where "Question:" starts)."""
    if not docs:
        return question, []
    parts, ends, pos = [INTRO, "\n\n"], [], len(INTRO) + 2
    for doc in docs:
        text = doc.text.rstrip("\n")
        for piece in (_header(doc), text):
            parts.append(piece)
            pos += len(piece)
        ends.append(pos)
        for piece in (_footer(doc), "\n\n"):
            parts.append(piece)
            pos += len(piece)
    ends.append(pos)
    parts.append(f"Question: {question}")
    return "".join(parts), ends


def build_prompt(question: str, docs: Sequence[Document]) -> str:
    return layout(question, docs)[0]


def document_messages(question: str, docs: Sequence[Document], system: str | None = None) -> list[dict]:
    """The chat messages of a first question about documents."""
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": build_prompt(question, docs)}]


def chat_tokens(engine, question: str, docs: Sequence[Document], system: str | None = None,
                history: Sequence[dict] = ()) -> tuple[list[int], list[int]]:
    """(tokens of the chat prompt, token positions worth keeping a saved state at).

    The keep positions are where each document's text ends and where the documents part ends:
    states saved there are prefixes of a prompt with another question, more documents, or a
    document that grew. history: earlier turns after the first user message (follow-ups).
    """
    text, ends = layout(question, docs)
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": text}, *history]
    rendered = engine.template.render(messages, add_generation_prompt=True)
    tokens = engine.encode_text(rendered)
    start = rendered.find(text)
    keep = []
    if start >= 0:
        for off in ends:
            head = engine.encode_text(rendered[:start + off])
            n = _common_prefix(tokens, head)
            if 0 < n < len(tokens) and n not in keep:
                keep.append(n)
    return tokens, keep


def count_tokens(engine, text: str) -> int:
    """Tokens of a document's text on its own (no BOS; special-token texts not parsed)."""
    return len(engine.tokenizer.encode(text, add_bos=False, special=False))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
