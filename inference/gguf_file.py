"""GGUF files as typed, zero-copy views into a memory map.

PROVISIONAL: wraps gguf.GGUFReader; the foundation issue replaces the parsing with a
bounds-checked reader of our own behind the same interface (GGUFFile, Tensor, open_gguf).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType

from .errors import GGUFError


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
        return int(np.prod(self.shape_ggml, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def block(self) -> tuple[int, int]:
        """(elements per block, bytes per block) of the weight type."""
        return GGML_QUANT_SIZES[self.ggml_type]

    def numpy(self) -> np.ndarray:
        """The whole tensor dequantized to float32 in numpy shape. Only for small tensors."""
        from .quants import dequantize

        return dequantize(self.data, self.ggml_type, self.n_elements).reshape(self.shape)


class GGUFFile:
    """An open GGUF file: `metadata` (python values) and `tensors` (name -> Tensor)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            reader = GGUFReader(self.path, "r")
        except Exception as e:  # noqa: BLE001 - provisional reader
            raise GGUFError(f"{self.path}: not a readable GGUF file ({e})") from e
        self.metadata: dict[str, Any] = {}
        for key, field in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            self.metadata[key] = _field_value(field)
        self.tensors: dict[str, Tensor] = {}
        for t in reader.tensors:
            data = np.asarray(t.data).view(np.uint8).reshape(-1)
            self.tensors[t.name] = Tensor(
                t.name, GGMLQuantizationType(t.tensor_type), tuple(int(x) for x in t.shape), data
            )

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_get(self, key: str, default: Any = None) -> Any:
        """`{architecture}.{key}`, e.g. arch_get("block_count")."""
        return self.metadata.get(f"{self.architecture}.{key}", default)


def _field_value(field) -> Any:
    types = field.types
    if types[0] == GGUFValueType.ARRAY:
        if len(types) > 1 and types[1] == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        if len(types) > 1 and types[1] == GGUFValueType.ARRAY:
            return field.contents()
        return np.concatenate([field.parts[i] for i in field.data]) if field.data else np.zeros(0)
    return field.contents()


def open_gguf(path: str | Path) -> GGUFFile:
    return GGUFFile(path)
