"""The `lectern` command. Each subcommand lives in `cmd_<name>.py` with `register(subparsers)`.

Start-up stays fast: subcommand modules import the engine lazily, and nothing here imports Qt.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from inference import LecternError, __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lectern",
        description="Chat with local LLMs about long documents (GGUF models, own JIT engine).",
    )
    p.add_argument("--version", action="version", version=f"lectern {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):   # no subcommand: the desktop app
        args = parser.parse_args(["gui"])
    try:
        return int(args.func(args) or 0)
    except LecternError as e:
        print(f"lectern: error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"lectern: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
