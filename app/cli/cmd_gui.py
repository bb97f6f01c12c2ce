"""`lectern gui` (also plain `lectern`): open the desktop window with the default model loaded."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("gui", help="open the desktop app (the default with no subcommand)",
                       description="Open Lectern's window. Saved data lives under LECTERN_DATA_DIR "
                                   "if set, else the user data directory.")
    p.add_argument("-m", "--model", metavar="FILE",
                   help="GGUF model to load (default: the last one used, else the built-in model)")
    p.add_argument("--exit-after-startup", action="store_true",
                   help="load the model, show the window until idle, then exit (0 = all worked)")
    p.set_defaults(func=run)


def run(args) -> int:
    from app.gui import run as run_gui

    return run_gui(model=args.model, exit_after_startup=args.exit_after_startup)
