"""Every tokenization llama.cpp made of the golden texts, reproduced exactly.

For each vocabulary (Gemma 3 SPM, SmolLM2 BPE `smollm`, Qwen2 BPE `deepseek-r1-qwen`) and every
text in ../shared/golden/real/*.json: `ids` (add_bos, special tokens as plain text),
`ids_special` (special tokens parsed), `detok` (the ids decoded, control tokens left out) and
every chat prompt's ids.
"""
from __future__ import annotations

import json

import pytest

from tests.conftest import GOLDEN

FILES = {"gemma3": "gemma3-270m.json", "smollm2": "smollm2-135m-instruct.json", "qwen2": "qwen2-bpe.json"}


def _cases(kind: str) -> list:
    out = []
    for name, fname in FILES.items():
        path = GOLDEN / "real" / fname
        if not path.is_file():
            out.append(pytest.param(name, None, id=f"{name}-golden-missing"))
            continue
        items = json.loads(path.read_text())[kind]
        out += [pytest.param(name, i, id=f"{name}-{i}") for i in range(len(items))]
    return out


@pytest.fixture
def tok(qwen2_tok, smollm2_tok, gemma3_tok):
    return {"qwen2": qwen2_tok, "smollm2": smollm2_tok, "gemma3": gemma3_tok}


def _entry(name: str, kind: str, i: int | None) -> dict:
    if i is None:
        pytest.fail(f"golden file {FILES[name]} is missing from {GOLDEN / 'real'}")
    return json.loads((GOLDEN / "real" / FILES[name]).read_text())[kind][i]


@pytest.mark.parametrize("name,i", _cases("tokenize"))
def test_tokenize_plain(tok, name, i):
    e = _entry(name, "tokenize", i)
    assert tok[name].encode(e["text"], add_bos=True, special=False) == e["ids"]


@pytest.mark.parametrize("name,i", _cases("tokenize"))
def test_tokenize_special(tok, name, i):
    e = _entry(name, "tokenize", i)
    assert tok[name].encode(e["text"], add_bos=True, special=True) == e["ids_special"]


@pytest.mark.parametrize("name,i", _cases("tokenize"))
def test_detokenize(tok, name, i):
    """llama.cpp's detok drops the BOS: it is the ids decoded without control tokens."""
    e = _entry(name, "tokenize", i)
    t = tok[name]
    assert t.decode(e["ids"], special=False) == e["detok"]
    # with control tokens printed, the BOS text comes in front (none of these adds a space prefix)
    bos = t.token_text(t.bos_id) if t.add_bos else ""
    assert t.decode(e["ids"], special=True) == bos + e["detok"]


@pytest.mark.parametrize("name,i", _cases("prompts"))
def test_prompt_ids(tok, name, i):
    e = _entry(name, "prompts", i)
    assert tok[name].encode(e["text"], add_bos=True, special=True) == e["ids"]


@pytest.mark.parametrize("name,i", _cases("prompts"))
def test_prompt_greedy_decodes(tok, name, i):
    """llama.cpp's greedy continuation decodes to the text it printed, and token by token too."""
    e = _entry(name, "prompts", i)
    t = tok[name]
    assert t.decode(e["greedy_ids"], special=False) == e["greedy_text"]
    dec = t.decoder(special=False)
    assert "".join(dec.add(g) for g in e["greedy_ids"]) + dec.flush() == e["greedy_text"]
