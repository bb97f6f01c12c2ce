"""jit.strings: GGUF string arrays split natively give Python's own UTF-8 decoding of each record
(errors="replace"), for any bytes (invalid UTF-8, NULs, empty records), and a record that runs
past the end of the file is reported as the Python loop reports it."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference import gguf_file
from inference.errors import GGUFError
from tests.inference import gguf_bytes as gb

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEXTY = st.text(alphabet="aé€😀\u2581 <>|", max_size=8).map(str.encode)
RECORDS = st.lists(st.one_of(st.binary(max_size=12), TEXTY, st.just(b"\0"), st.just(b"")), max_size=40)


def with_strings(tmp_path, items: list[bytes]):
    s = gb.sample()
    s.kvs.append(gb.string("x") + gb.u32(gb.ARRAY) + gb.u32(gb.STRING) + gb.u64(len(items))
                 + b"".join(gb.string(b) for b in items))
    path = tmp_path / "s.gguf"
    path.write_bytes(s.build())
    return path


@pytest.fixture
def native_always(monkeypatch):
    monkeypatch.setattr(gguf_file, "NATIVE_STRINGS", 0)
    assert gguf_file._native_strings() is not None, "the JIT is off: this would test the Python loop"


@SETTINGS
@given(RECORDS)
def test_records_decode_as_python_decodes_each(tmp_path, native_always, items):
    with gguf_file.open_gguf(with_strings(tmp_path, items)) as g:
        assert g.metadata["x"] == [b.decode("utf-8", errors="replace") for b in items]
        assert g.metadata["tokenizer.ggml.tokens"] == ["<s>", "a", "é"]       # the keys after it too


@SETTINGS
@given(RECORDS.filter(bool), st.integers(2, 10**6), st.integers(0, 8))
def test_a_record_past_the_end_is_named_as_the_loop_names_it(tmp_path, monkeypatch, items, extra, cut):
    """The record after `items`, the file's last bytes, claims `extra` bytes where 1 is left,
    or (cut < 8) the file ends inside its length."""
    s = gb.sample()
    s.infos = []
    s.kvs.append(gb.string("x") + gb.u32(gb.ARRAY) + gb.u32(gb.STRING) + gb.u64(len(items) + 1)
                 + b"".join(gb.string(b) for b in items) + (gb.u64(extra) + b"z")[:cut if cut < 8 else None])
    path = tmp_path / "s.gguf"
    path.write_bytes(s.header())
    errors = []
    for threshold in (0, 10**9):                                  # native, then the Python loop
        monkeypatch.setattr(gguf_file, "NATIVE_STRINGS", threshold)
        with pytest.raises(GGUFError) as e:
            gguf_file.open_gguf(path)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "value of 'x'" in errors[0]
