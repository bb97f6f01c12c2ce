"""`lectern download REPO [--quant NAME | --file PATH] [--dir DIR]`: fetch a model from the Hub.

Progress (bytes, speed, ETA) goes to stderr; the local path is printed last on stdout. Ctrl-C
pauses: the partial file is kept and the same command resumes it. Files are verified against
the sha256 the Hub publishes before they get their final name.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

STATE_FILE = ".lectern-downloads.json"   # in the models folder, next to the files it describes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download a GGUF model from Hugging Face",
                       description="Download a GGUF model from a Hugging Face repository into the "
                                   "models folder (resumable; verified against the Hub's sha256). "
                                   "Without --quant or --file the recommended variant (the largest "
                                   "that fits comfortably in RAM) is chosen.")
    p.add_argument("repo", metavar="REPO", help="repository id, e.g. unsloth/Qwen3-0.6B-GGUF")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--quant", metavar="NAME", help="variant to download, e.g. Q4_K_M (see `lectern files`)")
    which.add_argument("--file", metavar="PATH", help="one file of the repository, by its path")
    p.add_argument("--dir", metavar="DIR", help="models folder (default: the app's models folder)")
    p.add_argument("--ctx", type=int, default=4096, metavar="N",
                   help="context length used to pick the recommended variant (default 4096)")
    p.set_defaults(func=run)


def choose(args):
    """The Variant to download."""
    from inference.hub import HubError, Variant, find_variant, list_variants, parse_quant, repo_files

    if args.file:
        files = [f for f in repo_files(args.repo) if f.path == args.file]
        if not files:
            raise HubError(f"{args.repo} has no file {args.file!r}; see `lectern files {args.repo}`")
        name, quant = parse_quant(args.file)
        return Variant(args.file.rsplit("/", 1)[-1], quant, files)
    variants = list_variants(args.repo)
    if not variants:
        raise HubError(f"{args.repo} has no GGUF model files to download")
    if args.quant:
        v = find_variant(variants, args.quant)
        if v is None:
            raise HubError(f"{args.repo} has no variant {args.quant!r}; it has: "
                           + ", ".join(x.name for x in variants))
        return v
    from app.cli.cmd_files import variant_table

    variants, _, _, best, _ = variant_table(args.repo, args.ctx)
    if best is None:
        raise HubError(f"No variant of {args.repo} fits comfortably in this machine's RAM; "
                       "pick one with --quant (see `lectern files`)")
    print(f"lectern: choosing {best.name}, the largest variant that fits in RAM", file=sys.stderr)
    return best


def run(args) -> int:
    from app.library import Library
    from inference.hub import DownloadManager, HubError

    variant = choose(args)
    models_dir = Path(args.dir) if args.dir else Library.default_models_dir()
    manager = DownloadManager(models_dir, models_dir / STATE_FILE)
    bar = Progress()
    try:
        job = manager.add(args.repo, variant)
        try:
            status = watch(manager, job, bar)
        except KeyboardInterrupt:
            manager.pause(job)
            bar.end()
            print("lectern: pausing the download…", file=sys.stderr, flush=True)
            if manager.wait(job, 60).state == "done":    # it finished as we paused
                status = manager.status(job)
            else:
                print("lectern: download paused; run the same command again to resume it",
                      file=sys.stderr)
                return 130
    finally:
        manager.close()
    bar.end()
    if status.state != "done":
        raise HubError(status.error or f"the download ended as {status.state}")
    print(status.local_paths[0])
    return 0


def watch(manager, job: str, bar: "Progress"):
    status = manager.status(job)
    while True:
        bar.show(status)
        if status.state not in ("queued", "running"):
            return status
        status = manager.wait(job, 0.25)


class Progress:
    """One line on stderr, redrawn: [#####.....]  45%  12.3 MiB / 27.0 MiB  3.2 MiB/s  ETA 0:05"""

    WIDTH = 24

    def __init__(self):
        self.drawn = False
        self.tty = sys.stderr.isatty()
        self.last_step = -1          # not a terminal: one line per 10% instead of redrawing

    def show(self, s) -> None:
        from inference.model_info import human_bytes

        frac = s.done_bytes / s.total_bytes if s.total_bytes else 0.0
        fill = int(frac * self.WIDTH)
        eta = _clock(s.eta_s) if s.eta_s is not None else "--:--"
        rate = "verified" if s.state == "done" else f"{human_bytes(s.speed_bps)}/s  ETA {eta}"
        line = (f"[{'#' * fill}{'.' * (self.WIDTH - fill)}] {frac * 100:5.1f}%  "
                f"{human_bytes(s.done_bytes)} / {human_bytes(s.total_bytes)}  {rate}  {s.name}")
        if self.tty:
            sys.stderr.write("\r" + line + "\033[K")
            self.drawn = True
        elif int(frac * 10) != self.last_step or s.state not in ("queued", "running"):
            self.last_step = int(frac * 10)
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
