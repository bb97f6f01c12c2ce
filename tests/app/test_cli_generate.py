"""`lectern generate`: streams the answer to stdout; raw and chat-template prompts; clean errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from inference.engine import Engine
from inference.sampling import GREEDY
from tests.conftest import golden_dir, load_real

TINY = str(golden_dir() / "models" / "tiny-llama-F16.gguf")


def lectern(*args, timeout=900):
    p = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def engine_greedy(path, tokens, n):
    return Engine.load(path).session(512).generate(tokens, GREEDY.with_(max_tokens=n)).run().text


def test_raw_prompt_is_tokenized_with_special_tokens_and_continued():
    prompt = "the city</s>of a state"
    code, out, err = lectern("generate", "-m", TINY, "--temperature", "0", "-n", "12", "--raw", prompt)
    assert code == 0, err
    e = Engine.load(TINY)
    tokens = e.encode_text(prompt)
    assert tokens[0] == e.tokenizer.bos_id                   # BOS: this vocabulary asks for it
    assert e.tokenizer.eos_id in tokens                       # "</s>" parsed as the special token
    assert out == engine_greedy(TINY, tokens, 12)


def test_without_raw_the_prompt_is_a_user_message_in_the_chat_template():
    code, out, err = lectern("generate", "-m", TINY, "--temp", "0", "-n", "10", "--system", "be brief",
                             "hello there", "--stats")
    assert code == 0, err
    e = Engine.load(TINY)
    tokens = e.encode_chat([{"role": "system", "content": "be brief"},
                            {"role": "user", "content": "hello there"}])
    assert out == engine_greedy(TINY, tokens, 10)
    assert "prompt %d tokens" % len(tokens) in err and "stop: length" in err


def test_same_seed_same_text():
    args = ("generate", "-m", TINY, "--seed", "42", "--temperature", "1.2", "-n", "16", "--raw", "a state")
    first, second = lectern(*args), lectern(*args)
    assert first[0] == 0 and first[1] == second[1] and first[1]
    other = lectern(*args[:3], "43", *args[4:])
    assert other[1] != first[1]


def test_output_is_streamed_while_generating():
    p = subprocess.Popen([sys.executable, "-m", "app", "generate", "-m", TINY, "-n", "300", "-c", "512",
                          "--seed", "1", "--min-p", "0", "--raw", "the"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = os.read(p.stdout.fileno(), 1)      # blocks until the first piece is flushed
        assert first
        assert p.poll() is None, "the first text should arrive long before the answer is complete"
    finally:
        p.kill()
        p.communicate()


@pytest.mark.parametrize("args, message", [
    (["-m", "/no/such/model.gguf", "hi"], "/no/such/model.gguf"),
    (["-m", TINY, "--top-p", "2", "hi"], "top_p must be between 0 and 1"),
    (["-m", TINY, "-c", "16", "-n", "100", "hi"], "context size of 16"),
])
def test_errors_are_one_clear_line(args, message):
    code, out, err = lectern("generate", *args)
    assert code == 1 and message in err and "Traceback" not in err, err


@pytest.mark.slow
def test_default_model_answers_like_llama_cpp():
    """No -m: the built-in SmolLM2; its greedy answer is llama.cpp's (golden, 24 tokens)."""
    p = load_real("smollm2-135m-instruct.json")["prompts"][1]
    code, out, err = lectern("generate", "--temperature", "0", "-n", "24",
                             "--system", "You are a concise assistant.",
                             "Give me three tips for writing clear code.")
    assert code == 0, err
    from inference.paths import default_model_path

    want = Engine.load(default_model_path()).tokenizer.decode(p["greedy_ids"][:24], special=False)
    assert out == want
    assert p["greedy_text"].startswith(out)


def test_ignore_eos_runs_past_the_end_token():
    """Greedy on the tiny model ends with its EOS; with --ignore-eos the same answer goes on to -n,
    starting with exactly the text the plain run produced (EOS only masked where it would win)."""
    base = ("generate", "-m", TINY, "--temperature", "0", "-c", "2048", "-n", "300", "--stats",
            "tell me everything")
    code, plain, err = lectern(*base)
    assert code == 0 and "stop: eog" in err, err
    code, longer, err = lectern(*base, "--ignore-eos")
    assert code == 0 and "stop: length" in err and "300 generated" in err, err
    assert longer.startswith(plain) and len(longer) > len(plain)
