"""read_tokens: checkpoints while reading, resume after a cancel, reuse by a second question, a
grown document continued, damaged checkpoints ignored; token-exact against uninterrupted reads."""
from __future__ import annotations

import numpy as np
import pytest

from inference.documents import Document, StateStore, chat_tokens, checkpoints, read_tokens
from inference.engine import Engine
from tests.conftest import golden_dir

MODELS = golden_dir() / "models"
EVERY, CHUNK = 64, 32


@pytest.fixture(scope="module")
def llama():
    return Engine.load(MODELS / "tiny-llama-F16.gguf")


def tokens(n, seed=0):
    return [int(t) for t in np.random.default_rng(seed).integers(3, 200, n)]


def read(engine, toks, store, n_ctx=1024, **kw):
    s = engine.session(n_ctx)
    r = read_tokens(s, toks, store, checkpoint_every=EVERY, chunk=CHUNK, **kw)
    return s, r


def test_checkpoint_positions():
    assert checkpoints(0, 300, 64) == [64, 128, 192, 256, 300]
    assert checkpoints(100, 300, 64, keep_at=[150, 290]) == [128, 150, 192, 256, 290, 300]
    # a keep position closer than every // 4 after a kept one is left out
    assert checkpoints(0, 100, 64, keep_at=[40, 45, 90]) == [40, 64, 90, 100]


@pytest.mark.parametrize("model", ["tiny-llama-F16", "tiny-kimi-linear-F16", "tiny-gemma3-F16"])
def test_a_cancelled_read_resumes_from_its_last_checkpoint_token_exact(tmp_path, model):
    engine = Engine.load(MODELS / f"{model}.gguf")
    toks = tokens(300)
    whole, r0 = read(engine, toks, StateStore(tmp_path / "ref"))
    assert (r0.n_reused, r0.n_evaluated, r0.cancelled) == (0, 300, False)

    store = StateStore(tmp_path / "store")
    seen = []

    def progress(done, total):
        seen.append((done, total))

    s = engine.session(1024)
    r1 = read_tokens(s, toks, store, checkpoint_every=EVERY, chunk=CHUNK, progress=progress,
                     cancel=lambda: s.n_past >= 200)     # checked per chunk: stops at 224 (75 %)
    assert r1.cancelled and (r1.n_evaluated, s.n_past) == (224, 224)
    saved = store.entries(engine)
    assert [(e.kind, e.n_tokens) for e in saved] == [("checkpoint", 192)]
    assert (tmp_path / "store" / saved[0].file).is_file()
    assert seen[0] == (0, 300) and all(t == 300 for _, t in seen)

    # a crash: the session is gone; a new one resumes from the checkpoint on disk
    resumed, r2 = read(engine, toks, store)
    assert (r2.n_reused, r2.n_evaluated) == (saved[0].n_tokens, 300 - saved[0].n_tokens)
    np.testing.assert_array_equal(resumed.logits, whole.logits)
    assert [(e.kind, e.n_tokens) for e in store.entries(engine)] == [("final", 300)]


def test_checkpoint_files_appear_while_reading(llama, tmp_path):
    store = StateStore(tmp_path)
    seen = {}

    def progress(done, total):
        seen[done] = sorted(e.n_tokens for e in store.entries(llama))

    read(llama, tokens(230), store, progress=progress)
    assert seen[64 + CHUNK] == [64] and seen[128 + CHUNK] == [128]     # one checkpoint at a time
    assert sorted(e.n_tokens for e in store.entries(llama)) == [230]
    s, r = read(llama, tokens(240), store)               # a longer prompt continues the read
    assert (r.n_reused, r.n_evaluated) == (230, 10)
    assert sorted(e.n_tokens for e in store.entries(llama)) == [230, 240]


def doc(text):
    return Document("/d/report.txt", "report.txt", "text", text)


REPORT = " ".join(f"Item {i}: revenue {i * 7 % 13} units, costs {i * 5 % 11}." for i in range(6))


def test_a_second_question_reuses_the_read_document(llama, tmp_path):
    store = StateStore(tmp_path)
    t1, keep1 = chat_tokens(llama, "What is item 3's revenue?", [doc(REPORT)])
    first, r1 = read(llama, t1, store, keep_at=keep1)
    assert r1.n_reused == 0 and r1.n_evaluated == len(t1)
    assert len(keep1) == 2                                   # end of the text, of the documents
    kept = [k for k in checkpoints(0, len(t1), EVERY, keep1) if k in keep1]
    assert sorted((e.n_tokens, e.kind) for e in store.entries(llama)) == [
        *((k, "keep") for k in kept), (len(t1), "final")]
    # after a restart: a new session, another question about the same document
    t2, keep2 = chat_tokens(llama, "Which item costs most?", [doc(REPORT)])
    second, r2 = read(llama, t2, store, keep_at=keep2)
    assert r2.n_reused == kept[-1] and r2.n_evaluated == len(t2) - kept[-1]
    fresh, _ = read(llama, t2, StateStore(tmp_path / "fresh"), keep_at=keep2)
    np.testing.assert_array_equal(second.logits, fresh.logits)
    # a follow-up in the same conversation reuses the session itself
    t3 = t2 + tokens(10, seed=5)
    r3 = read_tokens(second, t3, None, checkpoint_every=EVERY, chunk=CHUNK)
    assert (r3.n_reused, r3.n_evaluated) == (len(t2), 10)


def test_a_grown_document_is_continued_not_reread(llama, tmp_path):
    store = StateStore(tmp_path)
    t1, keep1 = chat_tokens(llama, "Summarise.", [doc(REPORT)])
    read(llama, t1, store, keep_at=keep1)
    grown = REPORT + " Item 6: revenue 3 units."
    t2, keep2 = chat_tokens(llama, "Summarise.", [doc(grown)])
    assert t2[:keep1[0]] == t1[:keep1[0]]
    s, r = read(llama, t2, store, keep_at=keep2)
    assert r.n_reused == keep1[0] and r.n_evaluated == len(t2) - keep1[0]
    # the same segments read in one go (the old document's end is a segment boundary in both)
    fresh, _ = read(llama, t2, None, keep_at=keep2 + keep1[:1])
    np.testing.assert_array_equal(s.logits, fresh.logits)


def test_damaged_checkpoints_are_ignored_and_the_text_read_again(llama, tmp_path):
    store = StateStore(tmp_path)
    toks = tokens(150)
    whole, _ = read(llama, toks, store)
    for f in tmp_path.glob("*.state"):
        f.write_bytes(f.read_bytes()[:1000])
    again, r = read(llama, toks, store)
    assert (r.n_reused, r.n_evaluated) == (0, 150)
    np.testing.assert_array_equal(again.logits, whole.logits)
    assert [e.n_tokens for e in store.entries(llama)] == [150]


def test_a_prompt_longer_than_the_context_is_refused_before_anything_is_read(llama, tmp_path):
    from inference import ContextOverflowError

    store = StateStore(tmp_path)
    s = llama.session(100)
    with pytest.raises(ContextOverflowError, match="150 tokens but the context holds 100"):
        read_tokens(s, tokens(150), store, checkpoint_every=EVERY)
    assert s.n_past == 0 and store.entries() == []
