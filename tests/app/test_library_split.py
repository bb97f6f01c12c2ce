"""A split model downloaded into the models folder is one library entry (its first part)."""
from __future__ import annotations

import shutil

from app.library import Library
from app.store import Store


def test_split_model_is_listed_once(tmp_path, tiny_model):
    folder = tmp_path / "models" / "o__r-GGUF" / "Q4_K_M"
    folder.mkdir(parents=True)
    for i in (1, 2, 3):
        shutil.copy(tiny_model, folder / f"m-Q4_K_M-{i:05d}-of-00003.gguf")
    shutil.copy(tiny_model, folder / "whole-00002.gguf")          # not a split name: listed
    (folder / "m-Q4_K_M-00002-of-00003.gguf.part").write_bytes(b"partial")
    store = Store(tmp_path / "db.sqlite")
    try:
        lib = Library(store, tmp_path / "models", builtin=tiny_model)
        listed = sorted(p.rsplit("/", 1)[-1] for p, src in lib.paths() if src == "folder")
        assert listed == ["m-Q4_K_M-00001-of-00003.gguf", "whole-00002.gguf"]
    finally:
        store.close()
