"""Render resources/icons/lectern.svg into the PNG sizes and the Windows .ico the installers use.

    python packaging/make_icons.py               # rewrite resources/icons/lectern-<N>.png + lectern.ico
    python packaging/make_icons.py --iconset DIR # macOS: DIR/icon_<N>x<N>[@2x].png for `iconutil`

The PNGs and the .ico are committed (small), so a build needs only this when the SVG changes.
Needs PySide6 (QtSvg) and QT_QPA_PLATFORM=offscreen when there is no display.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
MAC_SIZES = (16, 32, 128, 256, 512)          # each also @2x


def render_png(svg: Path, size: int) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _ = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    return bytes(data)


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICO file whose images are PNG-compressed (Windows Vista and later read these).

    Layout: ICONDIR (reserved 0, type 1, count) + one 16-byte ICONDIRENTRY per image + the PNGs.
    A width/height byte of 0 means 256.
    """
    sizes = sorted(pngs)
    offset = 6 + 16 * len(sizes)
    head = struct.pack("<HHH", 0, 1, len(sizes))
    entries, blobs = b"", b""
    for s in sizes:
        png = pngs[s]
        entries += struct.pack("<BBBBHHII", s % 256, s % 256, 0, 0, 1, 32, len(png), offset)
        blobs += png
        offset += len(png)
    return head + entries + blobs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iconset", metavar="DIR", help="write a macOS .iconset folder instead")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    svg = ICONS / "lectern.svg"
    if args.iconset:
        out = Path(args.iconset)
        out.mkdir(parents=True, exist_ok=True)
        for s in MAC_SIZES:
            (out / f"icon_{s}x{s}.png").write_bytes(render_png(svg, s))
            (out / f"icon_{s}x{s}@2x.png").write_bytes(render_png(svg, 2 * s))
        return 0
    pngs = {s: render_png(svg, s) for s in sorted(set(PNG_SIZES) | set(ICO_SIZES))}
    for s in PNG_SIZES:
        (ICONS / f"lectern-{s}.png").write_bytes(pngs[s])
    (ICONS / "lectern.ico").write_bytes(ico_bytes({s: pngs[s] for s in ICO_SIZES}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
