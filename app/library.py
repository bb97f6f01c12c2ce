"""The model library: the built-in default model, .gguf files in the models folder, imported files.

Each entry is read from the GGUF header only (nothing is dequantized): architecture, size, weight
type, training context and whether weights plus cache fit in the machine's RAM. Per-model settings
(system prompt, sampling, context length) start from defaults the file suggests and are kept in
the store. No Qt here.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

DEFAULT_N_CTX = 4096
DEFAULT_SETTINGS = {
    "system_prompt": "",
    "temperature": 0.7,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.05,
    "repeat_penalty": 1.1,
    "max_tokens": 512,
    "n_ctx": DEFAULT_N_CTX,
    "kv_type": "f16",            # KV cache type (inference.kv_cache): used when the model is next loaded
}


@dataclass
class ModelEntry:
    path: str
    name: str
    source: str                  # builtin | folder | imported
    architecture: str = ""
    size: int = 0
    weight_type: str = ""
    context_length: int = 0
    parameters: str = ""
    memory_bytes: int = 0        # weights + cache at the default context
    fits_in_ram: bool = True
    error: str = ""              # why the file cannot be used ("" if it can)

    @property
    def ok(self) -> bool:
        return not self.error

    def summary(self) -> str:
        from inference.model_info import human_bytes

        if self.error:
            return self.error
        fit = "fits in RAM" if self.fits_in_ram else "does NOT fit in RAM"
        return (f"{self.architecture}, {self.parameters} parameters, {self.weight_type}, "
                f"{human_bytes(self.size)}, context {self.context_length:,}, "
                f"needs ~{human_bytes(self.memory_bytes)} ({fit})")


def total_ram() -> int:
    """Physical memory in bytes (MemAvailable is too volatile to judge a model by)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def inspect(path: str | Path, source: str = "folder", n_ctx: int = DEFAULT_N_CTX,
            ram: int | None = None, kv_type: str = "f16") -> ModelEntry:
    """A library entry for one file; problems end up in .error instead of raising. The memory
    estimate is for n_ctx tokens of a KV cache of type kv_type."""
    from inference.gguf_file import open_gguf
    from inference.model_info import describe, memory_estimate
    from inference.models import ARCHITECTURES

    p = Path(path)
    e = ModelEntry(str(p), p.stem, source)
    if not p.is_file():
        e.error = f"file not found: {p}"
        return e
    try:
        e.size = p.stat().st_size
        g = open_gguf(p)
        e.size = int(getattr(g, "file_size", e.size))     # all parts of a split model
        d = describe(g)
        e.architecture = d["architecture"] or "?"
        e.name = d["name"] or p.stem
        e.context_length = int(d["context_length"] or 0)
        e.parameters = d["parameters_human"]
        types = d["weight_types"]
        e.weight_type = (d["file_type_name"] or "").removeprefix("MOSTLY_") or next(iter(types), "?")
        ctx = min(n_ctx, e.context_length) if e.context_length else n_ctx
        e.memory_bytes = int(memory_estimate(g, ctx, kv_type)["total_bytes"]) if d["block_count"] else e.size
        e.fits_in_ram = e.memory_bytes < 0.9 * (ram or total_ram())
        if e.architecture not in ARCHITECTURES:
            e.error = f"{p.name}: architecture {e.architecture!r} is not supported"
        del g
    except Exception as ex:  # a broken file must not break the library
        e.error = f"{p.name}: cannot read this GGUF file ({ex})"
    return e


def _later_split_part(name: str) -> bool:
    """True for NAME-0000K-of-0000N.gguf with K > 1 (the engine opens a split model from part 1)."""
    from inference.gguf_file import _SPLIT_NAME

    m = _SPLIT_NAME.match(name)
    return bool(m) and int(m["no"]) != 1


def default_settings(entry: ModelEntry) -> dict:
    s = dict(DEFAULT_SETTINGS)
    if entry.context_length:
        s["n_ctx"] = min(DEFAULT_N_CTX, entry.context_length)
    return s


def check_models_dir(text: str) -> Path:
    """A models folder typed or picked in Settings -> its absolute path, created if missing;
    ValueError with what is wrong and what to do (the caller keeps the folder it had)."""
    import os

    text = (text or "").strip()
    if not text:
        raise ValueError("No models folder given: choose a folder in Settings.")
    folder = Path(text).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder: choose a folder for the models.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"Cannot create the models folder {folder}: {e.strerror or e}. "
                         "Choose another folder; the models folder is unchanged.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"The models folder {folder} cannot be written (downloads go there). "
                         "Choose a folder you can write to; the models folder is unchanged.")
    return folder


class Library:
    """Model entries from the built-in model, the models folder and imported files."""

    def __init__(self, store, models_dir: str | Path | None = None, builtin: str | Path | None = None):
        self.store = store
        self._builtin = builtin
        self.models_dir = Path(models_dir) if models_dir else self.default_models_dir()
        self._cache: dict[tuple[str, float], ModelEntry] = {}

    @staticmethod
    def default_models_dir() -> Path:
        from inference.paths import data_dir

        return data_dir() / "models"

    def builtin_path(self) -> str | None:
        if self._builtin is not None:
            return str(self._builtin)
        try:
            from inference.paths import default_model_path

            return str(default_model_path())
        except FileNotFoundError:
            return None

    def paths(self) -> list[tuple[str, str]]:
        """(path, source) without duplicates, built-in first."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()

        def add(p, src):
            key = os.path.realpath(p)
            if key not in seen:
                seen.add(key)
                out.append((str(p), src))

        b = self.builtin_path()
        if b:
            add(b, "builtin")
        if self.models_dir.is_dir():
            for f in sorted(self.models_dir.rglob("*.gguf")):
                if not _later_split_part(f.name):   # a split model is listed once, by part 1
                    add(f, "folder")
        for f in self.store.imported_models():
            add(f, "imported")
        return out

    def entries(self) -> list[ModelEntry]:
        return [self.entry(p, src) for p, src in self.paths()]

    def entry(self, path: str, source: str = "imported") -> ModelEntry:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return inspect(path, source)
        key = (str(path), mtime)
        if key not in self._cache:
            self._cache[key] = inspect(path, source)
        return self._cache[key]

    def import_file(self, path: str | Path, copy: bool = False) -> ModelEntry:
        """Add a .gguf to the library (by reference; `copy` puts a copy in the models folder)."""
        p = Path(path)
        if p.suffix.lower() != ".gguf":
            e = ModelEntry(str(p), p.stem, "imported")
            e.error = f"{p.name} is not a .gguf file; Lectern reads GGUF models"
            return e
        e = inspect(p, "imported")
        if e.error:
            return e
        if copy:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            target = self.models_dir / p.name
            shutil.copy2(p, target)
            return self.entry(str(target), "folder")
        self.store.add_imported_model(str(p))
        return e

    def settings(self, entry: ModelEntry) -> dict:
        s = default_settings(entry)
        s.update(self.store.model_settings(entry.path))
        return s

    def save_settings(self, entry: ModelEntry, values: dict) -> None:
        base = default_settings(entry)
        self.store.set_model_settings(entry.path, {k: v for k, v in values.items() if base.get(k) != v})
