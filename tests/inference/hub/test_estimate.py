"""RAM estimates from the GGUF header read with HTTP Range requests, against the same numbers
computed from the whole local file (model_info.memory_estimate on open_gguf) and by hand."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFWriter

from inference.gguf_file import open_gguf
from inference.hub import RamEstimate, Variant, estimate_all, estimate_ram, fit_verdict, list_variants, recommend
from inference.hub.estimate import read_remote_metadata
from inference.hub.variants import RepoFile
from inference.model_info import memory_estimate
from tests.conftest import golden_dir
from tests.fake_hub import golden_bytes

GOLDEN = ["tiny-llama-Q4_K_M", "tiny-gemma3-Q4_0", "tiny-kimi-linear-Q4_K_M", "tiny-step35-Q4_K_M"]


@pytest.mark.parametrize("name", GOLDEN)
@pytest.mark.parametrize("n_ctx", [1, 100, 4096])
def test_cache_matches_the_local_file(fake_hub, name, n_ctx):
    """Sliding windows (gemma3), MLA + recurrent KDA state (kimi-linear), step35's mix: all from
    the header alone, equal to what the engine's own estimate says for the downloaded file."""
    data = golden_bytes(name)
    fake_hub.add_repo("t/r", {f"{name}.gguf": data})
    (v,) = list_variants("t/r")
    e = estimate_ram("t/r", v, n_ctx)
    g = open_gguf(golden_dir() / "models" / f"{name}.gguf")
    train = int(g.arch_get("context_length") or 0)
    ctx = min(n_ctx, train) if train else n_ctx
    local = memory_estimate(g, ctx)
    assert e.exact and e.n_ctx == ctx and e.architecture == g.architecture and e.supported
    assert e.cache == local["cache_bytes"] > 0
    assert (e.weights, e.total) == (len(data), len(data) + e.cache)
    # only the header was read, not the file
    reqs = fake_hub.file_requests(f"{name}.gguf")
    assert reqs and all(r.headers.get("range", "").startswith("bytes=") for r in reqs)


def test_llama_cache_by_hand(fake_hub, tiny_repo):
    """2 bytes (F16) x (K + V) x kv heads x head dim x layers x tokens."""
    g = open_gguf(golden_dir() / "models" / "tiny-llama-Q4_0.gguf")
    layers = g.arch_get("block_count")
    kv_heads = g.arch_get("attention.head_count_kv")
    head_dim = g.arch_get("embedding_length") // g.arch_get("attention.head_count")
    v = next(x for x in list_variants(tiny_repo) if x.name == "Q4_0")
    assert estimate_ram(tiny_repo, v, 300).cache == 2 * 2 * kv_heads * head_dim * layers * 300


def big_vocab_gguf(path, n_tokens: int) -> bytes:
    """A llama-shaped GGUF whose header (a long vocabulary) is several MiB."""
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(3)
    w.add_context_length(2048)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_token_list([f"token-number-{i:08d}" for i in range(n_tokens)])
    w.add_tensor("token_embd.weight", np.zeros((8, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def test_range_grows_until_the_metadata_parses(fake_hub, tmp_path):
    data = big_vocab_gguf(tmp_path / "big.gguf", 150_000)        # ~5 MiB of header
    assert len(data) > 4 << 20
    fake_hub.add_repo("t/big", {"big-F32.gguf": data})
    (v,) = list_variants("t/big")
    e = estimate_ram("t/big", v, 1000)
    assert e.exact and e.cache == 2 * 2 * 2 * 16 * 3 * 1000
    ranges = [r.headers["range"] for r in fake_hub.file_requests("big-F32.gguf")]
    starts = [int(r.split("=")[1].split("-")[0]) for r in ranges]
    assert len(ranges) >= 2 and starts[0] == 0 and starts == sorted(starts)   # appended, not re-read
    ends = [int(r.split("-")[1]) for r in ranges]
    assert all(s == e + 1 for s, e in zip(starts[1:], ends))                 # contiguous


def test_header_beyond_the_cap_falls_back_to_the_size(fake_hub, tmp_path):
    data = big_vocab_gguf(tmp_path / "big.gguf", 150_000)
    fake_hub.add_repo("t/big", {"big-F32.gguf": data})
    (v,) = list_variants("t/big")
    from inference.hub.client import auth_headers, file_url

    url = file_url("t/big", v.first.path)
    assert read_remote_metadata(url, len(data), auth_headers(), first=1 << 16, cap=1 << 20) is None
    read = sum(int(r.headers["range"].split("-")[1]) - int(r.headers["range"].split("=")[1].split("-")[0]) + 1
               for r in fake_hub.file_requests("big-F32.gguf"))
    assert read == 1 << 20                                       # never more than the cap


@pytest.mark.parametrize("damage", ["magic", "huge-count", "truncated"])
def test_broken_header_gives_a_size_estimate(fake_hub, damage):
    data = bytearray(golden_bytes("tiny-llama-Q4_0"))
    if damage == "magic":
        data[:4] = b"GGUX"
    elif damage == "huge-count":
        data[16:24] = (10**15).to_bytes(8, "little")            # metadata key count
    else:
        data = data[:200]
    fake_hub.add_repo("t/bad", {"bad-Q4_0.gguf": bytes(data)})
    (v,) = list_variants("t/bad")
    e = estimate_ram("t/bad", v, 4096)
    assert not e.exact and e.weights == len(data) and e.total > e.weights and e.architecture == ""
    assert e.supported is None


def test_server_error_gives_a_size_estimate(fake_hub, tiny_repo):
    v = list_variants(tiny_repo)[0]
    fake_hub.fail_next(v.first.path, 500)
    e = estimate_ram(tiny_repo, v, 4096)
    assert not e.exact and e.weights == v.size
    assert estimate_ram(tiny_repo, v, 4096).exact            # the next try reads the header


def test_cut_header_read_gives_a_size_estimate(fake_hub, tiny_repo):
    v = list_variants(tiny_repo)[0]
    fake_hub.cut(v.first.path, 100)
    e = estimate_ram(tiny_repo, v, 4096)
    assert not e.exact and e.weights == v.size


def test_server_ignoring_range_still_works(fake_hub, tiny_repo):
    fake_hub.no_range = True
    v = list_variants(tiny_repo)[0]
    assert estimate_ram(tiny_repo, v, 64).exact


def test_estimate_all_reads_one_header_per_model(fake_hub, tiny_repo):
    vs = list_variants(tiny_repo)
    es = estimate_all(tiny_repo, vs, 512)
    assert [e.cache for e in es] == [estimate_ram(tiny_repo, v, 512).cache for v in vs]
    assert [e.weights for e in es] == [v.size for v in vs]
    fake_hub.requests.clear()
    estimate_all(tiny_repo, vs, 512)
    assert len([r for r in fake_hub.requests if "/resolve/" in r.path]) == 1


def test_split_variant_uses_the_first_part(fake_hub, tmp_path):
    data = golden_bytes("tiny-llama-Q8_0")
    fake_hub.add_repo("t/split", {"m-Q8_0-00001-of-00002.gguf": data, "m-Q8_0-00002-of-00002.gguf": b"z" * 1000})
    (v,) = list_variants("t/split")
    e = estimate_ram("t/split", v, 128)
    assert e.exact and e.weights == len(data) + 1000
    assert not fake_hub.file_requests("m-Q8_0-00002-of-00002.gguf")


def test_fit_verdict_and_recommendation():
    gib = 1 << 30
    assert [fit_verdict(t * gib // 10, 10 * gib) for t in (10, 69, 70, 71, 90, 91, 200)] == \
        ["fits", "fits", "fits", "tight", "tight", "no", "no"]
    vs = [Variant(q, q, [RepoFile(f"m-{q}.gguf", s * gib)]) for q, s in
          (("Q2_K", 2), ("Q4_K_M", 4), ("Q6_K", 6), ("Q8_0", 8))]
    es = [RamEstimate(v.size, 3 * gib // 2, v.size + 3 * gib // 2, True) for v in vs]
    assert recommend(vs, es, 10 * gib).name == "Q4_K_M"      # 5.5 GiB <= 7 fits; Q6_K 7.5 is tight
    assert recommend(vs, es, 100 * gib).name == "Q8_0"
    assert recommend(vs, es, 2 * gib) is None
