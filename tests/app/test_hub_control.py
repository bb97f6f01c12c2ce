"""The main window's hub part: the hub client is imported on a background thread a little after
start, so opening File > Download models… the first time does not stall the window."""
from __future__ import annotations

import threading

from app import hub_service, main_window


def test_hub_client_is_imported_off_the_gui_thread_after_start(qtbot, make_window, monkeypatch):
    real = hub_service.hub
    calls = []

    def recording_hub():
        calls.append(threading.current_thread())
        return real()

    monkeypatch.setattr(hub_service, "hub", recording_hub)
    monkeypatch.setattr(main_window, "HUB_WARM_MS", 50)
    win = make_window(load=False)
    qtbot.waitUntil(lambda: bool(calls), timeout=10_000)
    assert calls[0] is not threading.main_thread()
    assert calls[0].name == "lectern-hub-import"
    assert real().HubOfflineError is not None          # the module it imported is the real client


def test_a_broken_hub_install_does_not_break_the_window(qtbot, make_window, monkeypatch):
    def broken():
        raise ImportError("huggingface_hub is missing")

    monkeypatch.setattr(hub_service, "hub", broken)
    win = make_window(load=False)
    win.warm_hub().join(10)
    assert win.isVisible() and win.banner.text() == ""
