"""StateStore on a real directory and SQLite index: find by prefix, restore, prune, damage."""
from __future__ import annotations

import numpy as np
import pytest

from inference.documents import StateStore, state_size
from inference.engine import Engine, SessionFileError
from tests.conftest import golden_dir

MODELS = golden_dir() / "models"


@pytest.fixture(scope="module")
def engine():
    return Engine.load(MODELS / "tiny-llama-F16.gguf")


def tokens(n, seed=0, vocab=200):
    return [int(t) for t in np.random.default_rng(seed).integers(3, vocab, n)]


def held(engine, toks, n_ctx=512):
    s = engine.session(n_ctx)
    s.prefill(toks)
    return s


def test_a_saved_state_restores_token_exact_and_holds_only_the_used_part(engine, tmp_path):
    store = StateStore(tmp_path)
    s = held(engine, tokens(40), n_ctx=2048)
    entry = store.save(s)
    assert (entry.n_tokens, entry.n_ctx, entry.kind) == (40, 2048, "checkpoint")
    assert store.size_of(entry) == entry.bytes == (tmp_path / entry.file).stat().st_size
    per_token = state_size(engine.model).per_token
    assert entry.bytes < 40 * per_token + engine.model.n_vocab * 4 + 65536   # not 2048 rows
    back = store.restore(engine, entry, 1024)
    assert back.n_ctx == 1024 and back.tokens == s.tokens
    np.testing.assert_array_equal(back.logits, s.logits)
    for name, arr in s.state.arrays.items():
        np.testing.assert_array_equal(back.state.arrays[name][:40], arr[:40])
    assert store.save(s).id == entry.id and len(store.entries()) == 1     # same tokens: one entry


def test_best_prefix_is_the_longest_saved_prefix_of_this_model(engine, tmp_path):
    store = StateStore(tmp_path)
    t = tokens(60)
    for n in (10, 30, 50):
        store.save(held(engine, t[:n]))
    store.save(held(engine, t[:20] + tokens(15, seed=1)))       # diverges after 20: not a prefix
    assert store.best_prefix(engine, t)[0] == 50
    assert store.best_prefix(engine, t[:45])[0] == 30
    assert store.best_prefix(engine, t[:25] + [7, 7, 7])[0] == 10
    assert store.best_prefix(engine, tokens(30, seed=2)) is None
    other = Engine.load(MODELS / "tiny-llama-Q8_0.gguf")          # same vocabulary, other weights
    assert store.best_prefix(other, t) is None


def test_pruning_removes_the_least_recently_used_unpinned_states(engine, tmp_path):
    store = StateStore(tmp_path)
    a, b, c = (store.save(held(engine, tokens(30, seed=s))) for s in (1, 2, 3))
    store.pin(a)
    store.restore(engine, b)                                    # b used after c
    store.prune(max_bytes=a.bytes + b.bytes)
    assert {e.id for e in store.entries()} == {a.id, b.id}
    assert not (tmp_path / c.file).exists()
    store.prune(max_bytes=0)
    assert [e.id for e in store.entries()] == [a.id]            # pinned survives any cap
    small = StateStore(tmp_path, max_bytes=1)
    d = small.save(held(engine, tokens(30, seed=4)))            # the newest survives its own save
    assert {e.id for e in small.entries()} == {a.id, d.id}


@pytest.mark.parametrize("damage", ["garbage", "truncate", "delete"])
def test_a_damaged_or_missing_state_file_is_dropped_not_fatal(engine, tmp_path, damage):
    store = StateStore(tmp_path)
    t = tokens(50)
    short = store.save(held(engine, t[:20]))
    entry = store.save(held(engine, t[:40]))
    f = tmp_path / entry.file
    if damage == "garbage":
        f.write_bytes(b"not a zip at all" * 100)
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[: entry.bytes // 2])
    else:
        f.unlink()
    found = store.best_prefix(engine, t)
    if damage == "delete":
        assert found[1].id == short.id                          # the missing file was skipped
    else:
        assert found[1].id == entry.id
        with pytest.raises(SessionFileError):
            store.restore(engine, entry)
        assert store.best_prefix(engine, t)[1].id == short.id
    assert [e.id for e in store.entries()] == [short.id] and not f.exists()


def test_a_damaged_index_is_replaced_by_a_new_one(engine, tmp_path):
    store = StateStore(tmp_path)
    store.save(held(engine, tokens(20)))
    store.close()
    (tmp_path / "index.sqlite").write_bytes(b"this is not sqlite" * 500)
    again = StateStore(tmp_path)
    assert again.entries() == []
    e = again.save(held(engine, tokens(20)))
    assert again.best_prefix(engine, tokens(25))[1].id == e.id
    assert list(tmp_path.glob("index.damaged-*.sqlite"))
