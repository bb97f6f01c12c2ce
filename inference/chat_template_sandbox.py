"""The jinja2 sandbox chat templates run in: transformers' environment plus hard limits.

A chat template comes from a downloaded GGUF file, so it is untrusted code. jinja2's
ImmutableSandboxedEnvironment already blocks attribute escapes (``''.__class__``) and mutation
of lists and dicts; on top of that every render runs under a `Budget`:

* a deadline, checked at the top of every block of the compiled template (each loop iteration,
  macro call and branch) and by every sandbox hook;
* a size limit on every value the template builds (concatenation, ``*``, ``**``, ``%``, filters,
  method calls, slices) and on the output, checked *before* an operation that could allocate
  gigabytes in one C call (``'x' * 10**10``, ``s.ljust(10**10)``, ``s|replace('', big)``);
* a limit on the total text built, so a loop cannot hoard memory within the deadline.

The limits themselves live in chat_template_budget.py; chat_template.py turns a violation
(`Abort`) into TemplateError.
"""
from __future__ import annotations

import functools
import inspect
import json
import re
import threading
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, CompilerExit
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .chat_template_budget import Abort, Budget, budget, check_bits, limited, refuse, tick  # noqa: F401

MAX_FORMAT_WIDTH = 256        # strftime field widths


class RaisedByTemplate(jinja2.TemplateError):
    """raise_exception(msg) called by the template itself: the message is the template's."""


# ---------------------------------------------------------------- size estimates before a call

def _len_str(x: Any) -> int:
    if isinstance(x, (str, bytes)):
        return len(x)
    budget().check_size(budget().weight(x))   # str() of a container walks all of it
    return len(str(x))


def format_estimate(fmt: Any, args: Any) -> int:
    """Upper bound on the length of fmt % args or fmt.format(*args): every number in the format
    may be a field width, every field may repeat the longest argument."""
    fmt = str(fmt)
    if isinstance(args, dict):
        args = list(args.values())
    elif not isinstance(args, (list, tuple)):
        args = [args]
    widths = sum(int(d) if len(d) < 12 else 10**12 for d in re.findall(r"\d+", fmt))
    fields = fmt.count("%") + fmt.count("{")
    longest = max((_len_str(a) for a in args), default=0)
    return len(fmt) + widths + fields * longest


def _replace_estimate(s: Any, old: Any, new: Any, count: Any = None) -> int:
    s, old, new = str(s), str(old), str(new)
    n = len(s) + 1 if old == "" else s.count(old)
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * max(0, len(new) - len(old))


def _materialize(v: Any) -> Any:
    if isinstance(v, (str, bytes, list, tuple, dict)) or v is None:
        return v
    try:
        return list(v)
    except TypeError:
        return v


# Filters that can grow their input by more than a small constant factor: name -> estimator
# taking the bound arguments and returning (arguments to use, estimated result size).
def _f_center(a):  return a, max(_len_str(a["value"]), _int(a.get("width", 80)))
def _f_indent(a):
    s, w = str(a["s"]), a.get("width", 4)
    w = len(w) if isinstance(w, str) else _int(w)
    return a, len(s) + (s.count("\n") + 1) * w
def _f_format(a):  return a, format_estimate(a["value"], list(a.get("args", ())) + list(a.get("kwargs", {}).values()))
def _f_replace(a): return a, _replace_estimate(a["s"], a["old"], a["new"], a.get("count"))
def _f_join(a):
    a["value"] = v = _materialize(a["value"])
    items = [v] if isinstance(v, (str, bytes)) else list(v)
    sep = str(a.get("d", ""))
    return a, sum(_len_str(x) for x in items) + len(sep) * len(items)
def _f_wordwrap(a):
    s, ws = str(a["s"]), a.get("wrapstring") or "\n"
    wraps = len(s) // max(1, _int(a.get("width", 79))) + s.count(" ") + s.count("\n") + 1
    return a, len(s) + wraps * len(str(ws))
def _f_batch(a):
    a["value"] = v = _materialize(a["value"])
    n, size = len(v) if hasattr(v, "__len__") else 0, max(1, _int(a["linecount"]))
    return a, (-(-n // size) * size) if a.get("fill_with") is not None else n
def _f_sum(a):
    start = a.get("start", 0)
    if not isinstance(start, (list, tuple)):
        return a, 0   # numbers (anything else fails in sum itself)
    a["iterable"] = items = _materialize(a["iterable"])
    return a, len(start) + budget().weight(items)   # concatenating sequences
def _f_slice(a):
    a["value"] = v = _materialize(a["value"])
    n = len(v) if hasattr(v, "__len__") else 0
    return a, max(n, _int(a["slices"]))
def _f_truncate(a): return a, _len_str(a["s"]) + _len_str(a.get("end", "..."))


def _int(x: Any) -> int:
    return x if isinstance(x, int) else 0


_FILTER_ESTIMATES = {
    "center": _f_center, "indent": _f_indent, "format": _f_format, "replace": _f_replace,
    "join": _f_join, "wordwrap": _f_wordwrap, "batch": _f_batch, "sum": _f_sum,
    "truncate": _f_truncate, "slice": _f_slice,
}
_REMOVED_FILTERS = ("urlize",)   # inserts its arguments per URL; no chat template needs it


def _guard_filter(name: str, f):
    estimate = _FILTER_ESTIMATES.get(name)
    sig = inspect.signature(f) if estimate else None   # the sync function's (follows __wrapped__)
    # an async_variant of a function without a pass-arg receives an eval context first that
    # its signature does not list
    inner = getattr(f, "__wrapped__", None)
    lead = int(bool(getattr(f, "jinja_async_variant", False)) and inner is not None
               and not hasattr(inner, "jinja_pass_arg"))

    @functools.wraps(f)
    def guarded(*args, **kwargs):
        b = budget()
        b.tick()
        if estimate is not None:
            try:
                bound = sig.bind(*args[lead:], **kwargs)
            except TypeError:
                return f(*args, **kwargs)   # the filter reports its own usage error
            bound.apply_defaults()
            arguments, n = estimate(dict(bound.arguments))
            b.check_size(n)
            bound.arguments.update(arguments)
            args, kwargs = (*args[:lead], *bound.args), bound.kwargs
        return b.charge(f(*args, **kwargs))

    return guarded


def _method_estimate(obj: Any, args: tuple, kwargs: dict) -> int:
    """Result-size bound for str/bytes methods that can grow their input."""
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if not isinstance(owner, (str, bytes)):
        return 0
    if name in ("center", "ljust", "rjust", "zfill") and args:
        return max(len(owner), _int(args[0]))
    if name == "expandtabs":
        size = _int(args[0] if args else kwargs.get("tabsize", 8))
        return len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * size
    if name == "replace" and len(args) >= 2:
        return _replace_estimate(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
    if name == "join" and args:
        items = _materialize(args[0])
        items = items if isinstance(items, (list, tuple)) else [items]
        return sum(_len_str(x) for x in items) + len(owner) * len(items)
    if name == "translate" and args and isinstance(args[0], dict):
        longest = max((_len_str(v) for v in args[0].values() if v is not None), default=1)
        return len(owner) * max(1, longest)
    return 0


# ---------------------------------------------------------------- helpers real templates use

def raise_exception(message: Any) -> None:
    raise RaisedByTemplate(str(message))


def strftime_now(fmt: Any) -> str:
    fmt = str(fmt)
    budget().check_size(len(fmt))
    for w in re.findall(r"%[-_0^#]*(\d+)", fmt):
        if len(w) > 3 or int(w) > MAX_FORMAT_WIDTH:
            refuse(f"strftime_now: field width {w} is too large")
    return datetime.now().strftime(fmt)


def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
           sort_keys: bool = False) -> str:
    """transformers' tojson: plain json.dumps (no HTML escaping), non-ASCII kept."""
    if isinstance(indent, int) and indent > 64 or isinstance(indent, str) and len(indent) > 64:
        refuse(f"tojson: indent {indent!r} is too large")
    if separators is not None and sum(_len_str(s) for s in separators) > 64:
        refuse("tojson: separators are too long")
    budget().check_size(budget().weight(x))
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class GenerationTag(Extension):
    """transformers' ``{% generation %}...{% endgeneration %}`` (marks assistant text for
    training masks): for rendering it is just its body."""

    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _GuardedCodeGenerator(CodeGenerator):
    def blockvisit(self, nodes, frame) -> None:
        """Every block (loop body, macro body, branch) starts with a deadline check."""
        try:
            self.writeline("environment.tick()")
            for node in nodes:
                self.visit(node, frame)
        except CompilerExit:
            pass

    def visit_Concat(self, node: nodes.Concat, frame) -> None:   # the ~ operator
        self.write("environment.guarded_str_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    # [a, b], (a, b), {k: v} literals: nested ones could otherwise share children into a
    # structure whose str() or tojson walks 2**n elements in one C call
    def _guarded_literal(self, visit, node, frame) -> None:
        self.write("environment.guarded_literal(")
        visit(node, frame)
        self.write(")")

    def visit_List(self, node, frame) -> None:
        self._guarded_literal(super().visit_List, node, frame)

    def visit_Dict(self, node, frame) -> None:
        self._guarded_literal(super().visit_Dict, node, frame)

    def visit_Tuple(self, node, frame) -> None:
        if node.ctx == "load":
            self._guarded_literal(super().visit_Tuple, node, frame)
        else:   # an assignment target: a, b = ...
            super().visit_Tuple(node, frame)


class ChatSandbox(ImmutableSandboxedEnvironment):
    """The environment of transformers' _compile_jinja_template, with every growth guarded."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True,
                         extensions=[loopcontrols, GenerationTag])
        for name in _REMOVED_FILTERS:
            self.filters.pop(name, None)
        self.globals.pop("lipsum", None)   # loops n times in Python: no chat template uses it
        self.filters["tojson"] = tojson
        self.filters = {k: _guard_filter(k, f) for k, f in self.filters.items()}
        self.globals["raise_exception"] = raise_exception
        self.globals["strftime_now"] = strftime_now

    # every piece of text a template assembles passes through one of these two
    @staticmethod
    def tick() -> None:
        tick()

    def concat(self, parts) -> str:   # type: ignore[override]
        b = budget()
        parts = list(parts)
        b.check_size(sum(len(p) for p in parts))
        return b.charge("".join(parts))

    def guarded_str_join(self, parts) -> str:
        return self.concat(map(str, parts))

    def guarded_literal(self, value: Any) -> Any:
        return budget().charge(value)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        b = budget()
        b.tick()
        seq = (str, bytes, list, tuple)
        if operator == "+" and isinstance(left, seq) and isinstance(right, seq):
            b.check_size(len(left) + len(right))
        elif operator == "*":
            for s, n in ((left, right), (right, left)):
                if isinstance(s, seq) and isinstance(n, int):
                    b.check_size(len(s) * max(0, n))
            if isinstance(left, int) and isinstance(right, int):
                check_bits(abs(left).bit_length() + abs(right).bit_length())
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right > 0:
                check_bits(right * abs(left).bit_length())
        elif operator == "%" and isinstance(left, (str, bytes)):
            b.check_size(format_estimate(left, right))
        return b.charge(self.binop_table[operator](left, right))

    def call(__self, __context, __obj, *args, **kwargs):   # noqa: N805 - jinja2's signature
        b = budget()
        b.tick()
        if isinstance(getattr(__obj, "__self__", None), (str, bytes, int)):
            for x in list(args) + list(kwargs.values()):   # widths, lengths (int.to_bytes)
                if isinstance(x, int) and not isinstance(x, bool):
                    b.check_size(abs(x))
        b.check_size(_method_estimate(__obj, args, kwargs))
        return b.charge(super().call(__context, __obj, *args, **kwargs))

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        return budget().charge(value) if isinstance(argument, slice) else value   # a copy

    def unsafe_undefined(self, obj: Any, attribute: str):
        """Fail at the access itself, not at the first use of the undefined value."""
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def wrap_str_format(self, value: Any):
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt = value.__self__

        @functools.wraps(wrapper)
        def guarded(*args, **kwargs):
            budget().check_size(format_estimate(fmt, list(args) + list(kwargs.values())))
            return budget().charge(wrapper(*args, **kwargs))

        return guarded


_env: ChatSandbox | None = None
_env_lock = threading.Lock()


def sandbox() -> ChatSandbox:
    """The shared environment (filters and globals never change after creation)."""
    global _env
    with _env_lock:
        if _env is None:
            _env = ChatSandbox()
        return _env
