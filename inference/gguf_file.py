"""GGUF files as typed, zero-copy views into read-only memory maps.

Layout of a GGUF file (little-endian, versions 2 and 3):

    magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
    n_kv x       key: string | value_type u32 | value
    n_tensors x  name: string | n_dims u32 | ne u64[n_dims] | ggml_type u32 | offset u64
    padding to `general.alignment` (default 32) | tensor data (offsets relative to here)

    string = length u64 | utf-8 bytes;  array value = item_type u32 | count u64 | items

Every length, count and offset is checked against the bytes that remain in the file before
anything is allocated, so a malformed file raises GGUFError naming the file and the problem.
A model split into `name-00001-of-0000N.gguf` parts (keys split.no / split.count /
split.tensors.count) opens as one GGUFFile from any of its parts.
"""
from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType

from .errors import GGUFError
from .quants.types import BLOCK_SIZES

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4             # GGML_MAX_DIMS
MAX_NAME_BYTES = 63      # GGML_MAX_NAME (64) minus the terminating NUL
MAX_ARRAY_NESTING = 8
INT64_MAX = (1 << 63) - 1

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# value type id -> (name, struct for scalars, numpy dtype for arrays); 8 string, 9 array
_SCALARS = {
    0: ("uint8", struct.Struct("<B"), np.dtype("<u1")),
    1: ("int8", struct.Struct("<b"), np.dtype("<i1")),
    2: ("uint16", struct.Struct("<H"), np.dtype("<u2")),
    3: ("int16", struct.Struct("<h"), np.dtype("<i2")),
    4: ("uint32", struct.Struct("<I"), np.dtype("<u4")),
    5: ("int32", struct.Struct("<i"), np.dtype("<i4")),
    6: ("float32", struct.Struct("<f"), np.dtype("<f4")),
    7: ("bool", struct.Struct("<B"), np.dtype("<u1")),
    10: ("uint64", struct.Struct("<Q"), np.dtype("<u8")),
    11: ("int64", struct.Struct("<q"), np.dtype("<i8")),
    12: ("float64", struct.Struct("<d"), np.dtype("<f8")),
}
_STRING, _ARRAY, _BOOL = 8, 9, 7
_MIN_KV_BYTES = 8 + 4 + 1            # empty key is rejected, but count it generously
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8
_SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


@dataclass(frozen=True)
class Tensor:
    name: str
    ggml_type: GGMLQuantizationType
    shape_ggml: tuple[int, ...]   # ne order: ne[0] is the contiguous (row) dimension
    data: np.ndarray = field(repr=False)  # uint8 [nbytes], a view into the file's memory map

    @property
    def type_name(self) -> str:
        return self.ggml_type.name

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy (C) order: ne reversed; a linear weight [in, out] in ggml is (out, in) here."""
        return tuple(reversed(self.shape_ggml))

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape_ggml:
            n *= int(d)
        return n

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def block(self) -> tuple[int, int]:
        """(elements per block, bytes per block) of the weight type."""
        return BLOCK_SIZES[self.ggml_type]

    def numpy(self) -> np.ndarray:
        """The whole tensor dequantized to float32 in numpy shape. Only for small tensors."""
        from .quants import dequantize

        return dequantize(self.data, self.ggml_type, self.n_elements).reshape(self.shape)


NATIVE_STRINGS = 1024      # string arrays this long are split by jit.strings when the JIT is on


def _native_strings():
    """jit.strings if the JIT kernels are selected (LECTERN_KERNELS), else None."""
    try:
        from jit import api
        if api.enabled():
            from jit import strings
            return strings
    except Exception:  # noqa: BLE001 - no JIT: the Python loop reads the same strings
        pass
    return None


class _Part:
    """One parsed GGUF file: its map, metadata and tensors (data views into the map)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with open(path, "rb") as f:
                self.size = os.fstat(f.fileno()).st_size
                if self.size < 4:
                    raise GGUFError(f"{path}: not a GGUF file (only {self.size} bytes)")
                self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise GGUFError(f"{path}: cannot read the file ({e.strerror or e})") from e
        self.pos = 0
        self.metadata: dict[str, Any] = {}
        self.tensors: dict[str, Tensor] = {}
        self._parse()

    # ---- bounds-checked reading -------------------------------------------------------------
    def fail(self, problem: str) -> GGUFError:
        return GGUFError(f"{self.path}: {problem}")

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.fail(f"truncated file: {what} at byte {self.pos} needs {n} bytes "
                            f"but only {self.size - self.pos} remain")

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = _U32.unpack_from(self.map, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = _U64.unpack_from(self.map, self.pos)
        self.pos += 8
        return v

    def raw_string(self, what: str) -> bytes:
        n = self.u64(f"length of {what}")
        self.need(n, what)
        s = self.map[self.pos:self.pos + n]
        self.pos += n
        return s

    def count(self, n: int, item_bytes: int, what: str) -> int:
        """A count read from the file, rejected unless n items of item_bytes each can fit."""
        if n * item_bytes > self.size - self.pos:
            raise self.fail(f"{what} is {n}, but {n} items need at least {n * item_bytes} bytes "
                            f"and only {self.size - self.pos} remain (corrupt or truncated file)")
        return n

    # ---- metadata values --------------------------------------------------------------------
    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype == _STRING:
            return self.raw_string(what).decode("utf-8", errors="replace")
        if vtype == _ARRAY:
            return self.array(what, depth)
        if vtype not in _SCALARS:
            raise self.fail(f"{what} has unknown value type {vtype}")
        _, st, _ = _SCALARS[vtype]
        self.need(st.size, what)
        (v,) = st.unpack_from(self.map, self.pos)
        self.pos += st.size
        return bool(v) if vtype == _BOOL else v

    def array(self, what: str, depth: int) -> Any:
        if depth >= MAX_ARRAY_NESTING:
            raise self.fail(f"{what}: arrays nested deeper than {MAX_ARRAY_NESTING} levels")
        itype = self.u32(f"item type of {what}")
        n = self.u64(f"length of {what}")
        if itype == _STRING:
            return self.string_array(self.count(n, 8, f"length of {what}"), what)
        if itype == _ARRAY:
            self.count(n, 12, f"length of {what}")
            return [self.value(_ARRAY, f"{what}[{i}]", depth + 1) for i in range(n)]
        if itype not in _SCALARS:
            raise self.fail(f"{what} is an array of unknown value type {itype}")
        dtype = _SCALARS[itype][2]
        self.count(n, dtype.itemsize, f"length of {what}")
        arr = np.frombuffer(self.map, dtype=dtype, count=n, offset=self.pos)
        self.pos += n * dtype.itemsize
        return arr != 0 if itype == _BOOL else arr

    def string_array(self, n: int, what: str) -> list[str]:
        native = _native_strings() if n and n >= NATIVE_STRINGS else None
        if native is not None:
            data = np.frombuffer(self.map, np.uint8)
            starts, lens, count = native.records(data, self.pos, n)
            if count == n:                        # else the loop below names the record that does not fit
                self.pos = int(starts[-1] + lens[-1])
                return native.split(data, starts, lens)
        # The hot loop of a vocabulary without the JIT: kept local and flat.
        buf, pos, end, unpack = self.map, self.pos, self.size, _U64.unpack_from
        out: list[str] = [""] * n
        for i in range(n):
            if end - pos < 8:
                self.pos = pos
                self.need(8, f"length of {what}[{i}]")
            (ln,) = unpack(buf, pos)
            pos += 8
            if ln > end - pos:
                self.pos = pos
                self.need(ln, f"{what}[{i}]")
            out[i] = buf[pos:pos + ln].decode("utf-8", errors="replace")
            pos += ln
        self.pos = pos
        return out

    # ---- the file ---------------------------------------------------------------------------
    def _parse(self) -> None:
        magic = self.map[0:4]
        if magic != MAGIC:
            raise self.fail(f"not a GGUF file (starts with {magic!r}, expected {MAGIC!r})")
        self.pos = 4
        self.version = self.u32("version")
        self._check_version()
        n_tensors = self.u64("tensor count")
        n_kv = self.u64("metadata key count")
        self.count(n_kv, _MIN_KV_BYTES, "metadata key count")
        self.count(n_tensors, _MIN_TENSOR_INFO_BYTES, "tensor count")
        self.count(n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES, 1,
                   "header size implied by the key and tensor counts")
        for i in range(n_kv):
            self._read_kv(i)
        self.alignment = self._alignment()
        infos = [self._read_tensor_info(i) for i in range(n_tensors)]
        self.data_offset = -(-self.pos // self.alignment) * self.alignment
        self._bind_tensors(infos)

    def _check_version(self) -> None:
        v = self.version
        if v in (2, 3):
            return
        swapped = int.from_bytes(v.to_bytes(4, "little"), "big")
        if swapped in (1, 2, 3):
            raise self.fail(f"big-endian GGUF file (version {swapped}); only little-endian files "
                            "are supported: convert it or download the little-endian file")
        if v == 1:
            raise self.fail("GGUF version 1 is no longer supported: re-convert the model "
                            "with a current llama.cpp or download a newer file")
        raise self.fail(f"unsupported GGUF version {v} (this reader supports versions 2 and 3)")

    def _read_kv(self, i: int) -> None:
        raw = self.raw_string(f"key of metadata entry {i}")
        key = raw.decode("utf-8", errors="replace")
        if not key:
            raise self.fail(f"metadata entry {i} has an empty key")
        if key in self.metadata:
            raise self.fail(f"duplicate metadata key {key!r} (entry {i})")
        vtype = self.u32(f"value type of {key!r}")
        if vtype == _ARRAY:
            self.metadata[key] = self.array(f"value of {key!r}", 0)
        else:
            self.metadata[key] = self.value(vtype, f"value of {key!r}")
        if key == "general.alignment" and vtype != 4:
            raise self.fail(f"general.alignment must be a uint32, not value type {vtype}")

    def _alignment(self) -> int:
        a = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if a <= 0 or a & (a - 1):
            raise self.fail(f"general.alignment {a} is not a power of two")
        return a

    def _read_tensor_info(self, i: int) -> tuple[str, GGMLQuantizationType, tuple[int, ...], int, int]:
        raw = self.raw_string(f"name of tensor {i}")
        name = raw.decode("utf-8", errors="replace")
        if not name or len(raw) > MAX_NAME_BYTES:
            raise self.fail(f"tensor {i} has an invalid name {name[:80]!r} "
                            f"(must be 1..{MAX_NAME_BYTES} bytes)")
        if name in self.tensors:
            raise self.fail(f"duplicate tensor name {name!r} (tensor {i})")
        self.tensors[name] = None  # type: ignore[assignment]  # placeholder for the duplicate check
        n_dims = self.u32(f"dimension count of tensor {name!r}")
        if n_dims > MAX_DIMS:
            raise self.fail(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS} allowed)")
        ne = tuple(self.u64(f"dimension {d} of tensor {name!r}") for d in range(n_dims))
        code = self.u32(f"type of tensor {name!r}")
        offset = self.u64(f"data offset of tensor {name!r}")
        try:
            qtype = GGMLQuantizationType(code)
            bs, bb = BLOCK_SIZES[qtype]
        except (ValueError, KeyError):
            raise self.fail(f"tensor {name!r} has unknown ggml type {code}") from None
        for d, n in enumerate(ne):
            if n == 0 or n > INT64_MAX:
                raise self.fail(f"tensor {name!r} dimension {d} is {n if n <= INT64_MAX else n - (1 << 64)}"
                                " (every dimension must be positive)")
        n_elements = 1
        for n in ne:
            n_elements *= n
        if n_elements > INT64_MAX:
            raise self.fail(f"tensor {name!r} shape {list(ne)} has more than 2^63 elements")
        if ne and ne[0] % bs:
            raise self.fail(f"tensor {name!r} of type {qtype.name} has rows of {ne[0]} elements, "
                            f"not a multiple of the block size {bs}")
        return name, qtype, ne, offset, n_elements // bs * bb

    def _bind_tensors(self, infos) -> None:
        base = np.frombuffer(self.map, dtype=np.uint8)
        data_size = self.size - self.data_offset
        prev_end, prev_name = 0, None
        for name, qtype, ne, offset, nbytes in sorted(infos, key=lambda t: t[3]):
            if offset % self.alignment:
                raise self.fail(f"tensor {name!r} data offset {offset} is not a multiple of the "
                                f"alignment {self.alignment}")
            if offset < prev_end:
                raise self.fail(f"tensor {name!r} data (offset {offset}) overlaps tensor "
                                f"{prev_name!r} (which ends at {prev_end})")
            if offset + nbytes > data_size:
                raise self.fail(f"tensor {name!r} data ({nbytes} bytes at offset {offset}) runs past "
                                f"the end of the file ({data_size} data bytes): truncated file?")
            start = self.data_offset + offset
            self.tensors[name] = Tensor(name, qtype, ne, base[start:start + nbytes])
            prev_end, prev_name = offset + nbytes, name


class GGUFFile:
    """An open GGUF model: `metadata` (python values) and `tensors` (name -> Tensor).

    Metadata values are python scalars and str; arrays of numbers are read-only numpy views
    into the map; arrays of strings are lists of str; arrays of arrays are lists.
    `path` is the model's (first) file, `paths` every part of a split model.
    """

    def __init__(self, path: str | Path):
        given = Path(path)
        if not given.exists():
            raise GGUFError(f"{given}: no such file")
        if not given.is_file():
            raise GGUFError(f"{given}: not a regular file")
        first = _Part(given)
        parts = _load_split_parts(first)
        self._parts = parts
        self.path = parts[0].path
        self.paths = [p.path for p in parts]
        self.version = parts[0].version
        self.alignment = parts[0].alignment
        self.metadata: dict[str, Any] = parts[0].metadata
        self.tensors: dict[str, Tensor] = {}
        for part in parts:
            for name, t in part.tensors.items():
                if name in self.tensors:
                    raise GGUFError(f"{part.path}: tensor {name!r} also appears in an earlier part "
                                    "of this split model")
                self.tensors[name] = t

    @property
    def file_size(self) -> int:
        """Bytes of every part together."""
        return sum(p.size for p in self._parts)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_get(self, key: str, default: Any = None) -> Any:
        """`{architecture}.{key}`, e.g. arch_get("block_count")."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def close(self) -> None:
        """Drop the maps. Tensor views still held elsewhere keep their map alive until freed."""
        self.tensors = {}
        self.metadata = {}
        self._parts = []

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, {self.architecture!r}, {len(self.tensors)} tensors)"


def _split_info(part: _Part) -> tuple[int, int] | None:
    """(split.no, split.count) of a part of a split model, or None for a whole file."""
    count = part.metadata.get("split.count")
    if count is None:
        return None
    no = part.metadata.get("split.no", 0)
    if not isinstance(count, int) or isinstance(count, bool) or not isinstance(no, int) \
            or not 1 <= count <= 99999 or not 0 <= no < count:
        raise GGUFError(f"{part.path}: invalid split keys split.no={no!r} split.count={count!r}")
    return None if count == 1 else (no, count)


def _load_split_parts(opened: _Part) -> list[_Part]:
    info = _split_info(opened)
    if info is None:
        return [opened]
    no, count = info
    m = _SPLIT_NAME.match(opened.path.name)
    if not m or int(m["count"]) != count or int(m["no"]) != no + 1:
        raise GGUFError(f"{opened.path}: part {no + 1} of a model split in {count} files, but the file "
                        f"name does not follow the pattern NAME-{no + 1:05d}-of-{count:05d}.gguf "
                        "so the other parts cannot be found")
    parts: list[_Part] = []
    for i in range(count):
        p = opened.path.with_name(f"{m['stem']}-{i + 1:05d}-of-{count:05d}.gguf")
        if i == no:
            parts.append(opened)
            continue
        if not p.is_file():
            raise GGUFError(f"{p}: missing part {i + 1} of {count} of the split model {opened.path.name}; "
                            "download every part into the same folder")
        part = _Part(p)
        if _split_info(part) != (i, count):
            raise GGUFError(f"{p}: expected part {i + 1} of {count}, but its split keys say "
                            f"split.no={part.metadata.get('split.no')!r} "
                            f"split.count={part.metadata.get('split.count')!r}")
        parts.append(part)
    expected = parts[0].metadata.get("split.tensors.count")
    total = sum(len(p.tensors) for p in parts)
    if expected is not None and expected != total:
        raise GGUFError(f"{parts[0].path}: split.tensors.count is {expected} but the {count} parts "
                        f"hold {total} tensors")
    return parts


def open_gguf(path: str | Path) -> GGUFFile:
    return GGUFFile(path)
