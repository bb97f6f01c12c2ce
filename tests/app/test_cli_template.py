"""`lectern template`: prints exactly the prompt llama.cpp rendered for the golden conversations."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from app.cli import main
from tests.conftest import REPO, load_real


def golden_smollm2() -> list[str]:
    return [p["text"] for p in load_real("smollm2-135m-instruct.json")["prompts"]]


def chatml_turns(text: str) -> list[dict]:
    return [{"role": r, "content": c}
            for r, c in re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n", text, flags=re.S)]


def test_default_model_prints_the_golden_prompt_exactly(capsys):
    for text in golden_smollm2():
        assert main(["template", json.dumps(chatml_turns(text))]) == 0
        out = capsys.readouterr()
        assert out.out == text   # no newline added
        assert out.err == ""


def test_messages_from_a_file_and_no_generation_prompt(tmp_path, capsys, smollm2_path):
    text = golden_smollm2()[1]
    f = tmp_path / "conversation.json"
    f.write_text(json.dumps(chatml_turns(text)), encoding="utf-8")
    assert main(["template", "-m", str(smollm2_path), str(f), "--no-generation-prompt"]) == 0
    assert capsys.readouterr().out == text.removesuffix("<|im_start|>assistant\n")


def test_gemma3_file_uses_builtin_gemma(capsys, gemma3_path):
    text = load_real("gemma3-270m.json")["prompts"][0]["text"]
    question = re.fullmatch(r"<start_of_turn>user\n(.*)<end_of_turn>\n<start_of_turn>model\n", text, re.S)[1]
    msgs = json.dumps([{"role": "user", "content": question}])
    assert main(["template", "-m", str(gemma3_path), msgs, "-v"]) == 0
    out = capsys.readouterr()
    assert out.out == text
    assert out.err.strip() == "template: gemma"


def test_builtin_override(capsys):
    assert main(["template", "--builtin", "llama3", '[{"role": "user", "content": "Hi"}]']) == 0
    assert capsys.readouterr().out == (
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("arg, message", [
    ('[{"role": "user", "content": "Hi"', "not valid JSON (line 1"),
    ("no-such-file.json", "neither JSON nor an existing file"),
    ('{"role": "user", "content": "Hi"}', "must hold a JSON list"),
    ('[{"role": "user"}]', "messages[0]['content'] must be a string"),
    ('[{"role": "user", "content": "Hi"}, {"role": "user", "content": "again"}]', None),
])
def test_bad_input_exits_1_with_a_clear_error(arg, message, capsys):
    argv = ["template", arg] if message else ["template", "--builtin", "gemma", arg]
    assert main(argv) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("lectern: error: ")
    assert (message or "Conversation roles must alternate") in out.err


def test_bad_json_file(tmp_path, capsys):
    f = tmp_path / "bad.json"
    f.write_text("[{'role': 'user'}]")
    assert main(["template", str(f)]) == 1
    assert f"{f} is not valid JSON" in capsys.readouterr().err


def test_missing_model_file(capsys, tmp_path):
    assert main(["template", "-m", str(tmp_path / "none.gguf"), "[]"]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_command_line_bytes_are_exact():
    """Through a real process: stdout holds the prompt's UTF-8 bytes and nothing else."""
    msgs = [{"role": "system", "content": "Réponds en français."}, {"role": "user", "content": "Où ?\n"}]
    r = subprocess.run([sys.executable, "-m", "app", "template", json.dumps(msgs, ensure_ascii=False)],
                       capture_output=True, cwd=REPO, timeout=120,
                       env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert r.returncode == 0, r.stderr
    want = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs) + "<|im_start|>assistant\n"
    assert r.stdout == want.encode("utf-8")
