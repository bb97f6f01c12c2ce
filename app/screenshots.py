"""Screenshots of the main window's main states, for docs/screenshots/ (and for looking at).

    Xvfb :99 -screen 0 1280x800x24 &  DISPLAY=:99 QT_QPA_PLATFORM=xcb python -m app.screenshots [OUTDIR]

Uses a throw-away LECTERN_DATA_DIR. States: first start with the built-in model, a streamed
SmolLM2 answer (short), an answer being streamed (Stop button), a stored answer with markdown,
a code block and a folded thinking section, the thinking unfolded, the settings dialog, a model
that failed to load, a conversation too long for the context, the dark theme, then a document: attached (chip and fit
line), being read (progress bar), and answered about, then the Find models window (a page with
variants and downloads; a private repository asking for a token) served by the test suite's fake
hub on 127.0.0.1. `--only-hub` takes only those two. Each PNG is written with QWidget.grab().
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


def only_hub(out: Path) -> int:
    """--only-hub: just the hub window's screenshots (11, 12), without loading a model."""
    from app import gui

    app, win, _path = gui.build()
    win.resize(1100, 700)
    win.show()
    code = hub_shots(app, win, out)
    win.close()
    return code


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    out = Path(args[0]) if args else Path("docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    os.environ["LECTERN_DATA_DIR"] = tempfile.mkdtemp(prefix="lectern-shots-")
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="lectern-shots-hf-")   # no saved token used
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        os.environ.pop(var, None)
    if "--only-hub" in argv:
        return only_hub(out)
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
    code = hub_shots(app, win, out)
    win.close()
    return code


def demo_hub():
    """The test suite's fake hub (tests/fake_hub.py, 127.0.0.1 only) serving the golden tiny
    models as repositories, so the hub window can be shown without the internet."""
    from tests.fake_hub import FakeHub

    golden = Path(__file__).resolve().parents[2] / "shared" / "golden" / "models"
    fake = FakeHub()
    card = ("---\nlicense: mit\n---\n# Tiny {arch} GGUF\n\nThe golden **tiny {arch}** model in "
            "several quantizations, for tests and demos.\n\n- runs anywhere: a few MB\n- "
            "answers are nonsense: it is random weights\n\n```\nlectern download "
            "lectern-demo/tiny-{arch}-GGUF --quant Q8_0\n```\n")
    for i, (arch, quants) in enumerate((("llama", "Q4_0 Q4_K_M Q6_K Q8_0 F16"),
                                        ("gemma3", "Q4_0 Q4_K_M Q6_K Q8_0 F16"),
                                        ("kimi-linear", "Q4_K_M Q6_K Q8_0 F16"),
                                        ("step35", "Q4_K_M Q6_K Q8_0 F16"))):
        files = {f"tiny-{arch}-{q}.gguf": (golden / f"tiny-{arch}-{q}.gguf").read_bytes()
                 for q in quants.split()}
        files["README.md"] = card.format(arch=arch).encode()
        fake.add_repo(f"lectern-demo/tiny-{arch}-GGUF", files, downloads=4200 - 900 * i,
                      likes=42 - 7 * i, last_modified=f"2025-0{6 - i}-01T10:00:00.000Z")
    fake.add_repo("lectern-demo/private-GGUF", {"x-Q4_0.gguf": (golden / "tiny-llama-Q4_0.gguf")
                                                 .read_bytes()}, private=True)
    return fake


def hub_shots(app, win, out: Path) -> int:
    """14: Find models with search results, a repository page and two downloads (one done, one
    running); 15: a private repository asking for a Hugging Face token."""
    fake = demo_hub()
    os.environ["HF_ENDPOINT"] = fake.start()
    try:
        hw = win.open_hub()
        hw.resize(1180, 800)
        hw.search.setText("tiny")
        hw.search_now()
        repo = "lectern-demo/tiny-llama-GGUF"
        if not wait(app, lambda: repo in hw.result_ids(), 60):
            print("the fake hub did not answer the search", file=sys.stderr)
            return 1
        hw.results.setCurrentRow(hw.result_ids().index(repo))
        wait(app, lambda: hw.variants.all_estimated() and "Tiny" in hw.card.toPlainText(), 60)
        for name, delay in (("Q4_K_M", 0.0), ("Q8_0", 0.05)):
            fake.slow(f"tiny-llama-{name}.gguf", delay)
            hw.variants.selectRow(hw.variants.row_of(name))
            hw.download()
            wait(app, lambda: any(r.status.name == name and r.status.done_bytes > 400_000
                                  for r in hw.downloads.rows.values()), 60)
        hw.variants.selectRow(hw.variants.row_of(hw.variants.recommended or "Q8_0"))
        pause(app, 0.4)
        shot(hw, out, "14-model-hub")
        for r in hw.downloads.rows.values():
            if r.status.state in ("running", "queued"):
                hw.downloads.cancel(r.job_id)
        hw.open_repo("lectern-demo/private-GGUF")
        wait(app, hw.token_bar.isVisible, 60)
        pause(app)
        shot(hw, out, "15-model-hub-token")
        hw.close()
    finally:
        fake.stop()
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
