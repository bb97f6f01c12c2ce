"""Downloads from the Find models window of the real main window, against the fake hub: a finished
download is in the model picker at once and loads; Pause / Resume / Cancel buttons drive the job;
an unfinished download continues when the app starts again."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.app.conftest import HUB_TINY as TINY
from tests.app.test_hub_dialog import WAIT
from tests.inference.hub.conftest import golden_bytes


def open_page(qtbot, win, repo: str = TINY):
    """File > Download models…, search, open the repository; returns the hub window."""
    win.act_hub.trigger()
    hw = win.hub_window
    assert hw is not None and hw.isVisible()
    qtbot.keyClicks(hw.search, repo.split("/")[1])
    qtbot.waitUntil(lambda: repo in hw.result_ids(), timeout=WAIT)
    hw.results.setCurrentRow(hw.result_ids().index(repo))
    qtbot.waitUntil(lambda: hw.variants.all_estimated(), timeout=WAIT)
    return hw


def choose(hw, name: str) -> None:
    hw.variants.selectRow(hw.variants.row_of(name))
    assert hw.variants.selected_variant().name == name


def only_row(hw):
    assert len(hw.downloads.rows) == 1
    return next(iter(hw.downloads.rows.values()))


def target(win, name: str):
    return win.library.models_dir / "test__tiny-llama-GGUF" / name


def test_download_lands_in_the_picker_and_loads(qtbot, make_window, hub_repos):
    win = make_window()
    hw = open_page(qtbot, win)
    choose(hw, "Q8_0")
    qtbot.mouseClick(hw.download_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: bool(hw.downloads.rows) and only_row(hw).status.state == "done", timeout=WAIT)
    path = target(win, "tiny-llama-Q8_0.gguf")
    assert path.read_bytes() == golden_bytes("tiny-llama-Q8_0")
    assert str(path) in win.picker.paths()                  # refreshed without asking
    row = only_row(hw)
    assert row.bar.value() == row.bar.maximum() and "Done" in row.detail.text()
    assert not row.pause_btn.isVisible() and not row.cancel_btn.isVisible()
    assert row.load_btn.isVisible()
    assert "in the model picker" in win.statusBar().currentMessage()
    hw.download_btn.click()                                 # the same variant again: no new job
    assert len(hw.downloads.rows) == 1 and len(hub_repos.file_requests("tiny-llama-Q8_0.gguf")) == 1
    assert hw.notice.kind == "info" and "already downloaded" in hw.notice.text.text()
    qtbot.mouseClick(row.load_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: win.loading_lid is None and win.model_path == str(path), timeout=WAIT)
    assert (win.model_entry.architecture, win.model_entry.weight_type) == ("llama", "Q8_0")


def test_pause_resume_and_cancel_buttons(qtbot, make_window, hub_repos):
    win = make_window()
    name = "tiny-llama-F16.gguf"
    hub_repos.slow(name, 0.05)                  # 16 KiB per 50 ms: time to press the buttons
    hw = open_page(qtbot, win)
    choose(hw, "F16")
    hw.download_btn.click()
    qtbot.waitUntil(lambda: bool(hw.downloads.rows) and only_row(hw).status.done_bytes > 0, timeout=WAIT)
    row = only_row(hw)
    assert row.pause_btn.text() == "Pause" and row.status.state == "running"
    assert win.download_status.isVisible() and "Downloading 1 model" in win.download_status.text()
    assert "of" in row.detail.text()                           # "x KiB of y MiB · speed · left"
    qtbot.mouseClick(row.pause_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: row.status.state == "paused", timeout=WAIT)
    assert not win.download_status.isVisible()              # nothing active
    assert row.pause_btn.text() == "Resume" and row.detail.text().startswith("Paused at")
    part = target(win, name + ".part")
    paused_at = part.stat().st_size
    assert 0 < paused_at < len(golden_bytes("tiny-llama-F16"))
    assert row.status.done_bytes == paused_at
    n_requests = len(hub_repos.file_requests(name))
    hub_repos.slow(name, 0.0)
    qtbot.mouseClick(row.pause_btn, Qt.LeftButton)            # Resume: continues from the .part
    qtbot.waitUntil(lambda: row.status.state == "done", timeout=WAIT)
    assert target(win, name).read_bytes() == golden_bytes("tiny-llama-F16")
    resumed = hub_repos.file_requests(name)[n_requests:]
    assert [r.headers.get("range") for r in resumed] == [f"bytes={paused_at}-"]
    # Cancel: the job stops and its partial file is deleted
    other = "tiny-llama-Q6_K.gguf"
    hub_repos.slow(other, 0.05)
    choose(hw, "Q6_K")
    hw.download_btn.click()
    qtbot.waitUntil(lambda: len(hw.downloads.rows) == 2, timeout=WAIT)
    row2 = next(r for r in hw.downloads.rows.values() if r.status.name == "Q6_K")
    qtbot.waitUntil(lambda: row2.status.done_bytes > 0, timeout=WAIT)
    qtbot.mouseClick(row2.cancel_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: row2.status.state == "cancelled", timeout=WAIT)
    assert not target(win, other + ".part").exists() and not target(win, other).exists()
    assert not row2.pause_btn.isVisible() and not row2.cancel_btn.isVisible()
    assert str(target(win, other)) not in win.picker.paths()
    # Clear finished: both rows go, from the list and from the saved queue; the file stays
    hw.downloads.clear_btn.click()
    assert hw.downloads.rows == {} and win.downloads.jobs() == []
    assert target(win, name).is_file() and str(target(win, name)) in win.picker.paths()


def test_unfinished_download_continues_when_the_app_starts_again(qtbot, make_window, hub_repos):
    name = "tiny-llama-F16.gguf"
    hub_repos.slow(name, 0.05)
    win = make_window()
    hw = open_page(qtbot, win)
    choose(hw, "F16")
    hw.download_btn.click()
    qtbot.waitUntil(lambda: bool(hw.downloads.rows) and only_row(hw).status.done_bytes > 0, timeout=WAIT)
    win.close()                                     # quit mid-download: the queue is saved
    assert target(win, name + ".part").is_file() and not target(win, name).exists()
    hub_repos.slow(name, 0.0)
    win2 = make_window(load=False)
    qtbot.waitUntil(lambda: win2.downloads is not None, timeout=WAIT)   # resumed at start
    qtbot.waitUntil(lambda: str(target(win2, name)) in win2.picker.paths(), timeout=WAIT)
    assert target(win2, name).read_bytes() == golden_bytes("tiny-llama-F16")
    hw2 = win2.open_hub()
    (row,) = hw2.downloads.rows.values()
    assert row.status.state == "done"


def test_model_picker_offers_the_hub(qtbot, make_window, hub_repos):
    from app.model_picker import HUB

    win = make_window(load=False)
    i = win.picker.findData(HUB)
    assert i >= 0 and "Hugging Face" in win.picker.itemText(i)
    assert HUB not in win.picker.paths()
    win.picker.activated.emit(i)
    qtbot.waitUntil(lambda: win.hub_window is not None and win.hub_window.isVisible(), timeout=WAIT)
    assert win.act_hub.shortcut().toString() == "Ctrl+Shift+M"
    stops = []
    win.act_stop.triggered.connect(lambda: stops.append(1))
    win.hub_window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win.hub_window, timeout=WAIT)
    qtbot.keyClick(win.hub_window.search, Qt.Key_Escape)    # closes the hub, stops no answer
    qtbot.waitUntil(lambda: not win.hub_window.isVisible(), timeout=WAIT)
    assert stops == []


def test_a_full_disk_is_reported_in_the_row(qtbot, make_window, hub_repos):
    win = make_window(load=False)
    hw = open_page(qtbot, win)
    win.downloads.manager.disk_free = lambda _p: 1 << 20        # a 1 MiB quota
    choose(hw, "F16")
    hw.download_btn.click()
    qtbot.waitUntil(lambda: bool(hw.downloads.rows) and only_row(hw).status.state == "failed", timeout=WAIT)
    row = only_row(hw)
    assert "Not enough disk space" in row.detail.text()
    assert row.pause_btn.text() == "Retry" and row.pause_btn.isVisible()
    assert not list(win.library.models_dir.rglob("*.gguf*"))


def test_a_damaged_download_list_is_set_aside_with_a_message(qtbot, make_window, data_dir, hf_home):
    state = data_dir / "hub" / "downloads.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"version": 1, "jobs": [{"no": ')
    win = make_window(load=False)
    qtbot.waitUntil(lambda: win.downloads is not None and win.banner_box.isVisible(), timeout=WAIT)
    assert "unreadable" in win.banner.text() and "downloads.json" in win.banner.text()
    assert state.with_name("downloads.json.broken").is_file()
    assert win.downloads.jobs() == []
    assert win.open_hub().downloads.rows == {}


def test_offline_hub_leaves_the_rest_of_the_app_working(qtbot, make_window, hub_repos):
    win = make_window()
    hub_repos.stop()
    hw = win.open_hub()
    qtbot.keyClicks(hw.search, "tiny")
    qtbot.waitUntil(lambda: hw.notice.kind == "offline", timeout=WAIT)
    assert not win.banner_box.isVisible()                     # the main window is not bothered
    qtbot.keyClicks(win.input.edit, "Hello")
    qtbot.keyClick(win.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: not win.busy and len(win.store.messages(win.current)) == 2, timeout=WAIT)
    assert win.store.messages(win.current)[1].content.strip()


def test_gated_download_fails_clearly_then_retry_works_after_saving_a_token(qtbot, make_window,
                                                                          hub_repos):
    from tests.fake_hub import GOOD_TOKEN

    hub_repos.add_repo("test/tiny-gated-GGUF", {"tiny-llama-Q4_0.gguf": golden_bytes("tiny-llama-Q4_0")},
                   gated=True)
    win = make_window(load=False)
    hw = open_page(qtbot, win, "test/tiny-gated-GGUF")
    qtbot.waitUntil(hw.token_bar.isVisible, timeout=WAIT)
    choose(hw, "Q4_0")
    hw.download_btn.click()
    qtbot.waitUntil(lambda: bool(hw.downloads.rows) and only_row(hw).status.state == "failed",
                    timeout=WAIT)
    row = only_row(hw)
    assert "gated or private" in row.detail.text() and row.pause_btn.text() == "Retry"
    hw.token_bar.field.setText(GOOD_TOKEN)
    hw.token_bar.save.click()
    qtbot.waitUntil(lambda: not hw.token_bar.isVisible(), timeout=WAIT)
    qtbot.mouseClick(row.pause_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: row.status.state == "done", timeout=WAIT)
    path = win.library.models_dir / "test__tiny-gated-GGUF" / "tiny-llama-Q4_0.gguf"
    assert path.read_bytes() == golden_bytes("tiny-llama-Q4_0")
    assert str(path) in win.picker.paths()


def test_hub_window_size_is_kept_across_restarts(qtbot, make_window, hub_repos):
    win = make_window(load=False)
    hw = win.open_hub()
    hw.resize(700, 520)
    qtbot.waitUntil(lambda: (hw.width(), hw.height()) == (700, 520), timeout=WAIT)
    win.close()                                     # closes the hub too
    win2 = make_window(load=False)
    hw2 = win2.open_hub()
    assert (hw2.width(), hw2.height()) == (700, 520)


def test_a_wrong_checksum_fails_the_row_and_leaves_no_file(qtbot, make_window, hub_repos):
    hub_repos.wrong_sha(TINY, "tiny-llama-Q4_0.gguf")
    win = make_window(load=False)
    hw = open_page(qtbot, win)
    choose(hw, "Q4_0")
    hw.download_btn.click()
    qtbot.waitUntil(lambda: bool(hw.downloads.rows) and only_row(hw).status.state == "failed",
                    timeout=WAIT)
    row = only_row(hw)
    assert "sha256" in row.detail.text() and row.detail.text().startswith("Failed:")
    assert not list(win.library.models_dir.rglob("tiny-llama-Q4_0.gguf*"))
    assert str(target(win, "tiny-llama-Q4_0.gguf")) not in win.picker.paths()
    assert "failed" in win.statusBar().currentMessage()


def test_a_new_models_folder_is_checked_and_takes_the_next_download(qtbot, make_window, hub_repos, tmp_path):
    win = make_window(load=False)
    hw = open_page(qtbot, win)
    choose(hw, "Q8_0")
    hw.download_btn.click()
    qtbot.waitUntil(lambda: bool(hw.downloads.rows) and only_row(hw).status.state == "done", timeout=WAIT)
    first = target(win, "tiny-llama-Q8_0.gguf")
    old = win.library.models_dir
    afile = tmp_path / "not-a-folder"
    afile.write_text("x")
    win.apply_settings(str(afile), win.model_settings())          # refused, said why, nothing moves
    assert win.library.models_dir == old and "is a file, not a folder" in win.banner.text()
    new = tmp_path / "elsewhere" / "models"
    win.apply_settings(str(new), win.model_settings())
    assert win.library.models_dir == new and new.is_dir() and win.store.get("models_dir") == str(new)
    assert win.downloads.manager.models_dir == new
    assert str(first) not in win.picker.paths()                   # the picker shows the new folder
    hw.download_btn.click()                                        # the same variant: a new job there
    qtbot.waitUntil(lambda: len(hw.downloads.rows) == 2 and all(
        r.status.state == "done" for r in hw.downloads.rows.values()), timeout=WAIT)
    again = new / "test__tiny-llama-GGUF" / "tiny-llama-Q8_0.gguf"
    assert again.read_bytes() == first.read_bytes() == golden_bytes("tiny-llama-Q8_0")
    assert str(again) in win.picker.paths()
    assert sorted(r.status.local_paths[0] for r in hw.downloads.rows.values()) == sorted([str(first), str(again)])
