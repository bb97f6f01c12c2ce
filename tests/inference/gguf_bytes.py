"""Build GGUF files byte by byte, every field explicit, to make precisely malformed files.

Valid files in the tests come from gguf.GGUFWriter (an independent writer); this builder is for
headers that no writer would produce (wrong counts, huge lengths, bad offsets, ...).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
        U64: "<Q", I64: "<q", F64: "<d"}


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def string(text: str | bytes) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return u64(len(b)) + b


def value(vtype: int, v) -> bytes:
    """The bytes of a value of `vtype` (no type prefix). Arrays: v = (item_type, [items])."""
    if vtype == STRING:
        return string(v)
    if vtype == ARRAY:
        itype, items = v
        return u32(itype) + u64(len(items)) + b"".join(value(itype, x) for x in items)
    return struct.pack(_FMT[vtype], v)


def kv(key: str | bytes, vtype: int, v) -> bytes:
    return string(key) + u32(vtype) + value(vtype, v)


def tensor_info(name: str | bytes, ne: list[int], ggml_type: int, offset: int) -> bytes:
    return string(name) + u32(len(ne)) + b"".join(u64(n) for n in ne) + u32(ggml_type) + u64(offset)


@dataclass
class Spec:
    """A GGUF file as parts; `build()` joins them. Counts default to the lists' lengths."""
    kvs: list[bytes] = field(default_factory=list)
    infos: list[bytes] = field(default_factory=list)
    data: bytes = b""
    version: int = 3
    magic: bytes = b"GGUF"
    n_kv: int | None = None
    n_tensors: int | None = None
    alignment: int = 32

    def header(self) -> bytes:
        return (self.magic + u32(self.version)
                + u64(len(self.infos) if self.n_tensors is None else self.n_tensors)
                + u64(len(self.kvs) if self.n_kv is None else self.n_kv)
                + b"".join(self.kvs) + b"".join(self.infos))

    def build(self) -> bytes:
        h = self.header()
        return h + b"\0" * (-len(h) % self.alignment) + self.data


def sample() -> Spec:
    """A small valid file: a few keys of several types, an F32 [4] and a Q8_0 [32, 2] tensor."""
    return Spec(
        kvs=[kv("general.architecture", STRING, "llama"),
             kv("llama.block_count", U32, 2),
             kv("some.floats", ARRAY, (F32, [0.5, -1.0, 2.0])),
             kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["<s>", "a", "é"]))],
        infos=[tensor_info("a", [4], 0, 0),           # F32: 16 bytes at 0
               tensor_info("b", [32, 2], 8, 32)],     # Q8_0: 2 blocks of 34 bytes at 32
        data=bytes(range(16)) + b"\0" * 16 + bytes(68),
    )
