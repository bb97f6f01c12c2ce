"""Request validation: any JSON body gives a checked Request or a 4xx ApiError, never another error."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from inference.sampling import SamplingParams
from inference.server.schema import ApiError, parse_chat, parse_completion, parse_json

scalars = st.none() | st.booleans() | st.integers(-10**20, 10**20) | \
    st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                      max_leaves=12)
FIELDS = ["model", "messages", "prompt", "temperature", "top_p", "top_k", "min_p", "max_tokens",
          "max_completion_tokens", "stop", "seed", "stream", "stream_options", "n", "logprobs",
          "frequency_penalty", "presence_penalty", "repeat_penalty", "repeat_last_n", "echo", "user"]
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "x"]),
                                 "content": st.text(max_size=5) | values})
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6),
                         values | st.lists(message, max_size=3), max_size=6) | values


def check(parse, body):
    try:
        req = parse(body)
    except ApiError as e:
        assert 400 <= e.status < 500 and e.message
        err = e.body()["error"]
        json.dumps(err)
        assert set(err) == {"message", "type", "param", "code"}
        return
    assert isinstance(req.params, SamplingParams)
    req.params.validate()
    assert req.params.max_tokens is None or req.params.max_tokens >= 1
    if req.kind == "chat":
        assert req.messages and all(isinstance(m["content"], str) for m in req.messages)
    else:
        assert isinstance(req.prompt, str) and req.prompt or \
            all(isinstance(t, int) for t in req.prompt) and req.prompt


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_any_body_is_a_request_or_a_4xx(body):
    check(parse_chat, body)
    check(parse_completion, body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_parse_or_give_invalid_json(raw):
    try:
        body = parse_json(raw)
    except ApiError as e:
        assert e.status == 400 and e.code == "invalid_json"
        return
    check(parse_chat, body)


def test_accepted_fields_become_sampling_params():
    r = parse_chat({"model": "m", "messages": [{"role": "developer", "content": [
        {"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
        {"role": "user", "content": "hi"}], "temperature": 0, "top_p": 0.5, "top_k": 3, "min_p": 0.1,
        "max_completion_tokens": 7, "stop": "END", "seed": 9, "frequency_penalty": 0.5,
        "stream": True, "stream_options": {"include_usage": True}, "n": 1, "user": "u"})
    assert r.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert r.params == SamplingParams(temperature=0.0, top_p=0.5, top_k=3, min_p=0.1, max_tokens=7,
                                      stop=("END",), seed=9, frequency_penalty=0.5)
    assert r.stream and r.include_usage
    c = parse_completion({"prompt": [[1, 2, 3]]})
    assert c.prompt == [1, 2, 3] and c.params.max_tokens == 16      # OpenAI's default for completions
    assert parse_chat({"messages": [{"role": "user", "content": "x"}]}).params.max_tokens is None
