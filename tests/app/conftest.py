"""GUI tests run offscreen with their own data directory and the golden tiny model."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[2]
TINY = REPO.parent / "shared" / "golden" / "models" / "tiny-llama-F16.gguf"


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("LECTERN_DATA_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    if not TINY.is_file():
        pytest.fail(f"golden tiny model missing: {TINY}")
    return TINY


def fast_settings(window, **kw) -> None:
    """Greedy, short answers for the tests (stored like a user's per-model settings)."""
    s = dict(window.model_settings(), temperature=0.0, max_tokens=kw.pop("max_tokens", 16))
    s.update(kw)
    window.library.save_settings(window.model_entry, s)


@pytest.fixture
def make_window(qtbot, data_dir, tiny_model):
    """make_window(model=None) -> a shown MainWindow with the model loaded (tiny by default)."""
    from app import gui

    made = []

    def make(model: Path | str | None = None, load: bool = True, builtin: Path | str | None = None):
        _app, win, path = gui.build(model=str(model or tiny_model), builtin=str(builtin or tiny_model))
        qtbot.addWidget(win)
        win.show()
        made.append(win)
        if load:
            win.load_model(path)
            qtbot.waitUntil(lambda: win.loading_lid is None, timeout=60_000)   # handled by the window
            assert win.model_path == path, win.banner.text()
            fast_settings(win)
        return win

    yield make
    for w in made:
        w.close()
        w.store.close()
