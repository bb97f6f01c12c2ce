"""`lectern serve`: prints its URL once it listens, serves the model, refuses unsafe or bad options."""
from __future__ import annotations

import signal
import subprocess
import sys

import openai
import pytest

from inference.engine import Engine
from inference.sampling import GREEDY
from tests.inference.server.serving import TINY, health, request, serve_process


def lectern(*args, timeout=120):
    p = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_serve_prints_its_url_and_answers_like_the_engine():
    with serve_process("-m", TINY, "--ctx-size", "128") as (proc, url):
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        h = health(url)
        assert h["model"] == "tiny-llama-Q8_0.gguf" and h["n_ctx"] == 128
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = c.completions.create(model="m", prompt="the city", temperature=0, max_tokens=8)
        e = Engine.load(TINY)
        assert r.choices[0].text == e.session(128).generate(
            e.encode_text("the city"), GREEDY.with_(max_tokens=8)).run().text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0                      # a clean stop


def test_serve_with_a_key_refuses_requests_without_it():
    with serve_process("-m", TINY, "--api-key", "abc") as (_, url):
        assert request(url, "GET", "/v1/models")[0] == 401
        assert request(url, "GET", "/v1/models", headers={"Authorization": "Bearer abc"})[0] == 200


def test_serve_without_model_uses_the_builtin_default():
    from inference.paths import default_model_path

    with serve_process() as (_, url):
        assert request(url, "GET", "/v1/models")[2]["data"][0]["id"] == default_model_path().name


@pytest.mark.parametrize("args, message", [
    (["-m", TINY, "--host", "0.0.0.0"], "--api-key"),
    (["-m", "/no/such/model.gguf"], "/no/such/model.gguf"),
    (["-m", TINY, "--port", "70000"], "between 0 and 65535"),
    (["-m", TINY, "--queue-size", "0"], "--queue-size"),
])
def test_bad_options_are_one_clear_line(args, message):
    code, out, err = lectern("serve", *args)
    assert code == 1 and message in err and "Traceback" not in err and "listening" not in out, err


def test_port_in_use_is_a_clear_error():
    with serve_process("-m", TINY) as (_, url):
        port = url.rsplit(":", 1)[1]
        code, out, err = lectern("serve", "-m", TINY, "--port", port)
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
