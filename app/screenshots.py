"""Screenshots of the main window's main states, for docs/screenshots/ (and for looking at).

    Xvfb :99 -screen 0 1280x800x24 &  DISPLAY=:99 QT_QPA_PLATFORM=xcb python -m app.screenshots [OUTDIR]

Uses a throw-away LECTERN_DATA_DIR. States: first start with the built-in model, a streamed
SmolLM2 answer (short), an answer being streamed (Stop button), a stored answer with markdown,
a code block and a folded thinking section, the thinking unfolded, the settings dialog, a model
that failed to load, a conversation too long for the context, the dark theme, then a document: attached (chip and fit
line), being read (progress bar), and answered about. Each PNG is written with QWidget.grab().
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

DEMO_ANSWER = """<think>The user wants a function that reverses words. Split on whitespace, reverse, join.</think>
Here is a **short** Python function that reverses the words of a sentence:

```python
def reverse_words(s: str) -> str:
    return " ".join(reversed(s.split()))
```

How it works:

1. `s.split()` cuts the sentence at whitespace;
2. `reversed(...)` walks the words backwards;
3. `" ".join(...)` glues them back with single spaces.

*Note:* runs of spaces collapse to one."""

DEMO_DOCUMENT = """# Varne Island Light: annual report

The lighthouse on Varne Island was first lit in 1862. Its keeper logs the weather at six every
morning and again at six in the evening, and the log has not missed a day since 1870.

## Changes to the station

In 1911 the lamp was converted from oil to acetylene, which tripled its range, and the fog bell
was retired in favour of a diaphone horn. Electricity arrived in 1954; the keeper's cottage was
rebuilt after the storm of 1987.

## This year

The lens was cleaned and re-seated in March. Visitors: 4,212, most of them in August. The
station's budget was 18,400 pounds, of which 11,000 went to the new roof.
"""


def wait(app, cond, timeout=120.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.01)
    return False


def pause(app, seconds=0.3) -> None:
    wait(app, lambda: False, seconds)


def shot(widget, out: Path, name: str) -> Path:
    p = out / f"{name}.png"
    widget.grab().save(str(p), "PNG")
    print(p)
    return p


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    os.environ["LECTERN_DATA_DIR"] = tempfile.mkdtemp(prefix="lectern-shots-")
    from app import gui, theme

    app, win, path = gui.build()
    win.resize(1100, 700)
    win.show()
    win.load_model(path)
    pause(app, 0.05)
    shot(win, out, "01-loading")
    if not wait(app, lambda: win.loading_lid is None and win.model_path):
        print("the model did not load", file=sys.stderr)
        return 1
    pause(app)
    shot(win, out, "02-first-start")

    # a real answer from the built-in model (short: the numpy engine is slow)
    s = dict(win.model_settings(), max_tokens=24, temperature=0.0)
    win.library.save_settings(win.model_entry, s)
    win.input.edit.setPlainText("What is the capital of France?")
    win.input._send()
    wait(app, lambda: win.busy and win.writer and len(win.writer.text) > 8)
    pause(app, 0.1)
    shot(win, out, "03-streaming")
    wait(app, lambda: not win.busy, 300)
    pause(app)
    shot(win, out, "04-answer")
    cid_first = win.current

    # rendering of markdown, code and thinking (a stored answer, written above)
    cid = win.store.new_conversation("Reverse the words of a sentence").id
    win.store.add_message(cid, "user", "Write a Python function that reverses the words of a sentence.")
    win.store.add_message(cid, "assistant", DEMO_ANSWER, stats={
        "generated_tokens": 112, "tokens_per_s": 14.2, "ttft": 0.31, "prompt_tokens": 41,
        "stop_reason": "eog", "used": 153, "n_ctx": win.n_ctx})
    win.refresh_list(select=cid)
    win.open_conversation(cid)
    pause(app)
    shot(win, out, "05-markdown")
    mid = win.chat.messages[-1].id
    win.chat.open_thinks.add((mid, 0))
    win.chat.render()
    pause(app)
    shot(win, out, "06-thinking-open")

    from app.settings_dialog import SettingsDialog

    d = SettingsDialog(str(win.library.models_dir), win.model_entry, win.model_settings(), win)
    d.show()
    pause(app)
    shot(d, out, "07-settings")
    d.close()

    missing = Path(os.environ["LECTERN_DATA_DIR"]) / "models" / "deleted.gguf"
    win.load_model(str(missing))
    wait(app, lambda: win.loading_lid is None)
    pause(app)
    shot(win, out, "08-load-error")
    win.clear_banner()

    # a conversation that no longer fits: a small context, then one more question
    win.apply_settings("", dict(win.model_settings(), n_ctx=96))
    wait(app, lambda: win.loading_lid is None and win.n_ctx == 96)
    win.conversations.list.setCurrentRow(win.conversations.ids().index(cid_first))
    win.input.edit.setPlainText("And what is the capital of Italy? Answer in one long sentence.")
    win.input._send()
    wait(app, lambda: not win.busy)
    pause(app)
    shot(win, out, "09-context-overflow")
    win.clear_banner()

    theme.apply(app, dark=True)
    win.chat.render()
    pause(app)
    shot(win, out, "10-dark")
    theme.apply(app, dark=False)
    documents(app, win, out)
    win.close()
    return 0


def documents(app, win, out: Path) -> None:
    """A document attached (chip, fit line), read (progress bar), and asked about."""
    win.worker.worker.states_dir = Path(os.environ["LECTERN_DATA_DIR"]) / "states"  # a fresh read
    win.apply_settings("", dict(win.model_settings(), n_ctx=4096, max_tokens=40))
    wait(app, lambda: win.loading_lid is None and win.n_ctx == 4096)
    doc = Path(os.environ["LECTERN_DATA_DIR"]) / "varne-island-report.md"
    doc.write_text(DEMO_DOCUMENT, encoding="utf-8")
    win.new_chat()
    win.statusBar().clearMessage()
    win.attach_paths([str(doc)])
    wait(app, lambda: not win.extracting and win.fit is not None)
    win.input.edit.setPlainText("When was the lamp converted, and to what?")
    pause(app)
    shot(win, out, "11-document-attached")
    win.input._send()
    wait(app, lambda: win.reading.isVisible() and "tok/s" in win.reading.label.text())
    pause(app, 0.1)
    shot(win, out, "12-document-reading")
    wait(app, lambda: not win.busy, 600)
    pause(app)
    shot(win, out, "13-document-answer")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
