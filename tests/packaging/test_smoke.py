"""The Linux installer end to end: packaging/smoke-test.sh builds the bundle, the .deb and the
.tar.gz from this venv, installs the .deb into a temporary root and runs it with no Python on PATH
(--version, greedy generate compared with this venv, GUI offscreen)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def git_status() -> str | None:
    """Tracked changes and untracked files that .gitignore does not cover (None: not a git checkout)."""
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                       capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


@pytest.mark.slow
def test_linux_installer_builds_installs_and_runs(tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is missing: the .deb can only be built on Debian/Ubuntu (CI has it)")
    before = git_status()
    dist = tmp_path / "dist"
    env = dict(os.environ, LECTERN_BUILD_VENV=sys.prefix, LECTERN_DEV_PYTHON=sys.executable,
               LECTERN_DIST=str(dist))
    r = subprocess.run([str(REPO / "packaging" / "smoke-test.sh")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=1750)
    print(r.stdout)                      # timings and sizes, shown with -s / -rP
    assert r.returncode == 0, f"smoke test failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    assert r.stdout.rstrip().endswith("smoke-test: PASS")

    from inference import __version__

    debs = list(dist.glob(f"lectern_{__version__}_*.deb"))
    tars = list(dist.glob(f"lectern-{__version__}-linux-*.tar.gz"))
    assert len(debs) == 1 and len(tars) == 1, sorted(p.name for p in dist.iterdir())
    with tarfile.open(tars[0]) as tar:
        names = set(tar.getnames())
    assert "lectern/lectern" in names
    assert any(n.startswith("lectern/_internal/models/") and n.endswith(".gguf") for n in names)
    assert any(n.startswith("lectern/_internal/llvmlite/binding/libllvmlite") for n in names)
    # lean: no Qt module the app does not use
    unused = ("Qt6Network", "Qt6Qml", "Qt6Quick", "Qt6Svg", "Qt6OpenGL", "Qt6Pdf", "Qt6WebEngine")
    assert not [n for n in names if any(u in n for u in unused)]
    if before is not None:
        assert git_status() == before, "the build left files in the repository outside ignored folders"
