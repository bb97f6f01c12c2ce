"""Chat templates: real files' templates against llama.cpp's rendered prompts, the published
formats of the built-ins, transformers' helpers, and the sandbox's limits."""
from __future__ import annotations

import functools
import json
import re
import sys
import threading
import time
from datetime import datetime

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from inference.chat_template import BUILTIN_NAMES, ChatTemplate, builtin_for, validate_messages
from inference.errors import TemplateError
from inference.gguf_file import open_gguf
from tests.conftest import golden_dir, load_real

QWEN2_VOCAB = "qwen2-bpe-vocab.gguf"   # a real DeepSeek-R1-Distill-Qwen vocabulary and template


@pytest.fixture(scope="module")
def smollm2(smollm2_path) -> ChatTemplate:
    return ChatTemplate.from_gguf(open_gguf(smollm2_path))


@pytest.fixture(scope="module")
def gemma3(gemma3_path) -> ChatTemplate:
    return ChatTemplate.from_gguf(open_gguf(gemma3_path))


@pytest.fixture(scope="module")
def r1() -> ChatTemplate:
    return ChatTemplate.from_gguf(open_gguf(golden_dir() / "real" / QWEN2_VOCAB))


def user(text: str) -> dict:
    return {"role": "user", "content": text}


# ------------------------------------------------------------------ golden: llama.cpp's prompts

# The conversations the golden prompts of smollm2-135m-instruct.json were rendered from (the JSON
# keeps only the rendered text). SmolLM2's template adds its default system prompt when the
# conversation has none: the first conversation relies on that.
SMOLLM2_CONVERSATIONS = [
    [user("What is the capital of France?")],
    [{"role": "system", "content": "You are a concise assistant."},
     user("Give me three tips for writing clear code.")],
]


def test_smollm2_file_template_renders_the_golden_prompts(smollm2):
    prompts = load_real("smollm2-135m-instruct.json")["prompts"]
    assert smollm2.name == "gguf"
    assert len(prompts) == len(SMOLLM2_CONVERSATIONS)
    for conversation, prompt in zip(SMOLLM2_CONVERSATIONS, prompts):
        assert smollm2.render(conversation, add_generation_prompt=True) == prompt["text"]
        assert smollm2.prompt(conversation) == prompt["text"]   # add_bos_token is false


def _parse_chatml(text: str) -> list[dict]:
    turns = re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n", text, flags=re.S)
    assert text.endswith("<|im_start|>assistant\n")
    return [{"role": r, "content": c} for r, c in turns]


def test_smollm2_every_golden_prompt_round_trips(smollm2):
    """Whatever conversations the golden file holds: its turns, rendered again, give its text."""
    for prompt in load_real("smollm2-135m-instruct.json")["prompts"]:
        messages = _parse_chatml(prompt["text"])
        assert messages and messages[0]["role"] == "system"
        assert smollm2.render(messages) == prompt["text"]


def test_smollm2_special_tokens(smollm2):
    assert (smollm2.bos_token, smollm2.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert smollm2.add_bos is False


def test_gemma3_file_without_template_uses_builtin_gemma(gemma3):
    data = load_real("gemma3-270m.json")
    chats = [p["text"] for p in data["prompts"] if p["text"].startswith("<start_of_turn>")]
    assert len(chats) >= 2   # the third golden prompt is plain text, not a conversation
    assert gemma3.name == "gemma"
    assert (gemma3.bos_token, gemma3.eos_token, gemma3.add_bos) == ("<bos>", "<eos>", True)
    for text in chats:
        m = re.fullmatch(r"<start_of_turn>user\n(.*)<end_of_turn>\n<start_of_turn>model\n", text, re.S)
        assert m, text
        assert gemma3.render([user(m.group(1))]) == text
        assert gemma3.prompt([user(m.group(1))]) == text


def test_deepseek_r1_file_template(r1):
    """A real, larger template (DeepSeek-R1-Distill-Qwen) in its published format."""
    assert r1.name == "gguf"
    bos = "<｜begin▁of▁sentence｜>"
    assert r1.bos_token == bos and r1.add_bos
    msgs = [{"role": "system", "content": "Be brief."}, user("Hi"),
            {"role": "assistant", "content": "<think>hmm</think>Hello!"}, user("Again")]
    want = ("Be brief.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜>"
            "<｜User｜>Again<｜Assistant｜>")
    assert r1.render(msgs) == bos + want
    assert r1.prompt(msgs) == want   # the tokenizer adds BOS itself, as llama.cpp strips it
    calls = [user("Hi"), {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
        {"role": "tool", "content": "42"}]
    assert r1.prompt(calls, add_generation_prompt=False) == (
        "<｜User｜>Hi<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n"
        '```json\n{"x": 1}\n```<｜tool▁call▁end｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>42'
        "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>")


def test_prompt_strips_bos_and_eos_only_when_the_tokenizer_adds_them():
    src = "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}"
    on = ChatTemplate(src, bos_token="<s>", eos_token="</s>", add_bos=True, add_eos=True)
    off = ChatTemplate(src, bos_token="<s>", eos_token="</s>")
    assert on.render([user("x")]) == off.render([user("x")]) == "<s>x</s>"
    assert on.prompt([user("x")]) == "x"
    assert off.prompt([user("x")]) == "<s>x</s>"


# ------------------------------------------------------------------ built-ins: published formats

CONVO = [{"role": "system", "content": "Be brief."}, user("Hi there"),
         {"role": "assistant", "content": "Hello!"}, user("Bye")]

BUILTIN_EXPECTED = {
    "chatml": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
              "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
              "<|im_start|>assistant\n",
    "gemma": "<start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\n"
             "Hello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n",
    "llama3": "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral": "[INST] Be brief.\n\nHi there [/INST]Hello!</s>[INST] Bye [/INST]",
    "phi3": "<|system|>\nBe brief.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\nHello!<|end|>\n"
            "<|user|>\nBye<|end|>\n<|assistant|>\n",
}


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_renders_published_format(name):
    t = ChatTemplate.builtin(name, bos_token="<s>", eos_token="</s>")
    assert t.name == name
    assert t.render(CONVO) == BUILTIN_EXPECTED[name]


@pytest.mark.parametrize("name", ["chatml", "gemma", "llama3", "phi3"])
def test_builtin_generation_prompt_is_the_only_difference(name):
    t = ChatTemplate.builtin(name)
    with_prompt = t.render(CONVO, add_generation_prompt=True)
    without = t.render(CONVO, add_generation_prompt=False)
    assert with_prompt.startswith(without) and len(with_prompt) > len(without)


def test_builtin_content_parts_are_joined():
    parts = [{"type": "text", "text": "Hi "}, {"type": "image"}, {"type": "text", "text": "there"}]
    t = ChatTemplate.builtin("chatml")
    assert t.render([user(parts)], add_generation_prompt=False) == "<|im_start|>user\nHi there<|im_end|>\n"
    g = ChatTemplate.builtin("gemma")
    assert g.render([user(parts)], add_generation_prompt=False) == (
        "<start_of_turn>user\nHi<start_of_image>there<end_of_turn>\n")


def test_builtin_chatml_writes_tool_calls():
    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": "é"}}}
    out = ChatTemplate.builtin("chatml").render(
        [user("1+1?"), {"role": "assistant", "content": None, "tool_calls": [call]}],
        add_generation_prompt=False)
    assert out.endswith('<|im_start|>assistant\n\n<tool_call>\n{"name": "add", "arguments": '
                        '{"a": 1, "b": "é"}}\n</tool_call><|im_end|>\n')


def test_gemma_rejects_non_alternating_roles():
    with pytest.raises(TemplateError, match="^Conversation roles must alternate"):
        ChatTemplate.builtin("gemma").render([user("a"), user("b")])


def test_unknown_builtin():
    with pytest.raises(TemplateError, match="chatml, gemma, llama3"):
        ChatTemplate.builtin("nope")


class Meta(dict):
    """GGUF metadata without a file: the family heuristics read nothing else."""

    def get(self, key, default=None):
        return super().get(key, default)


@pytest.mark.parametrize("arch, tokens, want", [
    ("gemma3", ["<pad>", "<eos>", "<bos>"], "gemma"),
    ("gemma2", ["<pad>"], "gemma"),
    ("llama", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "llama3"),
    ("qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "chatml"),
    ("llama", ["<s>", "</s>", "[INST]", "[/INST]"], "mistral"),
    ("phi3", ["<s>", "<|user|>"], "phi3"),
    ("llama", ["<unk>", "<s>", "</s>", "a", "b"], "chatml"),
    ("kimi-linear", [], "chatml"),
])
def test_family_detection(arch, tokens, want):
    assert builtin_for(arch, tokens) == want
    t = ChatTemplate.from_gguf(Meta({"general.architecture": arch, "tokenizer.ggml.tokens": tokens,
                                     "tokenizer.ggml.bos_token_id": 0}))
    assert t.name == want and t.bos_token == (tokens[0] if tokens else "")


def test_tiny_golden_models_get_a_builtin(golden):
    g = open_gguf(golden / "models" / "tiny-gemma3-F16.gguf")
    assert g.get("tokenizer.chat_template") is None
    assert ChatTemplate.from_gguf(g).name == "gemma"
    assert ChatTemplate.from_gguf(open_gguf(golden / "models" / "tiny-llama-F16.gguf")).name == "chatml"


# ------------------------------------------------------------------ transformers' helpers

def render(src: str, messages=None, **kw) -> str:
    return ChatTemplate(src).render(messages or [user("hi")], **kw)


def test_raise_exception_gives_the_templates_message():
    with pytest.raises(TemplateError) as e:
        render("{% if messages|length < 2 %}{{ raise_exception('need two messages, got ' ~ messages|length) }}{% endif %}")
    assert str(e.value) == "need two messages, got 1"


def test_tojson_matches_transformers():
    value = {"b": "é<&>'", "a": [1, 2.5, None, True]}
    assert render("{{ v|tojson }}", v=value) == json.dumps(value, ensure_ascii=False)
    assert render("{{ v|tojson(indent=2) }}", v=value) == json.dumps(value, ensure_ascii=False, indent=2)
    assert render("{{ v|tojson(sort_keys=true) }}", v=value) == json.dumps(value, ensure_ascii=False, sort_keys=True)
    assert render("{{ v|tojson(separators=(',', ':')) }}", v=value) == json.dumps(
        value, ensure_ascii=False, separators=(",", ":"))
    assert render("{{ v|tojson(ensure_ascii=true) }}", v=value) == json.dumps(value)


def test_loop_controls_and_trim_blocks():
    src = "{% for i in range(10) %}\n  {% if i == 2 %}{% continue %}{% endif %}\n  {% if i == 5 %}{% break %}{% endif %}\n{{ i }}\n{% endfor %}"
    assert render(src) == "0\n1\n3\n4\n"   # trim_blocks/lstrip_blocks eat the tag lines


def test_strftime_now():
    before = datetime.now().strftime("%Y-%m-%d")
    out = render("{{ strftime_now('%Y-%m-%d') }}")
    assert out in (before, datetime.now().strftime("%Y-%m-%d"))


def test_context_variables_pass_through():
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    src = ("{{ tools|tojson }}|{{ add_generation_prompt }}|{{ enable_thinking }}|{{ date_string }}|"
           "{{ bos_token }}{{ eos_token }}|{{ messages[1].tool_calls[0].function.name }}")
    msgs = [user("x"), {"role": "assistant", "content": "", "tool_calls": [tools[0]]}]
    t = ChatTemplate(src, bos_token="<s>", eos_token="</s>")
    out = t.render(msgs, add_generation_prompt=False, tools=tools, enable_thinking=False,
                   date_string="26 Jul 2024")
    assert out == f"{json.dumps(tools)}|False|False|26 Jul 2024|<s></s>|search"
    assert render("{{ tools is none }}|{{ enable_thinking is defined }}") == "True|False"


def test_generation_tag_renders_its_body():
    assert render("a{% generation %}b{% endgeneration %}c") == "abc"


def test_syntax_error_names_the_line():
    with pytest.raises(TemplateError, match="syntax error on line 3"):
        ChatTemplate("ok\nstill ok\n{% for x in %}{% endfor %}")


def test_runtime_error_names_the_line():
    with pytest.raises(TemplateError, match="line 2"):
        render("{% for m in messages %}\n{{ m.nope.deeper }}{% endfor %}")


# ------------------------------------------------------------------ message validation

@pytest.mark.parametrize("messages, match", [
    ("hello", "must be a list"),
    ([["user", "hi"]], r"messages\[0\] must be a dict"),
    ([{"content": "hi"}], r"messages\[0\] needs a 'role'"),
    ([{"role": 3, "content": "hi"}], "needs a 'role'"),
    ([{"role": "user"}], r"messages\[0\]\['content'\] must be a string"),
    ([user("a"), {"role": "user", "content": 7}], r"messages\[1\]\['content'\] must be a string"),
    ([user(["text"])], r"content'\]\[0\] must be a content part"),
    ([user("a") | {"extra": object()}], "only JSON values"),
    ([user("a") | {"meta": {1: "x"}}], "not a string"),
])
def test_bad_messages_are_rejected(messages, match):
    with pytest.raises(TemplateError, match=match):
        ChatTemplate.builtin("chatml").render(messages)


def test_assistant_tool_call_may_have_no_content():
    msgs = validate_messages([{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}])
    assert msgs[0]["tool_calls"][0]["function"]["name"] == "f"


def test_bad_tools_are_rejected():
    with pytest.raises(TemplateError, match="tools must be a list"):
        ChatTemplate.builtin("chatml").render([user("x")], tools="search")


# ------------------------------------------------------------------ sandbox

@pytest.mark.parametrize("src", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__['os'] }}",
    "{{ range.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ self.__init__ }}",
    "{{ messages.append({'role': 'x'}) }}",
    "{{ messages[0].update({'role': 'x'}) }}",
    "{{ messages[0]['__class__'] }}",
])
def test_sandbox_escapes_are_blocked(src):
    with pytest.raises(TemplateError, match="escape its sandbox.*unsafe"):
        render(src)


@pytest.mark.parametrize("src", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set r = range(100000)|list %}{% for i in r %}{% for j in r %}{% for k in r %}{% endfor %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% if i < 0 %}x{% endif %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) if j < 0 %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% for i in range(100000) %}{{ caller() if n < 0 }}{% endfor %}{{ f(n + 1) if n < 50 }}{% endmacro %}{{ f(0) }}",
])
def test_endless_templates_are_stopped_in_time(src):
    t = ChatTemplate(src, time_limit=0.3)
    t0 = time.monotonic()
    with pytest.raises(TemplateError, match="took too long"):
        t.render([user("hi")])
    assert time.monotonic() - t0 < 5.0   # stopped near its 0.3 s limit, with room for a loaded machine


def test_time_limit_works_in_a_worker_thread_and_restores_tracing():
    t = ChatTemplate("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                     time_limit=0.3)
    errors: list[BaseException] = []

    def worker():
        try:
            t.render([user("hi")])
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            errors.append(e)

    th = threading.Thread(target=worker)
    th.start()
    th.join(5)
    assert not th.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], TemplateError)
    before = sys.gettrace()
    with pytest.raises(TemplateError):
        t.render([user("hi")])
    assert sys.gettrace() is before
    assert ChatTemplate.builtin("chatml").render([user("ok")])   # still renders afterwards


@pytest.mark.parametrize("src", [
    "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}",
    "{{ 'x' * 10**10 }}",
    "{{ [1] * 10**10 }}",
    "{{ 2 ** (10**9) }}",
    "{{ 'x'.ljust(10**10) }}",
    "{{ 'x'|center(10**10) }}",
    "{{ (1).to_bytes(10**9, 'big') }}",
    "{{ '{:>1000000000}'.format(1) }}",
    "{{ '%1000000000d' % 1 }}",
    "{{ ('\n' * 900000)|indent(900000) }}",
    "{{ ('\t' * 900000).expandtabs(900000) }}",
    "{{ range(10)|batch(1000000000, 'x')|list|length }}",
    "{{ range(3)|slice(1000000000)|list|length }}",
    "{% set b = range(100000)|list %}{{ ([b] * 1000)|sum(start=[])|length }}",
    "{% set b = 'x' * 900000 %}{{ ([b] * 100000)|join }}",
    "{% set b = 'x' * 900000 %}{{ ''.join([b] * 100000) }}",
    "{% set ns = namespace(s='xxxxxxxxxx') %}{% for i in range(30) %}{% set ns.s = ns.s|replace('', ns.s) %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set ns = namespace(l=[]) %}{% set b = 'x' * 900000 %}{% for i in range(100000) %}{% set ns.l = ns.l + [b ~ i] %}{% endfor %}",
    "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
    "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
    "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}",
    "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = (ns.x, ns.x) %}{% endfor %}{{ ns.x|tojson }}",
    "{% set ns = namespace(x={}) %}{% for i in range(60) %}{% set ns.x = {'a': ns.x, 'b': ns.x} %}{% endfor %}{{ ns.x == ns.x }}",
    "{% set ns = namespace(x=[1], y=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% set ns.y = [ns.y, ns.y] %}{% endfor %}{{ ns.x == ns.y }}",
    "{{ strftime_now('%1000000000Y') }}",
    "{{ {'a': 1}|tojson(indent=100000000) }}",
])
def test_absurd_output_is_refused_before_it_is_built(src):
    t0 = time.monotonic()
    with pytest.raises(TemplateError, match="absurd output|too large|took too long"):
        render(src)
    assert time.monotonic() - t0 < 10.0   # refused up front or at the deadline, never run out


@pytest.mark.parametrize("src", [
    "{{ range(10)|slice(3)|list }}{{ range(10)|slice(3, 'x')|list }}",
    "{{ [1, 2, 3]|sum }}{{ [[1], [2]]|sum(start=[]) if false }}{{ [{'a': 2}]|sum(attribute='a') }}",
    "{{ ['a', 'b']|join(',') }}{{ [{'n': 'x'}, {'n': 'y'}]|join('-', attribute='n') }}",
    "{{ range(5)|batch(2, 0)|list }}{{ range(5)|batch(2)|list }}",
    "{{ 'a b c'|wordwrap(1) }}{{ 'a b c'|wordwrap(3, wrapstring='|') }}",
    "{{ 'abcb'|replace('b', 'x') }}{{ 'abcb'|replace('b', 'x', 1) }}{{ 'ab'|replace('', '.') }}",
    "{{ 'x'|center(5) }}|{{ 'a\nb'|indent(2) }}|{{ 'a\nb'|indent('> ', first=true) }}",
    "{{ 'hello world'|truncate(8, end='~', leeway=0) }}{{ '%s-%d'|format('a', 3) }}",
    "{{ 'a\tb'.expandtabs(4) }}{{ 'x'.ljust(3) }}|{{ '-'.join(['a', 'b']) }}{{ 'ab'.replace('a', 'cc') }}",
    "{{ '{}:{:>4}'.format('k', 7) }}{{ '%05.1f' % 3.14159 }}{{ 'ab' * 3 }}{{ [0] * 3 }}{{ 2 ** 10 }}",
    "{{ messages[1:] }}{{ 'abcdef'[::2] }}{{ (1, 2) + (3,) }}{{ 'a' ~ 1 ~ [2] }}",
    "{% for k, v in {'b': 1, 'a': 2}|dictsort %}{{ k }}{{ v }}{% endfor %}{{ {'x': [1, {'y': none}]} }}",
])
def test_guarded_operations_give_jinjas_results(src):
    msgs = [user("a"), {"role": "assistant", "content": "b"}]
    want = reference_template(src).render(messages=msgs, tools=None, documents=None,
                                          add_generation_prompt=True, bos_token="", eos_token="")
    assert render(src, msgs) == want


def test_absurd_constants_are_refused_only_when_reached():
    dead = ChatTemplate("{% if false %}{{ 'x'|center(10**10) }}{{ [[1]]|sum(start=[]) }}{% endif %}ok")
    assert dead.render([user("x")]) == "ok"
    with pytest.raises(TemplateError, match="absurd output"):
        render("{{ '%1000000000d'|format(1) }}")


def test_literals_and_unpacking_still_work():
    src = ("{% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }}{% endfor %}{% set x, y = 5, 6 %}{{ x }}{{ y }}"
           "{{ {'k': [1, (2,)], 'n': none} }}{{ [] }}{{ () }}")
    assert render(src) == "1234" + "56" + "{'k': [1, (2,)], 'n': None}[]()"


def test_time_limit_grows_with_the_conversation(r1):
    t = ChatTemplate("{{ messages|length }}", time_limit=2.0)
    assert t.time_limit_for(1) == t.time_limit_for(100) == 2.0
    assert t.time_limit_for(400) == 32.0
    assert t.time_limit_for(100_000) == 600.0
    many = [user(f"q{i}") if i % 2 == 0 else {"role": "assistant", "content": f"a{i}"} for i in range(2000)]
    assert r1.render(many).count("<｜User｜>") == 1000


def test_output_limit_is_configurable_and_scales_with_the_input():
    src = "{% for m in messages %}{{ m.content }}{{ m.content }}{% endfor %}"
    doc = "word " * 400_000   # a 2 MB document: its prompt is legitimately large
    assert len(ChatTemplate(src).render([user(doc)])) == 2 * len(doc)
    with pytest.raises(TemplateError, match="absurd output"):
        ChatTemplate(src, max_output_chars=1000).render([user("x" * 600)])


def test_deep_recursion_is_an_error():
    with pytest.raises(TemplateError, match="recursed too deeply"):
        render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")


def test_huge_source_is_refused():
    with pytest.raises(TemplateError, match="far beyond any real chat template"):
        ChatTemplate("x" * 2_000_000)


def test_long_document_is_not_mistaken_for_absurd_output(smollm2):
    doc = "lorem ipsum " * 400_000   # 4.8 MB
    msgs = [{"role": "system", "content": doc}] + [user(f"q{i}") for i in range(100)]
    out = smollm2.render(msgs)
    assert out.startswith("<|im_start|>system\nlorem ipsum") and len(out) > len(doc)


# ------------------------------------------------------------------ fuzz: only TemplateError

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                        st.text(max_size=20))
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                          max_leaves=8)
good_part = st.fixed_dictionaries({"type": st.sampled_from(["text", "image"]), "text": st.text(max_size=20)})
part = st.one_of(good_part, good_part, good_part, json_value)
text = st.one_of(st.text(max_size=40), st.sampled_from(["{{ 1 }}", "<|im_start|>", "</think>", " \n"]))
valid_message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool"]),
                           "content": st.one_of(text, st.lists(part, max_size=3))}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none(),
                           "tool_calls": st.lists(json_value, min_size=1, max_size=2)}),
)
message = st.one_of(
    valid_message,
    st.dictionaries(st.sampled_from(["role", "content", "name", "tool_calls"]), json_value, max_size=4),
    json_value,
)
conversation = st.one_of(st.lists(valid_message, max_size=6), st.lists(valid_message, max_size=6),
                         st.lists(message, max_size=6), json_value)


@pytest.fixture(scope="module")
def real_templates(smollm2, gemma3, r1) -> list[ChatTemplate]:
    return [smollm2, gemma3, r1] + [ChatTemplate.builtin(n, eos_token="</s>") for n in BUILTIN_NAMES]


@functools.lru_cache(maxsize=None)
def reference_template(source: str) -> jinja2.Template:
    return reference_environment().from_string(source)


def reference_environment() -> jinja2.Environment:
    """transformers' _compile_jinja_template environment, without any of our guards."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=conversation, gen=st.booleans(), tools=st.one_of(st.none(), st.lists(json_value, max_size=2)))
def test_render_raises_only_template_error_and_matches_plain_jinja(real_templates, messages, gen, tools):
    """Never anything but TemplateError; and where the guards do not fire, exactly the text the
    unguarded transformers environment renders."""
    for t in real_templates:
        try:
            out = t.render(messages, add_generation_prompt=gen, tools=tools)
        except TemplateError:
            continue
        ref = reference_template(t.source).render(messages=messages, tools=tools, documents=None,
                                               add_generation_prompt=gen, **t.special_tokens)
        assert out == ref


FRAGMENTS = ["{{ ", " }}", "{% ", " %}", "{%- ", " -%}", "for ", "x ", "in ", "range(", ")", "(", "messages",
             "[0]", ".content", "|join", "|tojson", "|length", "|center(", "'a'", "9", "99999", " * ", " ** ",
             " ~ ", " + ", " % ", "endfor", "if ", "endif", "set ", "= ", "macro ", "m(", "endmacro", "m()",
             "namespace(", "ns.", "__class__", ".format(", ", ", "[", "]", "{", "}", ":", "\n", "raise_exception(",
             "loop.", "break", "continue", "none", "true", "-", "/", "//", "not ", "and ", "is ", "defined"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=25))
def test_random_template_sources_raise_only_template_error(parts):
    try:
        t = ChatTemplate("".join(parts), time_limit=0.2)
        out = t.render([user("hi"), {"role": "assistant", "content": "yo"}])
    except TemplateError:
        return
    assert isinstance(out, str)
