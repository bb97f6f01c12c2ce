"""The KV cache type setting in the front ends: `--kv-type` on the commands that load a model
(and `lectern info`), the worker's load, and the settings dialog (stored per model, applied at
the next load)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.cli import main
from tests.conftest import golden_dir

TINY = str(golden_dir() / "models" / "tiny-llama-F16.gguf")


def lectern(*args, timeout=600):
    p = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_info_reports_bytes_per_token_of_the_cache_type(capsys):
    mem = {}
    for kv in ("f16", "f32"):
        assert main(["info", TINY, "--json", "--kv-type", kv]) == 0
        mem[kv] = json.loads(capsys.readouterr().out)["memory"]
        assert mem[kv]["kv_type"] == kv
    assert mem["f32"]["kv_bytes_per_token"] == 2 * mem["f16"]["kv_bytes_per_token"]
    assert main(["info", TINY, "--kv-type", "f32"]) == 0
    assert "/token (F32 KV cache)" in capsys.readouterr().out
    assert main(["info", TINY]) == 0
    assert "/token (F16 KV cache)" in capsys.readouterr().out


@pytest.mark.parametrize("cmd", [["generate", "hi"], ["chat"], ["bench", "-p", "4", "-n", "1"], ["serve"],
                                 ["info"]])
def test_a_bad_kv_type_is_a_clear_usage_error(cmd):
    code, out, err = lectern(cmd[0], "-m", TINY, *cmd[1:], "--kv-type", "q8_0") if cmd[0] != "info" else \
        lectern("info", TINY, "--kv-type", "q8_0")
    assert code == 2 and "KV cache type 'q8_0' is not supported; use one of: f16, f32" in err, err
    assert "Traceback" not in err


def test_generate_and_bench_with_an_f32_cache():
    from inference.engine import Engine
    from inference.sampling import GREEDY

    code, out, err = lectern("generate", "-m", TINY, "--kv-type", "f32", "--temperature", "0", "-n", "10",
                             "--raw", "the city of")
    assert code == 0, err
    engine = Engine.load(TINY, kv_type="f32")
    tokens = engine.encode_text("the city of")
    want = engine.session(512).generate(tokens, GREEDY.with_(max_tokens=10)).run().text
    assert out == want
    code, out, err = lectern("bench", "-m", TINY, "--kv-type", "f32", "-p", "8", "-n", "2", "-t", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["kv_type"] == "f32"


def test_the_worker_loads_with_the_cache_type(qtbot, wt):
    import numpy as np

    with qtbot.waitSignal(wt.worker.loaded, timeout=60_000) as sig:
        wt.load(1, TINY, 128, "f32")
    assert sig.args[1]["kv_type"] == "f32"
    assert wt.worker.session.state.arrays["k.0"].dtype == np.float32
    with qtbot.waitSignal(wt.worker.loadFailed, timeout=60_000) as sig:
        wt.load(2, TINY, 128, "f8")
    assert sig.args[1] == "error" and "KV cache type 'f8'" in sig.args[2]
    with qtbot.waitSignal(wt.worker.loaded, timeout=60_000) as sig:
        wt.load(3, TINY, 128)
    assert sig.args[1]["kv_type"] == "f16" and wt.worker.session.state.arrays["k.0"].dtype == np.float16


def test_settings_dialog_stores_the_cache_type_for_the_next_load(qtbot, make_window):
    from PySide6.QtWidgets import QLabel

    from app.settings_dialog import SettingsDialog

    win = make_window()
    assert win.model_settings()["kv_type"] == "f16"
    d = SettingsDialog(str(win.library.models_dir), win.model_entry, win.model_settings(), win)
    qtbot.addWidget(d)
    assert d.values()["kv_type"] == "f16"
    assert any("next time the model is loaded" in w.text() for w in d.findChildren(QLabel))
    d.kv_type.setCurrentIndex(d.kv_type.findData("f32"))
    lid = win.lid
    win.apply_settings(d.models_dir.text(), d.values())
    assert win.model_settings()["kv_type"] == "f32" and win.lid == lid      # no reload now
    assert win.worker.worker.session.state.kv_type == "f16"
    win.load_model(win.model_path)                                        # the next load uses it
    qtbot.waitUntil(lambda: win.loading_lid is None and win.lid != lid, timeout=30_000)
    qtbot.waitUntil(lambda: win.worker.worker.session.state.kv_type == "f32", timeout=30_000)
    d._defaults()
    assert d.values()["kv_type"] == "f16"
