"""`lectern chat` driven through a pipe: turns, prefix reuse, /reset, /exit, EOF, Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from inference.engine import Engine
from inference.sampling import GREEDY
from tests.conftest import golden_dir, load_real

TINY = str(golden_dir() / "models" / "tiny-llama-F16.gguf")


def chat(stdin: str, *args, timeout=900):
    p = subprocess.run([sys.executable, "-m", "app", "chat", *args], input=stdin, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def expected_answers(path, questions, n, system=None):
    """The same conversation through the engine API, one fresh session per turn."""
    e = Engine.load(path)
    messages = [{"role": "system", "content": system}] if system else []
    answers = []
    for q in questions:
        messages.append({"role": "user", "content": q})
        a = e.session(1024).chat(messages, GREEDY.with_(max_tokens=n)).run().text
        messages.append({"role": "assistant", "content": a})
        answers.append(a)
    return answers


def test_a_conversation_keeps_its_history_and_reuses_the_state():
    code, out, err = chat("hello there\nand what else?\n/exit\nnot read\n", "-m", TINY,
                          "--temperature", "0", "-n", "6", "--stats")
    assert code == 0, err
    want = expected_answers(TINY, ["hello there", "and what else?"], 6)
    assert out == "".join(a + "\n" for a in want)
    stats = re.findall(r"prompt (\d+) tokens \((\d+) reused\)", err)
    assert len(stats) == 2
    (n1, r1), (n2, r2) = [(int(a), int(b)) for a, b in stats]
    assert r1 == 0 and r2 >= n1        # the second turn re-read nothing of the first prompt
    assert "Traceback" not in err


def test_reset_forgets_the_conversation_and_eof_exits():
    code, out, err = chat("hello there\n/reset\nhello there\n", "-m", TINY, "--temp", "0", "-n", "5",
                          "--system", "be brief")
    assert code == 0, err
    answer = expected_answers(TINY, ["hello there"], 5, system="be brief")[0]
    assert out == answer + "\n" + answer + "\n"
    assert "conversation reset" in err


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on():
    # --ignore-eos: the answer runs to the full context (seconds even on the JIT), so the signal
    # lands mid-answer whatever the machine's speed
    p = subprocess.Popen([sys.executable, "-m", "app", "chat", "-m", TINY, "-c", "2048", "--seed", "3",
                          "--min-p", "0", "--top-k", "0", "--ignore-eos"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"tell me everything\n")
        p.stdin.flush()
        assert os.read(p.stdout.fileno(), 1)      # the answer has started
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        p.stdin.write(b"/exit\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err.decode()
    assert b"(stopped)" in err and b"Traceback" not in err


def test_bad_options_exit_1():
    code, out, err = chat("", "-m", TINY, "--min-p", "-1")
    assert code == 1 and "min_p" in err and "Traceback" not in err


@pytest.mark.slow
def test_default_model_chat_answers_like_llama_cpp():
    """The built-in SmolLM2 through a pipe: the engine's greedy answer, which is llama.cpp's up to a
    README near tie (the JIT's float summation order meets one at step 7), then a second turn."""
    from inference.paths import default_model_path
    from inference.sampling import GREEDY
    from tests.inference.test_engine import assert_follows_greedy

    p = load_real("smollm2-135m-instruct.json")["prompts"][0]
    code, out, err = chat("What is the capital of France?\nThanks!\n", "--temperature", "0", "-n", "12",
                          "--stats")
    assert code == 0, err
    e = Engine.load(default_model_path())
    gen = e.session(256).generate(p["ids"], GREEDY.with_(max_tokens=12)).run()
    assert_follows_greedy(e, p["ids"], gen.tokens, p["greedy_ids"][:12])
    want = gen.text
    lines = out.splitlines()
    assert lines[0] == want
    assert len(lines) >= 2 and lines[1].strip()
    reused = [int(x) for x in re.findall(r"\((\d+) reused\)", err)]
    assert reused[0] == 0 and reused[1] >= len(p["ids"])
