"""Killing the app mid-answer keeps everything up to the last flush; the CLI entry starts the app."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtCore import Qt

from .conftest import REPO, fast_settings

CHILD = r"""
import sys
from PySide6.QtCore import QTimer
from app import gui
model = sys.argv[1]
app, win, path = gui.build(model=model, builtin=model)
win.show()
win.load_model(path)
def go():
    if win.loading_lid is not None:
        return QTimer.singleShot(50, go)
    s = dict(win.model_settings(), temperature=0.0, max_tokens=2000)
    win.library.save_settings(win.model_entry, s)
    win.send("Count to one hundred")
QTimer.singleShot(50, go)
QTimer.singleShot(120_000, app.quit)
app.exec()
"""


def test_kill_mid_answer_keeps_the_flushed_text(qtbot, make_window, data_dir, tiny_model):
    from inference.engine import Engine
    from inference.sampling import SamplingParams

    env = dict(os.environ, LECTERN_DATA_DIR=str(data_dir), QT_QPA_PLATFORM="offscreen")
    log = open(data_dir.parent / "child.log", "w+")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_model)], cwd=REPO, env=env,
                             stdout=log, stderr=log)
    db_path = data_dir / "lectern.db"
    saved = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(saved) < 40:
            time.sleep(0.05)
            if db_path.exists():
                try:
                    db = sqlite3.connect(db_path)
                    row = db.execute("SELECT content FROM messages WHERE role='assistant'").fetchone()
                    db.close()
                    saved = row[0] if row else ""
                except sqlite3.OperationalError:       # schema not there yet
                    pass
        log.seek(0)
        assert child.poll() is None, log.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(saved) >= 40, "the answer was not saved while streaming"
    # the next start finds it: same text up to at least what was seen, marked interrupted
    win = make_window()
    [conv] = win.store.conversations()
    assert win.current == conv.id and conv.title == "Count to one hundred"
    user, answer = win.store.messages(conv.id)
    assert user.content == "Count to one hundred" and answer.state == "interrupted"
    assert answer.content.startswith(saved) and len(answer.content) < 2000 * 20
    ref = Engine.load(tiny_model).session(4096).chat(
        [{"role": "user", "content": "Count to one hundred"}],
        SamplingParams(temperature=0.0, repeat_penalty=1.1, max_tokens=200)).run().text
    assert ref.startswith(answer.content)                    # exactly the streamed tokens
    assert "interrupted" in win.chat.toPlainText()
    fast_settings(win, max_tokens=8)
    qtbot.keyClick(win, Qt.Key_R, Qt.ControlModifier)
    qtbot.waitUntil(lambda: not win.busy, timeout=30_000)   # and it can be answered again
    assert win.store.messages(conv.id)[-1].state == "complete"


def run_cli(args, data_dir, timeout=120):
    env = dict(os.environ, LECTERN_DATA_DIR=str(data_dir), QT_QPA_PLATFORM="offscreen")
    exe = Path(sys.executable).with_name("lectern")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_gui_exit_after_startup_loads_the_model(data_dir, tiny_model):
    r = run_cli(["gui", "--exit-after-startup", "-m", str(tiny_model)], data_dir)
    assert r.returncode == 0, r.stderr
    assert "started with" in r.stderr
    assert (data_dir / "lectern.db").is_file()


def test_gui_exit_after_startup_reports_failure(data_dir, tmp_path):
    r = run_cli(["gui", "--exit-after-startup", "-m", str(tmp_path / "missing.gguf")], data_dir)
    assert r.returncode == 1 and "missing.gguf" in r.stderr and "not found" in r.stderr


def test_plain_lectern_opens_the_window_with_the_builtin_model(data_dir):
    r = run_cli(["--help"], data_dir)
    assert "gui" in r.stdout
    from app.cli import build_parser

    assert build_parser().parse_args(["gui", "--exit-after-startup"]).exit_after_startup
