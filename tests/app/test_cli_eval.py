"""`lectern eval`: logits written to .npy equal the model's and llama.cpp's; errors are clean."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from app.cli import main
from inference import load_model
from tests.conftest import golden_dir
from tests.inference.golden import assert_close

STEM = "tiny-llama-Q8_0"


def model_file(stem=STEM):
    return str(golden_dir() / "models" / f"{stem}.gguf")


def lectern(*args, **kw):
    """The real command in a subprocess: exit code, stdout, stderr."""
    p = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                       timeout=600, **kw)
    return p.returncode, p.stdout, p.stderr


def test_eval_writes_the_models_logits_and_they_match_llama_cpp(tmp_path):
    ref = np.load(golden_dir() / "ref" / f"{STEM}.npz")
    tokens = [int(t) for t in ref["tokens"]]
    out = tmp_path / "logits.npy"
    assert main(["eval", "-m", model_file(), "--tokens", json.dumps(tokens), "--out", str(out)]) == 0
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (len(tokens), 512)
    np.testing.assert_array_equal(got, load_model(model_file()).logits(tokens))
    report = assert_close(got, ref["logits"], STEM)
    assert report.median < 0.1


def test_eval_reads_tokens_from_json_and_npy_files(tmp_path):
    tokens = [1, 435, 327, 263]
    (tmp_path / "t.json").write_text(json.dumps(tokens))
    np.save(tmp_path / "t.npy", np.array(tokens, np.int32))
    for src in ("t.json", "t.npy"):
        out = tmp_path / f"{src}.out"       # not ending in .npy: written exactly there
        assert main(["eval", "-m", model_file(), "--tokens", str(tmp_path / src), "--out", str(out)]) == 0
        np.testing.assert_array_equal(np.load(out), load_model(model_file()).logits(tokens))


@pytest.mark.parametrize("tokens, message", [
    ("[1, 2, 999]", "token id 999 is outside"),
    ("[1, 2,", "not valid JSON"),
    ("[]", "non-empty JSON list"),
    ('["a"]', "integer token ids"),
    ("no-such-file.json", "neither a JSON list"),
])
def test_eval_bad_tokens_are_reported(tmp_path, capsys, tokens, message):
    code = main(["eval", "-m", model_file(), "--tokens", tokens, "--out", str(tmp_path / "o.npy")])
    assert code == 1
    assert message in capsys.readouterr().err


def write_gguf(path, arch):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_errors_exit_1_with_a_message_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file at all" * 10)
    unknown = tmp_path / "unknown.gguf"
    write_gguf(unknown, "mamba9")
    cases = [
        (["eval", "-m", str(tmp_path / "missing.gguf"), "--tokens", "[1]", "--out", "o.npy"], "missing.gguf"),
        (["eval", "-m", str(bad), "--tokens", "[1]", "--out", "o.npy"], "bad.gguf"),
        (["eval", "-m", str(unknown), "--tokens", "[1]", "--out", "o.npy"], "'mamba9' is not supported"),
        (["bench", "-m", str(unknown), "-p", "4", "-n", "1"], "'mamba9' is not supported"),
    ]
    for argv, message in cases:
        code, out, err = lectern(*argv, cwd=tmp_path)
        assert code == 1, (argv, err)
        assert message in err and "Traceback" not in err, err
        assert err.startswith("lectern: error:")
