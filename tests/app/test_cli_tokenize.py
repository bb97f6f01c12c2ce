"""`lectern tokenize` / `lectern detokenize` against llama.cpp's golden tokenizations."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from app.cli import main
from tests.conftest import REPO, golden_dir, load_real

QWEN2 = str(golden_dir() / "real" / "qwen2-bpe-vocab.gguf") if (golden_dir() / "real").is_dir() else "missing"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("entry", load_real("smollm2-135m-instruct.json")["tokenize"], ids=lambda e: repr(e["text"])[:30])
def test_tokenize_default_model_matches_golden(capsys, entry):
    rc, out, err = run(capsys, "tokenize", entry["text"])
    assert rc == 0 and err == ""
    assert json.loads(out) == entry["ids"]
    rc, out, _ = run(capsys, "tokenize", "--special", entry["text"])
    assert json.loads(out) == entry["ids_special"]


def test_tokenize_vocabulary_only_file(capsys):
    for e in load_real("qwen2-bpe.json")["tokenize"]:
        rc, out, _ = run(capsys, "tokenize", "-m", QWEN2, "--special", e["text"])
        assert rc == 0 and json.loads(out) == e["ids_special"]
    rc, out, _ = run(capsys, "tokenize", "-m", QWEN2, "--no-bos", "Hello world")
    assert json.loads(out) == load_real("qwen2-bpe.json")["tokenize"][0]["ids"][1:]


def test_tokenize_batch(capsys, monkeypatch):
    entries = load_real("qwen2-bpe.json")["tokenize"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(e["text"]) + "\n" for e in entries)))
    rc, out, _ = run(capsys, "tokenize", "-m", QWEN2, "--batch")
    assert rc == 0
    assert [json.loads(line) for line in out.splitlines()] == [e["ids"] for e in entries]


def test_tokenize_batch_bad_line(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO('"ok"\nnot json\n'))
    rc, out, err = run(capsys, "tokenize", "-m", QWEN2, "--batch")
    assert rc == 1 and "line 2 is not a JSON string" in err
    rc, _, err = run(capsys, "tokenize", "-m", QWEN2)
    assert rc == 1 and "TEXT or --batch" in err


def test_detokenize(capsys):
    for e in load_real("qwen2-bpe.json")["tokenize"]:
        rc, out, _ = run(capsys, "detokenize", "-m", QWEN2, "--no-special", json.dumps(e["ids"]))
        assert rc == 0 and out == e["detok"]
    rc, out, _ = run(capsys, "detokenize", json.dumps([1, 19556, 905, 2]))
    assert out == "<|im_start|>Hello world<|im_end|>"


@pytest.mark.parametrize("ids,msg", [("[1, 49152]", "token id 49152 is outside the vocabulary"),
                                     ("[-1]", "token id -1 is outside"),
                                     ("[1, 2", "not JSON"), ('["a"]', "list of integers")])
def test_detokenize_bad_ids(capsys, ids, msg):
    rc, out, err = run(capsys, "detokenize", ids)
    assert rc == 1 and out == "" and msg in err


def test_batch_through_a_real_process():
    """One process, many texts, through the installed entry point's module."""
    texts = ["Hello world", "<|im_start|>user\nHi<|im_end|>", ""]
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    r = subprocess.run([sys.executable, "-m", "app", "tokenize", "--special", "--batch"], cwd=REPO, env=env,
                       input="".join(json.dumps(t) + "\n" for t in texts), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0] == [19556, 905] and lines[1][0] == 1 and lines[1][-1] == 2 and lines[2] == []


def test_batch_answers_line_by_line():
    """A caller may write one text and wait for its ids before writing the next."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    p = subprocess.Popen([sys.executable, "-m", "app", "tokenize", "-m", QWEN2, "--batch"], cwd=REPO, env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for e in load_real("qwen2-bpe.json")["tokenize"][:3]:
            p.stdin.write(json.dumps(e["text"]) + "\n")
            p.stdin.flush()
            assert json.loads(p.stdout.readline()) == e["ids"]
    finally:
        p.stdin.close()
        assert p.wait(timeout=60) == 0
