"""The model library: header facts, RAM fit, folder + imported + built-in entries, per-model settings."""
from __future__ import annotations

import shutil

import numpy as np

from app.library import DEFAULT_N_CTX, Library, default_settings, inspect
from app.store import Store


def test_inspect_reads_the_header(tiny_model):
    from inference.gguf_file import open_gguf
    from inference.model_info import memory_estimate

    e = inspect(tiny_model)
    g = open_gguf(tiny_model)
    assert e.ok and e.architecture == "llama" and e.weight_type == "F16"
    assert e.size == tiny_model.stat().st_size
    assert e.context_length == g.arch_get("context_length")
    assert e.memory_bytes == memory_estimate(g, min(DEFAULT_N_CTX, e.context_length))["total_bytes"]
    assert e.fits_in_ram and not inspect(tiny_model, ram=1 << 20).fits_in_ram
    assert "llama" in e.summary() and "fits in RAM" in e.summary()


def test_broken_missing_and_unsupported_files_are_entries_with_errors(tmp_path, golden):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    assert "cannot read" in inspect(bad).error
    assert "not found" in inspect(tmp_path / "gone.gguf").error


def test_library_lists_builtin_folder_and_imported(tmp_path, tiny_model):
    store = Store(tmp_path / "db.sqlite")
    folder = tmp_path / "models"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(tiny_model, folder / "sub" / "copy.gguf")
    lib = Library(store, folder, builtin=tiny_model)
    other = tiny_model.with_name("tiny-gemma3-Q8_0.gguf")
    assert lib.import_file(other).ok
    assert lib.import_file(tiny_model).ok                     # already the built-in: listed once
    assert "not a .gguf" in lib.import_file(tmp_path / "notes.txt").error
    got = [(e.source, e.path) for e in lib.entries()]
    assert got == [("builtin", str(tiny_model)), ("folder", str(folder / "sub" / "copy.gguf")),
                   ("imported", str(other))]


def test_per_model_settings_default_from_the_file_and_persist(tmp_path, tiny_model):
    store = Store(tmp_path / "db.sqlite")
    lib = Library(store, tmp_path / "models", builtin=tiny_model)
    e = lib.entry(str(tiny_model))
    s = lib.settings(e)
    assert s == default_settings(e) and s["n_ctx"] == min(DEFAULT_N_CTX, e.context_length)
    lib.save_settings(e, dict(s, system_prompt="Be brief.", temperature=0.2))
    assert store.model_settings(str(tiny_model)) == {"system_prompt": "Be brief.", "temperature": 0.2}
    again = Library(Store(tmp_path / "db.sqlite"), tmp_path / "models", builtin=tiny_model)
    assert again.settings(again.entry(str(tiny_model)))["system_prompt"] == "Be brief."


def test_a_split_model_in_the_folder_is_one_entry(tmp_path, tiny_model):
    """gguf's writer splits a model in 3 parts; the library lists it once, by part 1, with the
    size of all parts (a downloaded split variant must not show up three times)."""
    from gguf import GGUFWriter

    from inference.gguf_file import open_gguf

    whole = open_gguf(tiny_model)
    folder = tmp_path / "models"
    folder.mkdir()
    w = GGUFWriter(folder / "m.gguf", "llama", split_max_tensors=4)
    w.add_block_count(1)
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    for name in list(whole.tensors)[:10]:
        w.add_tensor(name, np.zeros(16, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    parts = sorted(folder.glob("m-*-of-*.gguf"))
    assert len(parts) == 3
    lib = Library(Store(tmp_path / "db.sqlite"), folder, builtin=tiny_model)
    folder_entries = [e for e in lib.entries() if e.source == "folder"]
    assert [e.path for e in folder_entries] == [str(parts[0])]
    assert folder_entries[0].size == sum(p.stat().st_size for p in parts)
