"""`lectern info` against the GGUF metadata read independently with gguf.GGUFReader."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType

from app.cli import main
from tests.conftest import golden_models

REPO = Path(__file__).resolve().parents[2]
LECTERN = Path(sys.executable).with_name("lectern")


def info_json(capsys, path) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def fields(path: Path) -> dict:
    """Metadata as GGUFReader reads it (arrays of numbers as lists; string arrays only counted)."""
    r = GGUFReader(path)
    out = {}
    for k, f in r.fields.items():
        if f.types[0] == GGUFValueType.ARRAY and f.types[1] == GGUFValueType.STRING:
            out[k] = len(f.data)
        elif f.types[0] == GGUFValueType.ARRAY:
            out[k] = np.concatenate([f.parts[i] for i in f.data]).tolist()
        else:
            out[k] = f.contents()
    return out, r.tensors


def expected_kv_per_token(m: dict, arch: str) -> int:
    """The brief's rule: 2 (K and V) * n_kv_heads * head_dim * 2 bytes per attention layer;
    kimi-linear: (kv_lora_rank + rope dims) * 2 bytes per MLA layer (head_count_kv > 0)."""
    n_layers = m[f"{arch}.block_count"]
    per_layer = lambda v: v if isinstance(v, list) else [v] * n_layers  # noqa: E731
    kv = per_layer(m.get(f"{arch}.attention.head_count_kv", m[f"{arch}.attention.head_count"]))
    if arch == "kimi-linear":
        row = m["kimi-linear.attention.kv_lora_rank"] + m["kimi-linear.rope.dimension_count"]
        return sum(row * 2 for h in kv if h > 0)
    heads = per_layer(m[f"{arch}.attention.head_count"])
    total = 0
    for il in range(n_layers):
        head_dim = m.get(f"{arch}.attention.key_length", m[f"{arch}.embedding_length"] // heads[il])
        total += 2 * kv[il] * head_dim * 2
    return total


def check_against_reader(info: dict, path: Path) -> None:
    m, tensors = fields(path)
    arch = m["general.architecture"]
    assert info["architecture"] == arch
    assert info["name"] == m.get("general.name")
    assert info["file_size"] == path.stat().st_size
    assert info["parameters"] == sum(int(t.n_elements) for t in tensors)
    assert info["tensors"] == len(tensors)
    counts, sizes = Counter(), Counter()
    for t in tensors:
        counts[t.tensor_type.name] += 1
        sizes[t.tensor_type.name] += int(t.n_bytes)
    assert {k: (v["tensors"], v["bytes"]) for k, v in info["weight_types"].items()} == \
        {k: (counts[k], sizes[k]) for k in counts}
    assert info["file_type"] == m.get("general.file_type")
    for key in ("context_length", "embedding_length", "block_count"):
        assert info[key] == m.get(f"{arch}.{key}"), key
    assert info["head_count"] == m.get(f"{arch}.attention.head_count")
    assert info["head_count_kv"] == m.get(f"{arch}.attention.head_count_kv")
    assert info["vocab_size"] == m["tokenizer.ggml.tokens"]
    assert info["tokenizer_model"] == m.get("tokenizer.ggml.model")
    assert info["tokenizer_pre"] == m.get("tokenizer.ggml.pre")
    assert info["chat_template"] == ("tokenizer.chat_template" in m)
    mem = info["memory"]
    assert mem["weights_bytes"] == sum(sizes.values())
    assert mem["context"] == m[f"{arch}.context_length"]
    assert mem["kv_bytes_per_token"] == expected_kv_per_token(m, arch)
    assert mem["total_bytes"] == mem["weights_bytes"] + mem["cache_bytes"]


@pytest.mark.parametrize("stem", golden_models())
def test_info_json_matches_gguf_metadata(capsys, golden, stem):
    path = golden / "models" / f"{stem}.gguf"
    check_against_reader(info_json(capsys, path), path)


def test_cache_sizes_of_the_four_architectures(capsys, golden):
    """Whole-context cache: sliding-window layers hold at most `window` tokens (the golden
    README: gemma3 window 16 on 5 of 6 layers, step35 window 8 on 3 of 5); kimi-linear adds the
    fixed KDA state (conv windows of q, k, v plus a d x d matrix per head, F32)."""
    models = golden / "models"
    llama = info_json(capsys, models / "tiny-llama-F16.gguf")["memory"]
    assert llama["cache_bytes"] == llama["kv_bytes_per_token"] * 4096
    g = info_json(capsys, models / "tiny-gemma3-F16.gguf")["memory"]
    row = g["kv_bytes_per_token"] // 6
    assert g["cache_bytes"] == row * 4096 + 5 * row * 16
    m, _ = fields(models / "tiny-step35-F16.gguf")
    s = info_json(capsys, models / "tiny-step35-F16.gguf")["memory"]
    rows = [2 * kv * m["step35.attention.key_length"] * 2 for kv in m["step35.attention.head_count_kv"]]
    swa = m["step35.attention.sliding_window_pattern"]
    assert sum(swa) == 3
    assert s["cache_bytes"] == sum(r * (8 if w else 4096) for r, w in zip(rows, swa))
    m, _ = fields(models / "tiny-kimi-linear-F16.gguf")
    k = info_json(capsys, models / "tiny-kimi-linear-F16.gguf")["memory"]
    h, d = m["kimi-linear.attention.head_count"], m["kimi-linear.kda.head_dim"]
    n_kda = sum(1 for x in m["kimi-linear.attention.head_count_kv"] if x == 0)
    state = n_kda * ((m["kimi-linear.ssm.conv_kernel"] - 1) * 3 * h * d + h * d * d) * 4
    assert k["recurrent_state_bytes"] == state
    assert k["cache_bytes"] == k["kv_bytes_per_token"] * 4096 + state


def test_text_output(capsys, golden):
    path = golden / "models" / "tiny-kimi-linear-Q4_K_M.gguf"
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    m, tensors = fields(path)
    n = sum(int(t.n_elements) for t in tensors)
    assert f"{n / 1e6:.1f}M" in out and f"{n:,}" in out
    assert "kimi-linear" in out and "MOSTLY_Q4_K_M" in out
    for name in {t.tensor_type.name for t in tensors}:
        assert name in out
    assert "chat template  no" in out and "recurrent state" in out


def test_vocabulary_only_file(capsys, golden):
    path = golden / "real" / "qwen2-bpe-vocab.gguf"
    info = info_json(capsys, path)
    assert info["tensors"] == 0 and info["parameters"] == 0 and info["weight_types"] == {}
    assert info["vocab_size"] == 152064 and info["tokenizer_pre"] == "deepseek-r1-qwen"
    assert info["architecture"] == "qwen2" and info["chat_template"] is True
    assert main(["info", str(path)]) == 0
    assert "vocabulary-only" in capsys.readouterr().out


@pytest.mark.slow
def test_vocabulary_only_file_against_reader(capsys, golden):
    path = golden / "real" / "qwen2-bpe-vocab.gguf"
    check_against_reader(info_json(capsys, path), path)


@pytest.mark.parametrize("make,needle", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b"not a model at all"), "not a GGUF file"),
    (lambda p: p.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16), "metadata key count"),
])
def test_bad_files_exit_1_with_a_clear_message(tmp_path, make, needle):
    path = tmp_path / "x.gguf"
    make(path)
    r = subprocess.run([str(LECTERN), "info", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.startswith("lectern: error: ") and str(path) in r.stderr and needle in r.stderr


@pytest.mark.slow
def test_default_model_through_the_installed_command(smollm2_path):
    r = subprocess.run([str(LECTERN), "info", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert Path(info["path"]) == smollm2_path
    check_against_reader(info, smollm2_path)
    r = subprocess.run([str(LECTERN), "info"], capture_output=True, text=True, timeout=300)
    assert "134.5M" in r.stdout and "chat template  yes" in r.stdout


@pytest.mark.slow
def test_gemma3(capsys, gemma3_path):
    check_against_reader(info_json(capsys, gemma3_path), gemma3_path)
