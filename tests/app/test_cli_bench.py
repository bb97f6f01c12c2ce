"""`lectern bench`: runs prefill and decode on a tiny model and reports consistent numbers."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from inference import load_model
from inference.engine import weight_bytes_per_token
from tests.conftest import golden_dir


def run_bench(*args):
    p = subprocess.run([sys.executable, "-m", "app", "bench", *args], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("stem", ["tiny-llama-Q4_K_M", "tiny-kimi-linear-Q8_0"])
def test_bench_json(stem):
    path = golden_dir() / "models" / f"{stem}.gguf"
    r = json.loads(run_bench("-m", str(path), "-p", "24", "-n", "4", "-t", "1", "-r", "1", "--json"))
    assert r["file"] == str(path) and r["threads"] == 1 and r["repetitions"] == 1
    assert (r["prompt_tokens"], r["gen_tokens"]) == (24, 4)
    assert r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0
    # the rates are the token counts over the measured times
    assert abs(r["prefill_tokens_per_s"] - 24 / r["prefill_seconds"]) <= 0.01 * r["prefill_tokens_per_s"] + 0.01
    assert abs(r["decode_tokens_per_s"] - 4 / r["decode_seconds"]) <= 0.01 * r["decode_tokens_per_s"] + 0.01
    wb = weight_bytes_per_token(load_model(path))
    assert r["weight_bytes_per_token"] == wb
    assert 0 < wb <= path.stat().st_size
    assert abs(r["decode_gb_per_s"] - wb * r["decode_tokens_per_s"] / 1e9) < 1e-3


def test_bench_repetitions_average_the_rates():
    """-r N: N timed runs of each test; the rate is the mean of the runs' rates (llama-bench's avg_ts)."""
    path = golden_dir() / "models" / "tiny-llama-F16.gguf"
    r = json.loads(run_bench("-m", str(path), "-p", "16", "-n", "3", "-t", "1", "-r", "3", "--json"))
    assert r["repetitions"] == 3 and len(r["prefill_runs_seconds"]) == len(r["decode_runs_seconds"]) == 3
    for key, k, runs in (("prefill", 16, r["prefill_runs_seconds"]), ("decode", 3, r["decode_runs_seconds"])):
        mean_rate = sum(k / s for s in runs) / 3
        assert abs(r[f"{key}_tokens_per_s"] - mean_rate) <= 0.01 * mean_rate + 0.01
        assert abs(r[f"{key}_seconds"] - sum(runs) / 3) <= 1e-3


def test_bench_text_report():
    path = golden_dir() / "models" / "tiny-llama-F16.gguf"
    out = run_bench("-m", str(path), "-p", "8", "-n", "2")
    assert "prefill  8 tokens" in out and "decode   2 tokens" in out
    assert "tokens/s" in out and "GB/s" in out and "read per token" in out


def test_bench_rejects_impossible_sizes(capsys):
    from app.cli import main

    assert main(["bench", "-m", str(golden_dir() / "models" / "tiny-llama-F16.gguf"), "-p", "0"]) == 1
    assert "-p >= 1" in capsys.readouterr().err


FAKE_LLAMA_BENCH = '''#!{python}
import json, sys
a = sys.argv[1:]
assert a[0] == "-m" and a[2:4] == ["-p", "{p}"] and a[4:6] == ["-n", "{n}"] and a[6:] == ["-t", "1", "-r", "{r}", "-o", "json"], a
open(sys.argv[0] + ".model", "w").write(a[1])
print(json.dumps([{{"n_prompt": {p}, "n_gen": 0, "n_threads": 1, "avg_ts": 300.5, "stddev_ts": 1.0}},
                  {{"n_prompt": 0, "n_gen": {n}, "n_threads": 1, "avg_ts": 150.25, "stddev_ts": 0.5}}]))
'''


def test_bench_bandwidth_and_llama_bench(tmp_path):
    # llama-bench is stood in for by a script printing llama-bench-shaped JSON; it checks the
    # arguments it gets (same file, sizes and threads) and records the model path
    path = golden_dir() / "models" / "tiny-llama-Q4_0.gguf"
    exe = tmp_path / "llama-bench"
    exe.write_text(FAKE_LLAMA_BENCH.format(python=sys.executable, p=16, n=3, r=2))
    exe.chmod(0o755)
    r = json.loads(run_bench("-m", str(path), "-p", "16", "-n", "3", "-t", "1", "-r", "2", "--json", "--bandwidth",
                             "--llama-bench", str(exe)))
    assert (tmp_path / "llama-bench.model").read_text() == str(path)
    assert (r["llama_prefill_tokens_per_s"], r["llama_decode_tokens_per_s"]) == (300.5, 150.25)
    assert abs(r["decode_ratio_to_llama"] - r["decode_tokens_per_s"] / 150.25) < 1e-3
    assert abs(r["prefill_ratio_to_llama"] - r["prefill_tokens_per_s"] / 300.5) < 1e-3
    bw = r["bandwidth_bytes_per_s"]
    assert 1e8 < bw < 1e12            # a real machine's read bandwidth
    assert abs(r["decode_bandwidth_fraction"] - r["decode_gb_per_s"] * 1e9 / bw) < 1e-3
    out = run_bench("-m", str(path), "-p", "16", "-n", "3", "-t", "1", "-r", "2", "--bandwidth", "--llama-bench",
                    str(exe))
    assert "llama.cpp pp16 300.50 tokens/s" in out and "tg3 150.25 tokens/s" in out and "% of" in out


def test_bench_llama_bench_failure_is_clear(tmp_path):
    from app.cli import main

    exe = tmp_path / "llama-bench"
    exe.write_text("#!/bin/sh\necho 'error: unknown model' >&2\nexit 3\n")
    exe.chmod(0o755)
    path = golden_dir() / "models" / "tiny-llama-Q4_0.gguf"
    assert main(["bench", "-m", str(path), "-p", "4", "-n", "1", "-t", "1", "--llama-bench", str(exe)]) == 1
    # our own figures are still reported, and the JSON says why llama-bench gave none
    p = subprocess.run([sys.executable, "-m", "app", "bench", "-m", str(path), "-p", "4", "-n", "1", "-t", "1",
                        "--json", "--llama-bench", str(exe)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 1 and "exit status 3" in p.stderr and "unknown model" in p.stderr
    r = json.loads(p.stdout)
    assert r["prefill_tokens_per_s"] > 0 and "unknown model" in r["llama_bench_error"]


def test_bench_reports_the_kernel_path():
    path = golden_dir() / "models" / "tiny-llama-Q8_0.gguf"
    import os
    for kernels in ("numpy", "jit"):
        p = subprocess.run([sys.executable, "-m", "app", "bench", "-m", str(path), "-p", "8", "-n", "1", "-t", "1",
                            "--json"], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "LECTERN_KERNELS": kernels})
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["backend"] == kernels


def test_bench_contexts_json():
    """--contexts: one entry per size, rates from fresh prefills, resident memory, and the cache
    growth per token from the file's own metadata: 1 MLA layer x (kv_lora 64 + rope 16) x 2 bytes
    (a float16 latent cache, as llama.cpp's default F16 cache)."""
    path = golden_dir() / "models" / "tiny-kimi-linear-Q8_0.gguf"
    r = json.loads(run_bench("-m", str(path), "-p", "8", "-n", "1", "-t", "1", "--json",
                             "--contexts", "40,100", "--decode-after", "3", "--chunk", "32"))
    assert [c["tokens"] for c in r["contexts"]] == [40, 100] and r["prefill_chunk"] == 32
    for c in r["contexts"]:
        assert c["prefill_tokens_per_s"] > 0 and c["decode_tokens_per_s"] > 0 and c["decode_tokens"] == 3
        assert abs(c["prefill_tokens_per_s"] - c["tokens"] / c["prefill_seconds"]) <= 0.02 * c["prefill_tokens_per_s"] + 0.01
        assert c["rss_bytes"] > path.stat().st_size // 2
    m = load_model(path)
    g = m.gguf.metadata
    n_mla = sum(1 for v in g["kimi-linear.attention.head_count_kv"] if v)
    assert r["state_bytes_per_token"] == n_mla * (g["kimi-linear.attention.kv_lora_rank"] +
                                                  g["kimi-linear.rope.dimension_count"]) * 2 == 160
    assert "rss_growth_bytes_per_token" in r


def test_bench_contexts_rejects_garbage(capsys):
    from app.cli import main

    assert main(["bench", "-m", str(golden_dir() / "models" / "tiny-llama-F16.gguf"), "--contexts", "1k"]) == 1
    assert "--contexts" in capsys.readouterr().err


def test_kernel_micro_benchmark_reports_every_type_against_the_bandwidth():
    r = json.loads(run_bench("--kernels", "Q4_K,q8_0,IQ4_NL", "--kernel-mb", "2", "-t", "1", "--json"))
    assert r["threads"] == 1 and r["bandwidth_bytes_per_s"] > 0
    assert [k["type"] for k in r["kernels"]] == ["Q4_K", "Q8_0", "IQ4_NL"]
    for k in r["kernels"]:
        assert k["bytes"] >= 1 << 20 and k["cols"] % 32 == 0
        assert k["gb_per_s"] == pytest.approx(k["bytes"] / k["seconds"] / 1e9)
        assert k["fraction_of_bandwidth"] == pytest.approx(k["gb_per_s"] * 1e9 / r["bandwidth_bytes_per_s"])
        assert 0 < k["in_cache_gb_per_s"] < float("inf")     # one core, the matrix in L2


def test_kernel_micro_benchmark_refuses_an_unknown_type():
    p = subprocess.run([sys.executable, "-m", "app", "bench", "--kernels", "Q4_K,Q9_X"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "unknown weight type 'Q9_X'" in p.stderr


def test_kernel_micro_benchmark_on_the_thread_cpu_clock():
    r = json.loads(run_bench("--kernels", "Q4_0", "--kernel-mb", "2", "--bandwidth-mb", "64", "-t", "1",
                             "--cpu-time", "--kernel-repeat", "2", "--json"))
    assert r["cpu_time"] and r["bandwidth_buffer_mb"] == 64 and r["bandwidth_bytes_per_s"] > 0
    assert r["kernels"][0]["type"] == "Q4_0" and r["kernels"][0]["gb_per_s"] > 0


def test_bench_sessions_are_long_enough_for_the_jit_attention(monkeypatch):
    """-p 8 -n 4 still times sessions whose caches reach the JIT attention's smallest ring: a
    shorter one would time numpy's attention, which no chat runs."""
    import numpy as np

    from app.cli import cmd_bench
    from inference.engine import Engine
    from jit.attention import MIN_RING

    engine = Engine.load(golden_dir() / "models" / "tiny-llama-Q4_K_M.gguf")
    sizes = []
    real = Engine.session
    monkeypatch.setattr(Engine, "session", lambda self, n_ctx=None: sizes.append(n_ctx) or real(self, n_ctx))
    pre, dec = cmd_bench.timed_runs(engine, np.arange(12) % 50, 8, 4, 1)
    assert len(pre) == len(dec) == 1 and sizes and min(sizes) >= MIN_RING
