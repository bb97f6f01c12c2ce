"""The worker's document work, without Qt: counting a message's documents and checking that the
prompt fits (measure), and reading a long prompt once (read_prompt) through
inference.documents' StateStore: the longest saved prefix is restored, the rest is read with
checkpoints, and the end of the documents is saved on its own so that another question about
the same documents (a follow-up, a new conversation, a restart) starts from there.

Token layout of a prompt with documents (the chat template around build_prompt's text):
    [template head][intro][header 1][text 1]|[footer 1][header 2][text 2]|[footer 2]|[Question: q][tail]
                                            ^ keep: where each document's text ends and where the
                                              question starts. A state saved there is a prefix of
                                              the prompt of another question, of more documents,
                                              or of a grown document.
"""
from __future__ import annotations

import dataclasses


def fit_dict(report) -> dict:
    d = dataclasses.asdict(report) if dataclasses.is_dataclass(report) else dict(vars(report))
    d["remedies"] = list(d.get("remedies") or [])
    return d


def measure(engine, n_ctx: int, texts: list[str], messages: list[dict], max_tokens: int,
            ram_bytes: int | None) -> dict:
    """{"doc_tokens": [tokens of each text], "fit": FitReport as a dict} for the prompt
    `messages` (its last message holding the documents) plus an answer of max_tokens."""
    from inference.documents import count_tokens, fit_check

    doc_tokens = [count_tokens(engine, t) for t in texts]
    n = len(engine.encode_chat(messages)) + int(max_tokens or 0)
    return {"doc_tokens": doc_tokens, "fit": fit_dict(fit_check(engine, n, n_ctx, ram_bytes))}


MAX_KEEPS = 9       # more documents than this: keep only where the question starts (each
                    # kept position costs a tokenization of the prompt up to it)


def doc_keeps(engine, tokens: list[int], messages: list[dict], index: int,
              ends: list[int]) -> list[int]:
    """Token positions in `tokens` where the documents of messages[index] end (`ends`: their
    character offsets in that message, from inference.documents.layout)."""
    if not ends:
        return []
    ends = ends if len(ends) <= MAX_KEEPS else ends[-1:]
    rendered = engine.template.render(list(messages), add_generation_prompt=True)
    start = rendered.find(messages[index]["content"])
    if start < 0:
        return []
    keeps = []
    for off in ends:
        head = engine.encode_text(rendered[:start + off])
        n = 0
        for a, b in zip(tokens, head):
            if a != b:
                break
            n += 1
        if 0 < n < len(tokens) and n not in keeps:
            keeps.append(n)
    return keeps


@dataclasses.dataclass
class ReadResult:
    n_tokens: int
    n_reused: int          # restored from a saved state or already in the session
    n_evaluated: int
    seconds: float
    cancelled: bool
    state_bytes: int       # size of the saved state of the whole prompt (0: none saved)


def read_prompt(session, tokens: list[int], store, keep: list[int], progress=None, cancel=None,
                every: int = 4096) -> ReadResult:
    """Make `session` hold `tokens` through the store (restore, checkpoint, save); the states
    at `keep` (where documents end) are kept for other questions and grown documents."""
    from inference.documents import read_tokens

    r = read_tokens(session, tokens, store, checkpoint_every=every, progress=progress,
                    cancel=cancel, keep_at=keep)
    size = 0
    if not r.cancelled:
        best = store.best_prefix(session.engine, tokens)
        size = store.size_of(best[1]) if best and best[0] == len(tokens) else 0
    return ReadResult(r.n_tokens, r.n_reused, r.n_evaluated, r.seconds, r.cancelled, size)
