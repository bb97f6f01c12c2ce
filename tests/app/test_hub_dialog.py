"""The Find models window with real widgets against the fake hub (a real HTTP server on 127.0.0.1,
HF_ENDPOINT pointed at it; tests/fake_hub.py): curated list, search and sort, a repository page
with variants, RAM verdicts and the recommended variant, the model card, errors (404, offline,
401 with the token field), and the context spin box re-estimating."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from inference import hub
from inference.model_info import human_bytes
from tests.app.conftest import HUB_TINY as TINY
from tests.fake_hub import GOOD_TOKEN
from tests.inference.hub.conftest import LLAMA_QUANTS, golden_bytes

WAIT = 60_000


@pytest.fixture
def hub_window(qtbot, data_dir, tmp_path):
    """make(ram_bytes, n_ctx) -> a shown HubWindow with its own service and download queue."""
    from app.hub_dialog import HubWindow
    from app.hub_service import DownloadBridge, HubService

    made = []

    def make(ram_bytes: int = 16 << 30, n_ctx: int = 4096):
        service = HubService()
        bridge = DownloadBridge(tmp_path / "models", tmp_path / "state.json", backoff=(0.01, 0.05))
        w = HubWindow(service, bridge, ram_bytes, n_ctx)
        qtbot.addWidget(w)
        w.show()
        made.append((w, service, bridge))
        return w

    yield make
    for w, service, bridge in made:
        w.close()
        service.close()
        bridge.close()


def open_tiny(qtbot, w) -> None:
    w.open_repo(TINY)
    qtbot.waitUntil(lambda: w.variants.all_estimated(), timeout=WAIT)


def test_curated_list_needs_no_network(hub_window, hf_home, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")        # nothing listens there
    w = hub_window()
    want = [c.repo_id for c in hub.curated()]
    assert w.result_ids() == want and len(want) >= 3
    assert "Curated" in w.list_title.text()
    assert not w.notice.isVisible()
    assert any("Kimi-Linear" in r for r in want)


def test_search_lists_gguf_repositories_in_the_chosen_order(qtbot, hub_window, hub_repos):
    w = hub_window()
    qtbot.keyClicks(w.search, "tiny")
    public = [r for r in hub_repos.repos.values() if "tiny" in r.repo_id and not r.private]
    by_downloads = [r.repo_id for r in sorted(public, key=lambda r: -r.downloads)]
    qtbot.waitUntil(lambda: w.result_ids() == by_downloads, timeout=WAIT)
    assert "2</b> GGUF repositories" in w.list_title.text()
    w.sort.setCurrentIndex(w.sort.findData("likes"))
    by_likes = [r.repo_id for r in sorted(public, key=lambda r: -r.likes)]
    assert by_likes != by_downloads
    qtbot.waitUntil(lambda: w.result_ids() == by_likes, timeout=WAIT)
    w.sort.setCurrentIndex(w.sort.findData("recent"))
    recent = [r.repo_id for r in sorted(public, key=lambda r: r.last_modified, reverse=True)]
    qtbot.waitUntil(lambda: w.result_ids() == recent and w.sort.currentData() == "recent",
                    timeout=WAIT)
    # an empty search box brings the curated list back
    w.search.clear()
    qtbot.waitUntil(lambda: "Curated" in w.list_title.text(), timeout=WAIT)
    assert w.result_ids() == [c.repo_id for c in hub.curated()]


def test_repo_page_shows_variants_with_verdicts_and_preselects_the_recommendation(qtbot, hub_window,
                                                                                  hub_repos):
    variants = hub.list_variants(TINY)
    n_ctx = 4096
    est = hub.estimate_all(TINY, variants, n_ctx)
    totals = sorted(e.total for e in est)
    ram = int(totals[1] / 0.7)      # the two smallest fit, the middle ones are tight, F16 is not
    w = hub_window(ram_bytes=ram, n_ctx=n_ctx)
    w.results.setCurrentRow(-1)
    qtbot.keyClicks(w.search, "llama")
    qtbot.waitUntil(lambda: w.result_ids() == [TINY], timeout=WAIT)
    w.results.setCurrentRow(0)                  # choosing the result opens the page
    qtbot.waitUntil(lambda: w.variants.all_estimated(), timeout=WAIT)
    t = w.variants
    names = [t.item(r, 0).text().removeprefix("★ ") for r in range(t.rowCount())]
    sizes = {q: len(golden_bytes(f"tiny-llama-{q}")) for q in LLAMA_QUANTS}
    assert names == sorted(LLAMA_QUANTS, key=sizes.get)            # smallest first
    assert [t.item(r, 2).text() for r in range(t.rowCount())] == [human_bytes(sizes[n]) for n in names]
    verdict_text = {"fits": "fits", "tight": "tight", "no": "does not fit"}
    shown = []
    for v, e in zip(variants, est):
        r = t.row_of(v.name)
        assert t.item(r, 3).text() == human_bytes(e.total)
        shown.append(t.item(r, 4).text())
        assert shown[-1] == verdict_text[hub.fit_verdict(e.total, ram)]
    assert {"fits", "tight", "does not fit"} <= set(shown)
    best = hub.recommend(variants, est, ram)
    assert best is not None and t.selected_variant().name == best.name
    assert t.item(t.row_of(best.name), 0).text() == "★ " + best.name
    assert best.name in w.variant_note.text()
    assert w.download_btn.isEnabled() and best.name in w.download_btn.text()
    assert "RAM at 4,096 tokens" == t.horizontalHeaderItem(3).text()
    # the model card, rendered from markdown without its YAML front matter
    qtbot.waitUntil(lambda: "tests" in w.card.toPlainText(), timeout=WAIT)
    assert "Tiny llama" in w.card.toPlainText() and "license: mit" not in w.card.toPlainText()
    assert "lectern download test/tiny-llama-GGUF" in w.card.code_blocks


def test_context_length_changes_the_estimates(qtbot, hub_window, hub_repos):
    w = hub_window(n_ctx=4096)
    open_tiny(qtbot, w)
    variants = hub.list_variants(TINY)
    small = hub.estimate_all(TINY, variants, 256)
    big = hub.estimate_all(TINY, variants, 4096)
    assert [e.total for e in small] != [e.total for e in big]
    w.ctx_spin.setValue(256)
    qtbot.waitUntil(lambda: w.variants.horizontalHeaderItem(3).text() == "RAM at 256 tokens"
                    and w.variants.all_estimated(), timeout=WAIT)
    for v, e in zip(variants, small):
        assert w.variants.item(w.variants.row_of(v.name), 3).text() == human_bytes(e.total)


def test_missing_repository_is_a_message_in_the_window(qtbot, hub_window, hub_repos):
    hub.save_token(GOOD_TOKEN)      # anonymous, the Hub answers 401 (maybe private): a token -> 404
    w = hub_window()
    w.open_repo("test/does-not-exist")
    qtbot.waitUntil(w.notice.isVisible, timeout=WAIT)
    assert "does not exist" in w.notice.text.text()
    assert w.variants.rowCount() == 0 and not w.download_btn.isEnabled()
    assert not w.token_bar.isVisible()


def test_private_repository_asks_for_a_token_and_retries_after_saving_it(qtbot, hub_window, hub_repos,
                                                                         hf_home):
    w = hub_window()
    w.open_repo("other/tiny-private-GGUF")
    qtbot.waitUntil(w.token_bar.isVisible, timeout=WAIT)
    assert "token" in w.token_bar.message.text().lower()
    assert "other/tiny-private-GGUF" in w.token_bar.message.text()
    assert w.variants.rowCount() == 0
    # a wrong token is refused by the hub, says so, and keeps the field
    qtbot.keyClicks(w.token_bar.field, "hf_wrong")
    qtbot.mouseClick(w.token_bar.save, Qt.LeftButton)
    qtbot.waitUntil(lambda: "not saved" in w.token_bar.status.text(), timeout=WAIT)
    assert w.token_bar.isVisible() and w.token_bar.save.isEnabled()
    assert hub.get_token() is None
    # the right one is stored with huggingface_hub and the page loads
    w.token_bar.field.setText(GOOD_TOKEN)
    w.token_bar.save.click()
    qtbot.waitUntil(lambda: w.variants.all_estimated(), timeout=WAIT)
    assert not w.token_bar.isVisible()
    assert hub.get_token() == GOOD_TOKEN
    assert (hf_home / "token").read_text().strip() == GOOD_TOKEN
    assert [t for t in (w.variants.item(0, 0).text(),)] == ["★ Q4_0"]
    assert "lectern-tester" in w.notice.text.text()


def test_offline_hub_says_so_and_retry_works_once_it_is_back(qtbot, hub_window, hub_repos, monkeypatch):
    w = hub_window()
    url = hub_repos.url
    hub_repos.stop()                                    # the port now refuses connections
    qtbot.keyClicks(w.search, "tiny")
    qtbot.waitUntil(w.notice.isVisible, timeout=WAIT)
    assert w.notice.kind == "offline"
    assert "offline" in w.notice.text.text().lower() and "keep working" in w.notice.text.text()
    assert w.notice.retry.isVisible()
    assert "search failed" in w.list_title.text()
    assert w.result_ids() == [c.repo_id for c in hub.curated()]     # still something to look at
    w.open_repo(TINY)
    qtbot.waitUntil(lambda: "could not be listed" in w.variant_note.text(), timeout=WAIT)
    assert w.notice.kind == "offline"
    # the hub comes back (a new server): Retry reloads the page
    hub_repos.start()
    monkeypatch.setenv("HF_ENDPOINT", hub_repos.url)
    assert hub_repos.url != url
    w.notice.retry.click()
    qtbot.waitUntil(lambda: w.variants.all_estimated(), timeout=WAIT)
    assert not w.notice.isVisible()


def test_gated_repository_lists_files_but_asks_a_token_to_read_them(qtbot, hub_window, hub_repos):
    """Gated: the file list is public, the files are not (401): the RAM column cannot be
    estimated until a token is saved, then it is."""
    files = {f"tiny-llama-{q}.gguf": golden_bytes(f"tiny-llama-{q}") for q in ("Q4_0", "Q8_0")}
    hub_repos.add_repo("test/tiny-gated-GGUF", files, gated=True)
    w = hub_window()
    w.open_repo("test/tiny-gated-GGUF")
    qtbot.waitUntil(w.token_bar.isVisible, timeout=WAIT)
    qtbot.waitUntil(lambda: w.variants.all_estimated(), timeout=WAIT)
    t = w.variants
    assert [t.item(r, 0).text() for r in range(t.rowCount())] == ["Q4_0", "Q8_0"]
    assert [t.item(r, 3).text() for r in range(t.rowCount())] == ["unknown", "unknown"]
    assert t.selected_variant() is None and not w.download_btn.isEnabled()
    w.token_bar.field.setText(GOOD_TOKEN)
    w.token_bar.save.click()
    qtbot.waitUntil(lambda: not w.token_bar.isVisible() and w.variants.all_estimated()
                    and w.variants.item(0, 3).text() != "unknown", timeout=WAIT)
    est = hub.estimate_all("test/tiny-gated-GGUF", hub.list_variants("test/tiny-gated-GGUF"), 4096)
    assert [t.item(r, 3).text() for r in range(t.rowCount())] == [human_bytes(e.total) for e in est]
    assert t.selected_variant() is not None


def bert_gguf(path) -> bytes:
    """A small GGUF of an architecture the engine does not run (bert), with a full header."""
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(path, "bert")
    w.add_block_count(2)
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_array("tokenizer.ggml.tokens", ["a", "b"])
    w.add_tensor("token_embd.weight", np.zeros((2, 64), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def test_an_architecture_lectern_cannot_run_is_said_and_not_recommended(qtbot, hub_window, hub_repos,
                                                                        tmp_path):
    hub_repos.add_repo("test/bert-GGUF", {"bert-F32.gguf": bert_gguf(tmp_path / "bert-F32.gguf")})
    w = hub_window()
    w.open_repo("test/bert-GGUF")
    qtbot.waitUntil(lambda: w.variants.all_estimated(), timeout=WAIT)
    (est,) = hub.estimate_all("test/bert-GGUF", hub.list_variants("test/bert-GGUF"), 4096)
    assert est.architecture == "bert" and est.supported is False
    assert "cannot run the architecture bert" in w.variant_note.text()
    assert w.variants.recommended is None and w.variants.selected_variant() is None
    assert not w.notice.isVisible()


def test_the_window_keeps_working_while_the_hub_is_slow(qtbot, hub_window, hub_repos):
    """A header read held by the server: the page waits for it, the event loop does not."""
    from PySide6.QtCore import QTimer

    release = hub_repos.hold("tiny-llama-Q4_0.gguf", 0)
    w = hub_window()
    w.open_repo(TINY)
    qtbot.waitUntil(lambda: bool(hub_repos.file_requests("tiny-llama-Q4_0.gguf")) and w.variants.rowCount() == 5,
                    timeout=WAIT)
    assert w.variants.item(0, 3).text() == "estimating…"
    ticks = []
    QTimer.singleShot(0, lambda: ticks.append(1))
    qtbot.keyClicks(w.search, "gemma")                  # typing works; its search runs too
    qtbot.waitUntil(lambda: bool(ticks) and w.result_ids() == ["test/tiny-gemma-GGUF"], timeout=WAIT)
    assert w.variants.item(0, 3).text() == "estimating…"   # still held
    release.set()
    qtbot.waitUntil(lambda: w.variants.all_estimated(), timeout=WAIT)
    assert w.variants.item(0, 3).text() not in ("estimating…", "unknown")
