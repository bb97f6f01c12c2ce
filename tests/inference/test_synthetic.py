"""Synthetic benchmark models (inference.synthetic): real shapes, random valid blocks.

Outside truths: the golden tiny models written by llama.cpp's tools (same key set and value
types; at the tiny models' own dimensions the same tensor names, shapes and Q4_K_M type mix),
gguf's own reader and dequantize (every block finite), and our loader running a forward pass.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

from inference import synthetic
from inference.errors import LecternError
from inference.models import load_model
from inference.synthetic_blocks import SUPPORTED, random_tensor, unit_std
from tests.conftest import golden_dir

# the golden tiny models' dimensions (see their metadata)
TINY_KIMI = dict(n_embd=256, n_head=4, head_dim=64, kv_lora=64, n_rope=16, n_nope=32, v_mla=32, n_ff=512,
                 n_ff_exp=256, n_expert=8, n_expert_used=2, n_vocab=512)
TINY_STEP = dict(n_embd=256, head_dim=64, n_head_full=4, n_head_swa=8, n_head_kv=2, n_ff=512, n_ff_exp=256,
                 n_expert=8, n_expert_used=2, n_vocab=512, window=8)
SMALL = {"kimi-linear-48b-slice": dict(TINY_KIMI, head_dim=128, kv_lora=256, n_rope=64, n_nope=128, v_mla=128),
         "step35-flash-slice": dict(TINY_STEP, head_dim=128)}
GOLDEN_STEM = {"kimi-linear-48b-slice": "tiny-kimi-linear", "step35-flash-slice": "tiny-step35"}


def reader_meta(r: GGUFReader) -> dict:
    return {k: tuple(f.types) for k, f in r.fields.items() if not k.startswith("GGUF.")}


@pytest.mark.parametrize("name", synthetic.NAMES)
def test_metadata_keys_and_types_as_golden(name, tmp_path):
    gold = GGUFReader(golden_dir() / "models" / f"{GOLDEN_STEM[name]}-Q4_K_M.gguf")
    path = synthetic.write(synthetic.build(name, "Q4_K_M", dims=SMALL[name]), tmp_path / "m.gguf")
    assert reader_meta(GGUFReader(path)) == reader_meta(gold)


@pytest.mark.parametrize("name,layers", [("kimi-linear-48b-slice", 4), ("step35-flash-slice", 5)])
def test_q4_k_m_mix_and_shapes_as_golden(name, layers, tmp_path):
    """At the tiny models' dimensions the tensors (names, shapes, Q4_K_M types) are llama.cpp's.
    kimi: compared on the first 4 layers (the tiny model puts KDA, not MLA, in its last layer)."""
    dims = TINY_KIMI if name.startswith("kimi") else TINY_STEP
    spec = synthetic.build(name, "Q4_K_M", layers=layers, dims=dims)
    gold = GGUFReader(golden_dir() / "models" / f"{GOLDEN_STEM[name]}-Q4_K_M.gguf")
    want = {t.name: (t.tensor_type.name, tuple(int(n) for n in t.shape)) for t in gold.tensors
            if not t.name.startswith(f"blk.{layers}.")}
    got = {t.name: (t.qtype.name, t.ne) for t in spec.tensors}
    if name.startswith("kimi"):   # our 4-layer kimi uses n_layer = 4 in use_more_bits, the tiny one 5
        want = {k: v for k, v in want.items() if "ffn_down" not in k}
        got = {k: v for k, v in got.items() if "ffn_down" not in k}
    assert got == want


def test_full_size_shapes():
    k = {t.name: t.ne for t in synthetic.build("kimi-linear-48b-slice").tensors}
    assert k["token_embd.weight"] == (2304, 32000) and k["blk.0.attn_q.weight"] == (2304, 4096)
    assert k["blk.0.ffn_gate.weight"] == (2304, 9216) and k["blk.1.ffn_gate_exps.weight"] == (2304, 1024, 32)
    assert k["blk.3.attn_k_b.weight"] == (128, 512, 32) and k["blk.3.attn_v_b.weight"] == (512, 128, 32)
    assert k["blk.3.attn_kv_a_mqa.weight"] == (2304, 576) and k["blk.3.attn_q.weight"] == (2304, 32 * 192)
    assert "blk.2.ssm_f_a.weight" in k and "blk.3.ssm_f_a.weight" not in k     # 3 KDA + 1 MLA
    s = synthetic.build("step35-flash-slice")
    meta = {m[0]: m[2] for m in s.meta}
    assert meta["step35.attention.head_count"] == [64, 96, 96, 96]
    assert meta["step35.attention.sliding_window_pattern"] == [False, True, True, True]
    assert meta["step35.attention.sliding_window"] == 512 and meta["step35.attention.head_count_kv"] == [8] * 4
    t = {t.name: t.ne for t in s.tensors}
    assert t["blk.0.attn_q.weight"] == (4096, 8192) and t["blk.1.attn_q.weight"] == (4096, 12288)
    assert t["blk.2.ffn_down_exps.weight"] == (1280, 4096, 32) and t["output.weight"] == (4096, 32000)
    # the real 48B model's 27 layers: MLA exactly at HF's full_attn_layers (1-based 4, 8, ..., 24, 27)
    meta = {m[0]: m[2] for m in synthetic.build("kimi-linear-48b-slice", layers=27).meta}
    mla = [i for i, v in enumerate(meta["kimi-linear.attention.head_count_kv"]) if v]
    assert mla == [3, 7, 11, 15, 19, 23, 26]


@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda t: t.name)
def test_random_blocks_dequantize_finite_with_the_asked_spread(qtype):
    rng = np.random.default_rng(1)
    for std in (1.0, 2304 ** -0.5, 11264 ** -0.5):
        x = dequantize(random_tensor(qtype, 256 * 256, std, rng), qtype)
        assert np.isfinite(x).all() and x.size == 256 * 256
        assert 0.5 * std < np.std(x) < 2.0 * std, (qtype.name, std, np.std(x))
        assert abs(np.mean(x)) < 0.5 * std
    if qtype in synthetic.T.__members__.values() and qtype.name not in ("F32", "F16", "BF16"):
        assert unit_std(qtype) > 0


@pytest.mark.parametrize("ftype", ["Q4_K_M", "F16", "Q8_0", "Q4_0", "Q6_K", "Q5_K", "Q2_K", "Q3_K", "Q4_1", "BF16"])
@pytest.mark.parametrize("name", synthetic.NAMES)
def test_written_file_loads_dequantizes_and_runs(name, ftype, tmp_path):
    spec = synthetic.build(name, ftype, dims=SMALL[name])
    path = synthetic.write(spec, tmp_path / "m.gguf")
    r = GGUFReader(path)
    assert len(r.tensors) == len(spec.tensors)
    for t in r.tensors:                                      # every block, gguf's own dequantize
        assert np.isfinite(dequantize(t.data, t.tensor_type)).all(), t.name
    m = load_model(path)
    assert m.gguf.architecture == spec.arch and m.n_vocab == 512
    logits = m.logits(np.array([1, 17, 300, 511, 42, 7]))
    assert logits.shape == (6, 512) and np.isfinite(logits).all()
    assert 0.05 < np.std(logits) < 100


def test_bad_names_are_refused():
    with pytest.raises(LecternError, match="unknown synthetic model"):
        synthetic.build("llama-7b")
    with pytest.raises(LecternError, match="unknown weight type"):
        synthetic.build("step35-flash-slice", "Q9_K")
    with pytest.raises(LecternError, match="unknown dimension"):
        synthetic.build("step35-flash-slice", dims={"n_heads": 3})


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "app", "bench", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_cli_writes_and_benchmarks(tmp_path):
    out = tmp_path / "k.gguf"
    dims = ",".join(f"{k}={v}" for k, v in SMALL["kimi-linear-48b-slice"].items())
    p = run_cli("--synthetic", "kimi-linear-48b-slice", "--type", "Q8_0", "--out", str(out), "--dims", dims,
                "-p", "16", "-n", "2", "-t", "1", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["file"] == str(out) and r["architecture"] == "kimi-linear" and r["prefill_tokens_per_s"] > 0
    assert load_model(out).gguf.metadata["general.file_type"] == 7


def test_cli_only_estimates_a_too_large_model(tmp_path):
    out = tmp_path / "big.gguf"
    p = run_cli("--synthetic", "kimi-linear-48b-slice", "--layers", "27", "--experts", "256",
                "--out", str(out), "--max-gb", "1", "--contexts", "1024")
    assert p.returncode == 0, p.stderr
    assert "not written" in p.stderr and "weights 2" in p.stderr and not out.exists()
    # 7 MLA layers x (512 + 64) latent x 2 bytes (F16 cache)
    assert "attention cache 8064 bytes/token" in p.stderr
