"""The app icon and desktop metadata the installers ship (resources/icons, packaging/linux)."""
from __future__ import annotations

import configparser
import struct
from pathlib import Path

from PySide6.QtCore import QSize
from PySide6.QtGui import QImage

REPO = Path(__file__).resolve().parents[2]
ICONS = REPO / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256)


def test_png_sizes_are_what_their_names_say(qapp):
    for s in SIZES:
        img = QImage(str(ICONS / f"lectern-{s}.png"))
        assert not img.isNull(), f"lectern-{s}.png does not load"
        assert (img.width(), img.height()) == (s, s)
        assert img.hasAlphaChannel()


def test_ico_holds_one_png_per_size(qapp):
    data = (ICONS / "lectern.ico").read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data, 0)
    assert (reserved, kind, count) == (0, 1, len(SIZES))
    seen = []
    for i in range(count):
        w, h, _c, _r, _planes, _bpp, size, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        assert offset + size <= len(data)
        img = QImage.fromData(data[offset:offset + size], "PNG")
        assert (img.width(), img.height()) == (w or 256, h or 256)
        seen.append(img.width())
    assert sorted(seen) == sorted(SIZES)


def test_window_icon_offers_every_size(qapp):
    from app.gui import app_icon

    sizes = app_icon().availableSizes()
    assert sorted(s.width() for s in sizes) == sorted(SIZES)
    assert all(s == QSize(s.width(), s.width()) for s in sizes)


def test_desktop_entry_starts_the_gui_with_the_installed_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(REPO / "packaging" / "linux" / "lectern.desktop")
    e = entry["Desktop Entry"]
    assert e["Type"] == "Application" and e["Name"] == "Lectern"
    assert e["Exec"].split()[:2] == ["lectern", "gui"]
    assert e["Icon"] == "lectern"          # hicolor/<N>x<N>/apps/lectern.png from build-linux.sh
    assert e["Categories"].endswith(";") and e["Terminal"] == "false"
