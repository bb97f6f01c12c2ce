"""Chat templates: a conversation (list of {role, content} dicts) -> the prompt text a model expects.

Rendering follows transformers' `apply_chat_template` (jinja2, trim_blocks + lstrip_blocks,
loopcontrols, `raise_exception`, `strftime_now`, its `tojson`; variables `messages`, `tools`,
`documents`, `add_generation_prompt`, the special-token texts, and any extra keyword such as
`enable_thinking` or `date_string`). Templates come from GGUF files and are untrusted: they run
in the sandbox of chat_template_sandbox.py, under a time limit and size limits.

`render` returns exactly what transformers would. `prompt` is what to tokenize: like llama.cpp,
it drops a leading BOS text when the tokenizer adds BOS itself (tokenizer.ggml.add_bos_token),
and a trailing EOS text when it adds EOS. The built-in templates never write BOS: that is the
tokenizer's job, as in llama.cpp's built-in chat formats.
"""
from __future__ import annotations

import importlib.resources
import traceback
from typing import Any

import jinja2

from . import chat_template_sandbox as sb
from .errors import TemplateError

BUILTIN_NAMES = ("chatml", "gemma", "llama3", "mistral", "phi3")
DEFAULT_TIME_LIMIT = 2.0          # seconds per render of up to 100 messages
MAX_TIME_LIMIT = 600.0
MAX_SOURCE_CHARS = 1_000_000      # real templates are under 30 kB
MAX_DEPTH = 64                    # nesting of message values (tool-call arguments, parts)


class ChatTemplate:
    """A compiled chat template. `name` is "gguf" for a file's own template, else the built-in's."""

    def __init__(self, source: str, name: str = "custom", *, bos_token: str = "",
                 eos_token: str = "", special_tokens: dict[str, str] | None = None,
                 add_bos: bool = False, add_eos: bool = False,
                 time_limit: float = DEFAULT_TIME_LIMIT, max_output_chars: int | None = None):
        if not isinstance(source, str):
            raise TemplateError(f"chat template {name}: the source is a {type(source).__name__}, not text")
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(
                f"chat template {name}: {len(source):,} characters is far beyond any real chat "
                f"template (limit {MAX_SOURCE_CHARS:,}): use a built-in template instead"
            )
        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.special_tokens = {"bos_token": bos_token, "eos_token": eos_token, **(special_tokens or {})}
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.time_limit = time_limit
        self.max_output_chars = max_output_chars
        self._template = self._compile()

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r}, {len(self.source)} chars)"

    # ------------------------------------------------------------------ construction

    @classmethod
    def builtin(cls, name: str, **kwargs: Any) -> "ChatTemplate":
        """A built-in template by name: chatml, gemma, llama3, mistral, phi3."""
        if name not in BUILTIN_NAMES:
            raise TemplateError(
                f"no built-in chat template named {name!r}: choose one of {', '.join(BUILTIN_NAMES)}"
            )
        source = (importlib.resources.files("resources") / "templates" / f"{name}.jinja").read_text("utf-8")
        return cls(source, name, **kwargs)

    @classmethod
    def from_gguf(cls, g: Any, **kwargs: Any) -> "ChatTemplate":
        """The file's tokenizer.chat_template, else the built-in that fits its family (see
        `builtin_for`). The special-token texts come from the file's vocabulary."""
        tokens = g.get("tokenizer.ggml.tokens") or []

        def token_text(key: str) -> str:
            i = g.get(key)
            if isinstance(i, (int,)) or hasattr(i, "__index__"):
                i = int(i)
                if 0 <= i < len(tokens):
                    return str(tokens[i])
            return ""

        kw: dict[str, Any] = dict(
            bos_token=token_text("tokenizer.ggml.bos_token_id"),
            eos_token=token_text("tokenizer.ggml.eos_token_id"),
            special_tokens={
                "unk_token": token_text("tokenizer.ggml.unknown_token_id"),
                "pad_token": token_text("tokenizer.ggml.padding_token_id"),
            },
            add_bos=bool(g.get("tokenizer.ggml.add_bos_token", False)),
            add_eos=bool(g.get("tokenizer.ggml.add_eos_token", False)),
        )
        kw.update(kwargs)
        source = g.get("tokenizer.chat_template")
        if isinstance(source, str) and source.strip():
            return cls(source, "gguf", **kw)
        return cls.builtin(builtin_for(g.get("general.architecture", "") or "", tokens), **kw)

    def _compile(self) -> jinja2.Template:
        b = sb.Budget(max(self.time_limit, 1.0) * 5, 1_000_000, 20_000_000, what="compile")
        try:
            with sb.limited(b):
                return sb.sandbox().from_string(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(
                f"chat template {self.name}: syntax error on line {e.lineno}: {e.message}"
            ) from None
        except sb.Abort as e:
            raise TemplateError(f"chat template {self.name} could not be compiled: {e}") from None
        except RecursionError:
            raise TemplateError(f"chat template {self.name} is nested too deeply to compile") from None
        except Exception as e:  # noqa: BLE001 - anything else an untrusted source provokes
            raise TemplateError(f"chat template {self.name} could not be compiled: {_describe(e)}") from None

    # ------------------------------------------------------------------ rendering

    def render(self, messages: list[dict], add_generation_prompt: bool = True, tools: Any = None,
               **extra: Any) -> str:
        """The prompt text, exactly as transformers' apply_chat_template(tokenize=False) gives it."""
        size = [0]
        msgs = validate_messages(messages, size)
        if tools is not None:
            if not isinstance(tools, (list, tuple)) or not all(isinstance(t, dict) for t in tools):
                raise TemplateError("tools must be a list of JSON-schema dicts (or None)")
            tools = _plain(list(tools), "tools", size)
        context: dict[str, Any] = dict(self.special_tokens)
        context["documents"] = None
        for key, value in extra.items():
            context[key] = _plain(value, key, size)
        context.update(messages=msgs, tools=tools, add_generation_prompt=bool(add_generation_prompt))

        max_chars = self.max_output_chars or 1_000_000 + 4 * size[0]
        b = sb.Budget(self.time_limit_for(len(msgs)), max_chars, 32 * max_chars)
        try:
            with sb.limited(b):
                out = []
                n = 0
                for piece in self._template.generate(context):
                    n += len(piece)
                    if n > max_chars:
                        raise sb.Abort(
                            f"the chat template produced over {max_chars:,} characters: "
                            "it produces absurd output, use another template"
                        )
                    out.append(piece)
                return "".join(out)
        except sb.Abort as e:
            raise TemplateError(f"chat template {self.name}: {e}") from None
        except sb.RaisedByTemplate as e:
            raise TemplateError(e.message or "the chat template rejected the conversation") from None
        except jinja2.exceptions.SecurityError as e:
            raise TemplateError(
                f"chat template {self.name} tried to escape its sandbox{_line(e)}: {e.message}; "
                "the file's template is unsafe, use a built-in template"
            ) from None
        except RecursionError:
            raise TemplateError(f"chat template {self.name} recursed too deeply") from None
        except MemoryError:
            raise TemplateError(f"chat template {self.name} ran out of memory") from None
        except Exception as e:  # noqa: BLE001 - an untrusted template can raise anything
            raise TemplateError(f"chat template {self.name} failed{_line(e)}: {_describe(e)}") from None

    def time_limit_for(self, n_messages: int) -> float:
        """`time_limit` holds for up to 100 messages; longer conversations get more, growing
        with the square of their length (real templates, e.g. Gemma 4's, scan the whole
        conversation for every message: 400 messages take it ~2 s), at most 10 minutes."""
        return min(max(self.time_limit, MAX_TIME_LIMIT), self.time_limit * max(1.0, (n_messages / 100) ** 2))

    def prompt(self, messages: list[dict], add_generation_prompt: bool = True, tools: Any = None,
               **extra: Any) -> str:
        """`render`, minus the BOS/EOS texts the tokenizer adds itself (as llama.cpp does)."""
        text = self.render(messages, add_generation_prompt, tools, **extra)
        if self.add_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        if self.add_eos and self.eos_token and text.endswith(self.eos_token):
            text = text[: -len(self.eos_token)]
        return text


def builtin_for(architecture: str, tokens: Any) -> str:
    """The built-in template for a file without one, from its architecture and vocabulary."""
    arch = architecture.lower()
    if arch.startswith("gemma"):
        return "gemma"
    vocab = set(tokens) if not isinstance(tokens, set) else tokens
    if "<|start_header_id|>" in vocab and "<|eot_id|>" in vocab:
        return "llama3"
    if "<|im_start|>" in vocab:
        return "chatml"
    if arch.startswith("phi3") or ("<|user|>" in vocab and "<|assistant|>" in vocab and "<|end|>" in vocab):
        return "phi3"
    if "[INST]" in vocab and "[/INST]" in vocab:
        return "mistral"
    return "chatml"


# ---------------------------------------------------------------------- message validation

def validate_messages(messages: Any, size: list[int] | None = None) -> list[dict]:
    """Check the conversation's shape and copy it into plain JSON values.

    Each message is a dict with a string `role` and a `content` that is a string or a list of
    content parts (dicts with a string `type`); an assistant message with `tool_calls` may have
    no content. Other keys (tool_calls, name, tool_call_id, ...) pass through.
    """
    size = size if size is not None else [0]
    if not isinstance(messages, (list, tuple)):
        raise TemplateError(f"messages must be a list of {{role, content}} dicts, not {type(messages).__name__}")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise TemplateError(f"{where} must be a dict with 'role' and 'content', not {type(m).__name__}")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise TemplateError(f"{where} needs a 'role' that is a non-empty string (user, assistant, system, tool)")
        content = m.get("content")
        if isinstance(content, (list, tuple)):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise TemplateError(
                        f"{where}['content'][{j}] must be a content part: a dict with a string 'type' "
                        "(e.g. {'type': 'text', 'text': ...})"
                    )
        elif not isinstance(content, str) and not (content is None and m.get("tool_calls")):
            raise TemplateError(
                f"{where}['content'] must be a string or a list of content parts, not "
                f"{type(content).__name__}"
            )
        out.append(_plain(m, where, size))
    return out


def _plain(value: Any, where: str, size: list[int], depth: int = 0) -> Any:
    """A copy made only of JSON values: nothing but data reaches the sandbox."""
    if depth > MAX_DEPTH:
        raise TemplateError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        size[0] += len(value)
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", size, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TemplateError(f"{where} has a key {k!r} that is not a string")
            size[0] += len(k)
            out[k] = _plain(v, f"{where}[{k!r}]", size, depth + 1)
        return out
    raise TemplateError(f"{where} is a {type(value).__name__}: messages may hold only JSON values")


def _describe(e: BaseException) -> str:
    msg = getattr(e, "message", None) or str(e)
    return f"{type(e).__name__}: {msg}" if not isinstance(e, jinja2.TemplateError) else msg


def _line(e: BaseException) -> str:
    """' on line N' from the template frames of a jinja2 traceback, if any."""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == "<template>"]
    return f" on line {lines[-1]}" if lines else ""
