"""The worker's document work, without Qt: counting a message's documents and checking that the
prompt fits (measure), and reading a long prompt once (read_prompt) through
inference.documents' StateStore: the longest saved prefix is restored, the rest is read with
checkpoints, and the end of the documents is saved on its own so that another question about
the same documents (a follow-up, a new conversation, a restart) starts from there.

Token layout of a prompt with documents (the chat template around build_prompt's text):
    [template head][documents under file-name headers][question][template tail]
                   ^ boundary: the longest prefix shared with the same prompt asking another
                     question. Saved at that boundary = reusable by any question.
"""
from __future__ import annotations

import dataclasses

OTHER_QUESTION = "A different question?"


def fit_dict(report) -> dict:
    d = dataclasses.asdict(report) if dataclasses.is_dataclass(report) else dict(vars(report))
    d["remedies"] = list(d.get("remedies") or [])
    return d


def measure(engine, n_ctx: int, texts: list[str], messages: list[dict], max_tokens: int,
            ram_bytes: int | None) -> dict:
    """{"doc_tokens": [tokens of each text], "fit": FitReport as a dict} for the prompt
    `messages` (its last message holding the documents) plus an answer of max_tokens."""
    from inference.documents import fit_check

    doc_tokens = [len(engine.tokenizer.encode(t, add_bos=False)) for t in texts]
    n = len(engine.encode_chat(messages)) + int(max_tokens or 0)
    return {"doc_tokens": doc_tokens, "fit": fit_dict(fit_check(engine, n, n_ctx, ram_bytes))}


def doc_boundary(engine, tokens: list[int], messages: list[dict], doc_index: int,
                 question: str) -> int:
    """Where the documents of messages[doc_index] end in `tokens` (see the layout above)."""
    other = [dict(m) for m in messages]
    content = other[doc_index]["content"]
    if not question or not content.endswith(question):
        return 0
    other[doc_index]["content"] = content[: len(content) - len(question)] + OTHER_QUESTION
    alt = engine.encode_chat(other)
    n = 0
    for a, b in zip(tokens, alt):
        if a != b:
            break
        n += 1
    return n


@dataclasses.dataclass
class ReadResult:
    n_tokens: int
    n_reused: int          # restored from a saved state or already in the session
    n_evaluated: int
    seconds: float
    cancelled: bool
    state_bytes: int       # size of the saved state of the whole prompt (0: none saved)


def chunk_for(rate: float, seconds: float = 0.5) -> int:
    """Prefill chunk that takes about `seconds` at `rate` tokens/s (cancel is checked between
    chunks, so this bounds how long Stop takes); 32 until a rate is known."""
    if rate <= 0:
        return 32
    return int(min(256, max(16, rate * seconds)))


def read_prompt(session, tokens: list[int], store, boundary: int, progress=None, cancel=None,
                chunk: int = 256, every: int = 4096) -> ReadResult:
    """Make `session` hold `tokens` through the store (restore, checkpoint, save); the state at
    `boundary` (the end of the documents) is kept for other questions."""
    from inference.documents import read_tokens

    keep = [boundary] if 0 < boundary < len(tokens) else []
    r = read_tokens(session, tokens, store, checkpoint_every=every, progress=progress,
                    cancel=cancel, keep_at=keep, chunk=chunk)
    size = 0
    if not r.cancelled:
        best = store.best_prefix(session.engine, tokens)
        size = store.size_of(best[1]) if best and best[0] == len(tokens) else 0
    return ReadResult(r.n_tokens, r.n_reused, r.n_evaluated, r.seconds, r.cancelled, size)
