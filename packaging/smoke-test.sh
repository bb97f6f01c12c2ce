#!/usr/bin/env bash
# Smoke test of the Linux installer:
#
#   packaging/smoke-test.sh [--no-build]
#
# 1. builds with packaging/build-linux.sh (--no-build: use the .deb already in $LECTERN_DIST),
# 2. installs the .deb into a temporary root (dpkg-deb -x, no root needed) and checks its layout,
# 3. runs the installed /usr/bin/lectern in a clean environment (env -i; PATH holds only the
#    installed bin/, so no Python from the system; PYTHONHOME/PYTHONPATH unset):
#      lectern --version                                 -> "lectern <version>"
#      HF_HUB_OFFLINE=1 lectern search llama             -> the clear offline error (hub client bundled)
#      lectern generate --temperature 0 -n 8 "Hello"     -> non-empty, the same greedy text as the
#                                                           dev venv gives (bundled model), and
#                                                           JIT kernels compiled by the bundled LLVM
#      lectern extract doc.pdf                           -> the dev venv's text (pypdf bundled)
#      QT_QPA_PLATFORM=offscreen lectern gui --exit-after-startup   -> window shown, model loaded, exit 0
# 4. checks that every bundled Qt plugin finds its Qt libraries inside the bundle.
# Prints the timings. Exit 0 = all passed.
#
# Environment: LECTERN_DIST (default dist/), LECTERN_BUILD_VENV (passed to build-linux.sh),
#   LECTERN_DEV_PYTHON: the dev venv's python for the reference text (default .venv/bin/python).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dist="${LECTERN_DIST:-$repo/dist}"
export LECTERN_DIST="$dist"
dev_py="${LECTERN_DEV_PYTHON:-$repo/.venv/bin/python}"
prompt="Hello"

fail() { echo "smoke-test: FAIL: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }
now() { date +%s%N; }
since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)); }

command -v dpkg-deb >/dev/null 2>&1 || fail "dpkg-deb is missing (Debian/Ubuntu: apt install dpkg)"
[ -x "$dev_py" ] || fail "no dev venv python at $dev_py for the reference text (run ./dev test once, or set LECTERN_DEV_PYTHON)"

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' inference/__init__.py)"
arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
deb="$dist/lectern_${version}_${arch}.deb"

if [ "${1:-}" != "--no-build" ]; then
    t0="$(now)"
    packaging/build-linux.sh
    echo "smoke-test: build took $(since "$t0") s" >&2
fi
[ -f "$deb" ] || fail "no $deb (build with packaging/build-linux.sh)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/lectern-smoke.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"

step "installing $deb into $root"
dpkg-deb -x "$deb" "$root"
for f in usr/bin/lectern opt/lectern/lectern usr/share/applications/lectern.desktop \
         usr/share/icons/hicolor/256x256/apps/lectern.png usr/share/icons/hicolor/scalable/apps/lectern.svg \
         opt/lectern/_internal/resources/templates/chatml.jinja; do
    [ -e "$root/$f" ] || fail "the .deb has no /$f"
done
ls "$root"/opt/lectern/_internal/models/*.gguf >/dev/null 2>&1 || fail "the .deb carries no built-in model"
ls "$root"/opt/lectern/_internal/llvmlite/binding/libllvmlite.* >/dev/null 2>&1 || fail "no libllvmlite in the bundle"
[ "$(dpkg-deb -f "$deb" Package)" = lectern ] || fail "control: Package is not lectern"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "control: Version is not $version"
dpkg-deb -f "$deb" Depends | grep -q libxcb-cursor0 || fail "control: Depends lacks the xcb libraries"
if command -v desktop-file-validate >/dev/null 2>&1; then
    desktop-file-validate "$root/usr/share/applications/lectern.desktop" || fail "invalid lectern.desktop"
fi

# Qt plugins must find their Qt libraries in the bundle (system X/GL libraries may be absent
# here: the .deb's Depends bring them).
for so in "$root"/opt/lectern/_internal/PySide6/Qt/plugins/*/*.so; do
    missing="$(ldd "$so" 2>/dev/null | awk '/not found/ {print $1}' | grep -E '^lib(Qt6|pyside|shiboken|icu)' || true)"
    [ -z "$missing" ] || fail "$(basename "$so") cannot find bundled $missing"
done

# The clean environment: nothing from the system but the C library and X/GL libraries.
home="$tmp/home"
mkdir -p "$home" "$tmp/empty"
clean_path="$root/usr/bin:$tmp/empty"
run() {   # run [VAR=value...] COMMAND ARGS: env finds COMMAND on the clean PATH
    env -i HOME="$home" PATH="$clean_path" LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        LECTERN_DATA_DIR="$home/data" LECTERN_CACHE_DIR="$home/cache" "$@"
}
for d in ${clean_path//:/ }; do
    if compgen -G "$d/python*" >/dev/null; then fail "a python is on the clean PATH ($d)"; fi
done

step "lectern --version"
t0="$(now)"
out="$(run lectern --version)" || fail "lectern --version exited $?"
t_version="$(since "$t0")"
[ "$out" = "lectern $version" ] || fail "lectern --version printed '$out', expected 'lectern $version'"

step "HF_HUB_OFFLINE=1 lectern search llama (the Hugging Face client loads from the bundle)"
hub_log="$(run HF_HUB_OFFLINE=1 lectern search llama 2>&1)" && fail "lectern search worked in offline mode?"
echo "$hub_log" | grep -q "offline mode is on" \
    || { echo "$hub_log" >&2; fail "lectern search did not give the offline-mode error"; }

step "lectern generate --temperature 0 -n 8 \"$prompt\" (bundled model)"
t0="$(now)"
got="$(run lectern generate --temperature 0 -n 8 "$prompt")" || fail "lectern generate exited $?"
t_generate="$(since "$t0")"
[ -n "$got" ] || fail "lectern generate printed nothing"
compgen -G "$home/cache/kernels/*.o" >/dev/null \
    || fail "generate compiled no JIT kernels: the bundled LLVM (libllvmlite) did not work"
want="$(cd "$repo" && env -u PYTHONHOME PYTHONPATH="$repo" LECTERN_DATA_DIR="$home/dev-data" \
        LECTERN_CACHE_DIR="$home/dev-cache" "$dev_py" -m app generate --temperature 0 -n 8 "$prompt")" \
    || fail "the dev venv's lectern generate failed"
[ "$got" = "$want" ] || fail "installed generate gave '$got', the dev venv '$want'"

step "lectern extract doc.pdf (pypdf in the bundle; same text as the dev venv)"
env -u PYTHONHOME PYTHONPATH="$repo" "$dev_py" -c "import sys; from pathlib import Path
from tests.inference.documents.makers import write_pdf
write_pdf(Path(sys.argv[1]), [['Lectern smoke test', 'page one'], ['page two']])" "$tmp/doc.pdf" \
    || fail "could not write the test PDF with the dev venv"
got_pdf="$(run lectern extract "$tmp/doc.pdf")" || fail "lectern extract exited $?"
want_pdf="$(env -u PYTHONHOME PYTHONPATH="$repo" "$dev_py" -m app extract "$tmp/doc.pdf")"
echo "$got_pdf" | grep -q "page two" || fail "lectern extract lost the PDF's text: '$got_pdf'"
[ "$got_pdf" = "$want_pdf" ] || fail "installed extract gave '$got_pdf', the dev venv '$want_pdf'"

step "lectern gui --exit-after-startup (offscreen)"
t0="$(now)"
gui_log="$(run QT_QPA_PLATFORM=offscreen lectern gui --exit-after-startup 2>&1)" \
    || { echo "$gui_log" >&2; fail "lectern gui --exit-after-startup exited non-zero"; }
t_gui="$(since "$t0")"
echo "$gui_log" | grep -q "started with" || { echo "$gui_log" >&2; fail "the GUI did not report a start"; }

echo "smoke-test: generate -> '$got' (same as the dev venv)"
echo "smoke-test: lectern --version ${t_version} s; generate ${t_generate} s; gui start+model load+quit ${t_gui} s ($(echo "$gui_log" | grep 'started with'))"
echo "smoke-test: sizes: $(du -sh "$root/opt/lectern" | cut -f1) installed, .deb $(du -h "$deb" | cut -f1)"
echo "smoke-test: PASS"
