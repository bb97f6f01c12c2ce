"""Browsing against the fake hub through the real huggingface_hub client: search, variants, cards,
gated/private/missing repositories, server errors, offline, and the saved token."""
from __future__ import annotations

import hashlib

import pytest

from inference.hub import (HubAuthError, card_body, HubError, HubNotFoundError, HubOfflineError, curated,
                           get_token, list_variants, model_card, repo_files, save_token, search_repos)
from inference.hub.client import file_url
from tests.fake_hub import GOOD_TOKEN, LLAMA_QUANTS, README, golden_bytes


@pytest.fixture
def catalogue(fake_hub, tiny_repo):
    fake_hub.add_repo("a/popular-GGUF", {"p-Q4_0.gguf": b"x"}, downloads=9000, likes=2,
                      last_modified="2024-01-01T00:00:00.000Z")
    fake_hub.add_repo("b/liked-GGUF", {"l-Q4_0.gguf": b"x"}, downloads=10, likes=900,
                      last_modified="2023-01-01T00:00:00.000Z", gated=True)
    fake_hub.add_repo("c/recent-gguf", {"r-Q4_0.gguf": b"x"}, downloads=1, likes=1,
                      last_modified="2026-01-01T00:00:00.000Z")
    fake_hub.add_repo("d/not-gguf", {"model.safetensors": b"x"}, downloads=10**6, tags=["safetensors"])
    fake_hub.add_repo("e/private-GGUF", {"s-Q4_0.gguf": b"x"}, downloads=10**7, private=True)
    return fake_hub


def test_search_sorts_and_keeps_gguf_repositories_only(catalogue):
    by_downloads = search_repos("", sort="downloads")
    assert [r.repo_id for r in by_downloads] == ["a/popular-GGUF", "test/tiny-llama-GGUF",
                                                 "b/liked-GGUF", "c/recent-gguf"]
    assert [r.repo_id for r in search_repos("", sort="likes")][:2] == ["b/liked-GGUF", "test/tiny-llama-GGUF"]
    assert search_repos("", sort="recent")[0].repo_id == "c/recent-gguf"
    tiny = search_repos("tiny")
    assert [(r.repo_id, r.downloads, r.likes, r.gated) for r in tiny] == [
        ("test/tiny-llama-GGUF", 500, 7, False)]
    assert tiny[0].last_modified.startswith("2025-06-01T10:00:00")
    assert [r.gated for r in search_repos("liked")] == [True]
    assert len(search_repos("", limit=2)) == 2
    q = [r.query for r in catalogue.requests if r.path == "/api/models"][0]
    assert q["filter"] == ["gguf"] and q["sort"] == ["downloads"]


def test_search_rejects_an_unknown_sort(catalogue):
    with pytest.raises(ValueError, match="sort must be one of"):
        search_repos("x", sort="stars")


def test_curated_needs_no_network(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")      # nothing listens there
    models = curated()
    ids = [m.repo_id for m in models]
    assert any("Kimi-Linear-48B-A3B" in i for i in ids) and any("Step-3.5-Flash" in i for i in ids)
    assert any("SmolLM2-135M" in i for i in ids) and any("gemma-3-270m" in i for i in ids)
    assert all(i.count("/") == 1 and "gguf" in i.lower() and m.title and m.note
               for i, m in zip(ids, models))


def test_variants_and_files_carry_the_published_sizes_and_sha256(tiny_repo):
    files = {f.path: f for f in repo_files(tiny_repo)}
    for q in LLAMA_QUANTS:
        data = golden_bytes(f"tiny-llama-{q}")
        f = files[f"tiny-llama-{q}.gguf"]
        assert (f.size, f.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert files["README.md"].sha256 is None            # not an LFS file
    vs = list_variants(tiny_repo)
    assert [v.name for v in vs] == sorted(LLAMA_QUANTS, key=lambda q: len(golden_bytes(f"tiny-llama-{q}")))
    assert all(len(v.files) == 1 for v in vs)


def test_model_card_is_the_readme(fake_hub, tiny_repo):
    assert model_card(tiny_repo) == README
    assert card_body(model_card(tiny_repo)) == "# Tiny llama\n\nA **tiny** model for tests.\n"
    assert card_body("# no front matter\n---\n") == "# no front matter\n---\n"
    assert card_body("---\nunterminated") == "---\nunterminated"
    fake_hub.add_repo("test/no-card", {"m-Q4_0.gguf": b"x"})
    assert model_card("test/no-card") == ""


def test_missing_repository(fake_hub):
    with pytest.raises(HubAuthError, match="was not found, or it is private or gated.*check the name"):
        list_variants("test/does-not-exist")                   # 401 without a token, as the Hub does
    with pytest.raises(HubNotFoundError, match="does not exist"):
        list_variants("test/does-not-exist", token=GOOD_TOKEN)  # 404 with one


@pytest.mark.parametrize("bad", ["bad id!", "a/b/c", "../x", "", "..", "gpt2", "o/r x"])
def test_malformed_repository_ids(fake_hub, bad, tmp_path):
    from inference.hub import DownloadManager, RepoFile, Variant

    for call in (list_variants, model_card, lambda r: file_url(r, "x.gguf")):
        with pytest.raises(HubError, match="is not a Hugging Face repository id: write it as OWNER/NAME"):
            call(bad)
    m = DownloadManager(tmp_path / "models", tmp_path / "state.json")
    try:
        with pytest.raises(HubError, match="not a Hugging Face repository id"):
            m.add(bad, Variant("Q4_0", "Q4_0", [RepoFile("m-Q4_0.gguf", 1)]))
    finally:
        m.close()
    assert not fake_hub.requests


def test_private_repository_needs_a_token(catalogue):
    with pytest.raises(HubAuthError, match="Hugging Face token"):
        list_variants("e/private-GGUF")
    assert [v.name for v in list_variants("e/private-GGUF", token=GOOD_TOKEN)] == ["Q4_0"]


def test_gated_repository_files_need_a_token(catalogue):
    from inference.hub import estimate_ram

    v = list_variants("b/liked-GGUF")[0]             # the listing is public, the files are not
    with pytest.raises(HubAuthError, match=r"gated or private \(HTTP 401\): accept its licence on "
                                           r"https://huggingface.co/b/liked-GGUF"):
        estimate_ram("b/liked-GGUF", v, 512)
    with pytest.raises(HubAuthError, match="HTTP 403.*check that your token has access"):
        estimate_ram("b/liked-GGUF", v, 512, token="hf_wrong")


def test_server_error_and_recovery(fake_hub, tiny_repo):
    fake_hub.fail_next("/api/models/test/tiny-llama-GGUF", 500)
    with pytest.raises(HubError, match=r"HTTP 500.*Try again later") as e:
        list_variants(tiny_repo)
    assert type(e.value) is HubError
    assert len(list_variants(tiny_repo)) == len(LLAMA_QUANTS)


def test_offline_hub_says_so(fake_hub, tiny_repo):
    fake_hub.stop()
    for call in (lambda: search_repos("tiny"), lambda: list_variants(tiny_repo),
                 lambda: model_card(tiny_repo)):
        with pytest.raises(HubOfflineError, match="offline or unreachable.*local models and chats keep working"):
            call()


def test_offline_mode_variable(fake_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE"):
        search_repos("tiny")


def test_urls_follow_hf_endpoint(fake_hub, monkeypatch):
    assert file_url("o/r", "dir/a b.gguf") == f"{fake_hub.url}/o/r/resolve/main/dir/a%20b.gguf"
    monkeypatch.setenv("HF_ENDPOINT", "http://example.invalid/")
    assert file_url("o/r", "x.gguf") == "http://example.invalid/o/r/resolve/main/x.gguf"


def test_token_is_checked_and_kept_in_huggingface_hub_storage(fake_hub, hf_home, catalogue):
    assert get_token() is None
    with pytest.raises(HubAuthError, match="rejected this token"):
        save_token("hf_wrong")
    assert get_token() is None
    assert save_token(f"  {GOOD_TOKEN}\n") == "lectern-tester"
    assert (hf_home / "token").read_text() == GOOD_TOKEN
    assert get_token() == GOOD_TOKEN
    # the saved token is used by later calls without passing it
    assert [v.name for v in list_variants("e/private-GGUF")] == ["Q4_0"]
    auth = [r.headers.get("authorization") for r in fake_hub.requests if "private" in r.path]
    assert auth[-1] == f"Bearer {GOOD_TOKEN}"


def test_hf_token_variable_wins(fake_hub, monkeypatch, catalogue):
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    assert get_token() == GOOD_TOKEN
    assert [v.name for v in list_variants("e/private-GGUF")] == ["Q4_0"]
