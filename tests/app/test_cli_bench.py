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
    r = json.loads(run_bench("-m", str(path), "-p", "24", "-n", "4", "-t", "1", "--json"))
    assert r["file"] == str(path) and r["threads"] == 1
    assert (r["prompt_tokens"], r["gen_tokens"]) == (24, 4)
    assert r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0
    # the rates are the token counts over the measured times
    assert abs(r["prefill_tokens_per_s"] - 24 / r["prefill_seconds"]) <= 0.01 * r["prefill_tokens_per_s"] + 0.01
    assert abs(r["decode_tokens_per_s"] - 4 / r["decode_seconds"]) <= 0.01 * r["decode_tokens_per_s"] + 0.01
    wb = weight_bytes_per_token(load_model(path))
    assert r["weight_bytes_per_token"] == wb
    assert 0 < wb <= path.stat().st_size
    assert abs(r["decode_gb_per_s"] - wb * r["decode_tokens_per_s"] / 1e9) < 1e-3


def test_bench_text_report():
    path = golden_dir() / "models" / "tiny-llama-F16.gguf"
    out = run_bench("-m", str(path), "-p", "8", "-n", "2")
    assert "prefill  8 tokens" in out and "decode   2 tokens" in out
    assert "tokens/s" in out and "GB/s" in out and "read per token" in out


def test_bench_rejects_impossible_sizes(capsys):
    from app.cli import main

    assert main(["bench", "-m", str(golden_dir() / "models" / "tiny-llama-F16.gguf"), "-p", "0"]) == 1
    assert "-p >= 1" in capsys.readouterr().err
