"""`lectern search / files / download` end to end: real subprocesses with HF_ENDPOINT pointed at
the fake hub (tests/fake_hub.py), HF_HOME and the data folder in tmp."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.library import total_ram
from inference.gguf_file import open_gguf
from inference.hub import fit_verdict
from inference.model_info import memory_estimate
from tests.conftest import golden_dir
from tests.fake_hub import GOOD_TOKEN, LLAMA_QUANTS, golden_bytes

REPO = Path(__file__).resolve().parents[2]
CHUNK = 64 << 10


@pytest.fixture
def env(fake_hub, hf_home, tmp_path) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    e.update(HF_ENDPOINT=fake_hub.url, HF_HOME=str(hf_home), LECTERN_DATA_DIR=str(tmp_path / "data"),
             PYTHONPATH=str(REPO))
    return e


def lectern(env, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_search(env, tiny_repo, fake_hub):
    fake_hub.add_repo("z/other-GGUF", {"o-Q4_0.gguf": b"x"}, downloads=1, likes=100)
    r = lectern(env, "search", "GGUF", "--sort", "likes", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [(x["repo_id"], x["likes"]) for x in got] == [("z/other-GGUF", 100), (tiny_repo, 7)]
    r = lectern(env, "search", "tiny")
    assert r.returncode == 0 and tiny_repo in r.stdout and "500" in r.stdout
    r = lectern(env, "search", "no-such-model-anywhere")
    assert r.returncode == 0 and "No GGUF repositories match" in r.stdout


def test_search_without_text_shows_the_curated_list(env, fake_hub):
    fake_hub.stop()                                   # needs no network
    r = lectern(env, "search", "--json")
    assert r.returncode == 0, r.stderr
    assert any("Kimi-Linear" in m["repo_id"] for m in json.loads(r.stdout))


def test_files_lists_variants_with_ram_and_fit(env, tiny_repo):
    r = lectern(env, "files", tiny_repo, "--ctx", "1000", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    variants = {v["name"]: v for v in out["variants"]}
    assert set(variants) == set(LLAMA_QUANTS)
    g = open_gguf(golden_dir() / "models" / "tiny-llama-Q4_0.gguf")
    cache = memory_estimate(g, 1000)["cache_bytes"]
    for q, v in variants.items():
        size = len(golden_bytes(f"tiny-llama-{q}"))
        assert v["size"] == size and v["ram"] == {"weights": size, "cache": cache, "total": size + cache,
                                                  "exact": True, "n_ctx": 1000}
        assert v["fit"] == fit_verdict(size + cache, total_ram())
        assert v["architecture"] == "llama" and v["supported"] is True
    # the largest that fits comfortably: on any test machine, the F16 (5 MB) one
    assert [v["name"] for v in out["variants"] if v["recommended"]] == ["F16"]
    text = lectern(env, "files", tiny_repo).stdout
    assert "* F16" in text and "(recommended)" in text and "Q4_K_M" in text


def test_download_prints_the_path_last(env, tiny_repo, fake_hub, tmp_path):
    fake_hub.cut("tiny-llama-Q4_K_M.gguf", 3 * CHUNK)
    r = lectern(env, "download", tiny_repo, "--quant", "q4_k_m", "--dir", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip().splitlines()[-1]
    assert path == str(tmp_path / "m" / "test__tiny-llama-GGUF" / "tiny-llama-Q4_K_M.gguf")
    assert Path(path).read_bytes() == golden_bytes("tiny-llama-Q4_K_M")
    assert "100.0%" in r.stderr and "verified" in r.stderr and "/s  ETA " in r.stderr
    # the default folder is the app's models folder, where the library looks
    r = lectern(env, "download", tiny_repo, "--file", "tiny-llama-Q4_0.gguf")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "data" / "models" / "test__tiny-llama-GGUF" / "tiny-llama-Q4_0.gguf")


def test_download_without_quant_takes_the_recommended(env, tiny_repo, tmp_path):
    r = lectern(env, "download", tiny_repo, "--dir", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    assert "choosing F16" in r.stderr and r.stdout.strip().endswith("tiny-llama-F16.gguf")


@pytest.mark.parametrize("args, message", [
    (["files", "nobody/nothing"], "was not found, or it is private or gated"),
    (["download", "test/tiny-llama-GGUF", "--quant", "Q9_X"], "has no variant 'Q9_X'; it has: Q4_0, "),
    (["download", "test/tiny-llama-GGUF", "--file", "nope.gguf"], "has no file 'nope.gguf'"),
    (["files", "test/tiny-llama-GGUF", "--ctx", "0"], "--ctx must be a positive number"),
])
def test_errors_are_one_line_and_exit_1(env, tiny_repo, args, message):
    r = lectern(env, *args)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("lectern: error: ") and message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_offline(env, tiny_repo, fake_hub):
    fake_hub.stop()
    for args in (["search", "tiny"], ["files", tiny_repo], ["download", tiny_repo, "--quant", "Q4_0"]):
        r = lectern(env, *args)
        assert r.returncode == 1 and "offline or unreachable" in r.stderr, r.stderr


def test_gated_download_needs_hf_token(env, fake_hub, tmp_path):
    fake_hub.add_repo("g/gated-GGUF", {"m-Q4_0.gguf": golden_bytes("tiny-llama-Q4_0")}, gated=True)
    r = lectern(env, "files", "g/gated-GGUF", "--json")          # listed, estimated by size
    assert r.returncode == 0 and "RAM estimated from the file sizes" in r.stderr
    (v,) = json.loads(r.stdout)["variants"]
    assert v["name"] == "Q4_0" and v["ram"]["exact"] is False and v["supported"] is None
    r = lectern(env, "download", "g/gated-GGUF", "--quant", "Q4_0", "--dir", str(tmp_path / "m"))
    assert r.returncode == 1 and "accept its licence" in r.stderr and "HF_TOKEN" in r.stderr
    r = lectern({**env, "HF_TOKEN": GOOD_TOKEN}, "download", "g/gated-GGUF", "--quant", "Q4_0",
                "--dir", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr


def test_ctrl_c_pauses_and_the_next_run_resumes(env, tiny_repo, fake_hub, tmp_path):
    name = "tiny-llama-F16.gguf"
    gate = fake_hub.hold(name, 2 * CHUNK)
    part = tmp_path / "m" / "test__tiny-llama-GGUF" / (name + ".part")
    p = subprocess.Popen([sys.executable, "-m", "app", "download", tiny_repo, "--quant", "F16",
                          "--dir", str(tmp_path / "m")], env=env, cwd=REPO, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: p.stderr.read(1), "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: part.is_file() and part.stat().st_size >= 2 * CHUNK, "the first chunks")
        p.send_signal(signal.SIGINT)
        wait_for(lambda: "pausing" in "".join(err), "the pause message",
                 detail=lambda: f" (exit code {p.poll()}, stderr: {''.join(err)[-2000:]!r})")
        gate.set()
        assert p.wait(60) == 130
    finally:
        gate.set()
        if p.poll() is None:
            p.kill()
    reader.join(10)
    assert "download paused; run the same command again" in "".join(err)
    kept = part.stat().st_size
    assert 2 * CHUNK <= kept < len(golden_bytes("tiny-llama-F16"))
    r = lectern(env, "download", tiny_repo, "--quant", "F16", "--dir", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).read_bytes() == golden_bytes("tiny-llama-F16")
    assert [x.headers.get("range") for x in fake_hub.file_requests(name)] == [None, f"bytes={kept}-"]


def default_sigint() -> None:
    """In the child before exec: Ctrl-C as in a terminal. A test run started in the background
    (`pytest &` in a script) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(cond, what: str, timeout: float = 60.0, detail=lambda: "") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}{detail()}")
        time.sleep(0.02)
