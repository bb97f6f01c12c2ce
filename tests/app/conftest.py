"""GUI tests run offscreen with their own data directory and the golden tiny model."""
from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[2]
TINY = REPO.parent / "shared" / "golden" / "models" / "tiny-llama-F16.gguf"


@pytest.fixture(autouse=True)
def collect_on_the_gui_thread():
    """Each test's windows are closed before this runs; their garbage (Qt objects in reference
    cycles) is collected here, on the GUI thread, not later by some engine thread (app.gc_guard)."""
    yield
    from app import gc_guard

    gc_guard.reset()
    gc.collect()


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


@pytest.fixture
def wt(qtbot):
    """A model-loading worker thread, shut down (and collected on the GUI thread) after the test."""
    from app.worker import WorkerThread

    t = WorkerThread()
    yield t
    t.shutdown()
    del t
    gc.collect()


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


HUB_TINY = "test/tiny-llama-GGUF"      # the model hub's tests: served by tests/fake_hub.py


@pytest.fixture
def hub_repos(fake_hub):
    """The golden tiny llama in five quantizations, plus repositories for search and errors."""
    from tests.inference.hub.conftest import LLAMA_QUANTS, README, golden_bytes

    files = {f"tiny-llama-{q}.gguf": golden_bytes(f"tiny-llama-{q}") for q in LLAMA_QUANTS}
    files["README.md"] = (README + "\n```\nlectern download test/tiny-llama-GGUF\n```\n").encode()
    fake_hub.add_repo(HUB_TINY, files, downloads=500, likes=7, last_modified="2025-06-01T10:00:00.000Z")
    fake_hub.add_repo("test/tiny-gemma-GGUF", {"tiny-gemma-Q8_0.gguf": golden_bytes("tiny-gemma3-Q8_0")},
                      downloads=900, likes=2, last_modified="2025-03-01T10:00:00.000Z")
    fake_hub.add_repo("other/tiny-private-GGUF", {"tiny-llama-Q4_0.gguf": golden_bytes("tiny-llama-Q4_0")},
                      private=True, downloads=5, likes=50)
    fake_hub.add_repo("other/unrelated-GGUF", {"x-Q4_0.gguf": golden_bytes("tiny-llama-Q4_0")},
                      downloads=10_000, likes=1000)
    return fake_hub
