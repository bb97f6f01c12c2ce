"""`lectern template [-m FILE] MESSAGES_JSON`: the exact prompt a model's chat template makes."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "template", help="render a conversation with a model's chat template",
        description="Print the prompt text a model's chat template makes of a conversation, "
                    "exactly (no newline added). The template is the GGUF file's own, or a "
                    "built-in one chosen by model family when the file has none.")
    p.add_argument("messages", metavar="MESSAGES_JSON",
                   help='a JSON list of {"role": ..., "content": ...} messages, or the path of a '
                        "JSON file holding one")
    p.add_argument("-m", "--model", metavar="FILE",
                   help="GGUF model file (default: the built-in SmolLM2-135M-Instruct)")
    p.add_argument("--no-generation-prompt", action="store_true",
                   help="do not end with the assistant's turn header")
    p.add_argument("--builtin", metavar="NAME",
                   help="use a built-in template instead of the file's (chatml, gemma, llama3, "
                        "mistral, phi3)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say on stderr which template was used")
    p.set_defaults(func=run)


def load_messages(arg: str):
    """MESSAGES_JSON as JSON text, or else as a path to a JSON file."""
    from inference.errors import LecternError

    text, source = arg, "MESSAGES_JSON"
    if not arg.lstrip().startswith(("[", "{")):
        path = Path(arg)
        if not path.is_file():
            raise LecternError(
                f"MESSAGES_JSON is neither JSON nor an existing file: {arg[:80]!r} "
                "(pass e.g. '[{\"role\": \"user\", \"content\": \"Hi\"}]')")
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise LecternError(f"cannot read {path}: {e}") from None
    try:
        messages = json.loads(text)
    except json.JSONDecodeError as e:
        raise LecternError(
            f"{source} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
            "expected a list of {\"role\": ..., \"content\": ...} messages") from None
    if not isinstance(messages, list):
        raise LecternError(f"{source} must hold a JSON list of messages, not a {type(messages).__name__}")
    return messages


def run(args) -> int:
    from inference.chat_template import ChatTemplate
    from inference.gguf_file import open_gguf
    from inference.paths import default_model_path

    messages = load_messages(args.messages)
    path = args.model if args.model else default_model_path()
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file not found: {path} (pass the path of a .gguf file)")
    with open_gguf(path) as g:
        template = ChatTemplate.from_gguf(g)
        if args.builtin:
            template = ChatTemplate.builtin(
                args.builtin, bos_token=template.bos_token, eos_token=template.eos_token,
                add_bos=template.add_bos, add_eos=template.add_eos)
    text = template.render(messages, add_generation_prompt=not args.no_generation_prompt)
    if args.verbose:
        print(f"template: {template.name}", file=sys.stderr)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0
