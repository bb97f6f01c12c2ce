"""The KV cache type, a setting per model load (llama.cpp's -ctk / -ctv):

  "f16"  (default, llama.cpp's default) K and V stored as IEEE half (np.float16, 2 bytes a value);
         attention rounds q and the softmax probabilities to half too, as llama.cpp's CPU path
  "f32"  K and V stored as float32 (4 bytes a value), nothing rounded to half (-ctk f32 -ctv f32)

Every architecture's State records its type (State.kv_type); model_info's per-token estimate and
saved sessions follow it.
"""
from __future__ import annotations

import numpy as np

from .errors import KVTypeError

KV_TYPES = ("f16", "f32")
DEFAULT_KV_TYPE = "f16"
_DTYPES = {"f16": np.dtype(np.float16), "f32": np.dtype(np.float32)}
KV_BYTES = {name: dt.itemsize for name, dt in _DTYPES.items()}   # bytes per cached K/V value


def check_kv_type(value) -> str:
    """'f16' / 'F16' / ' f32 ' -> the canonical name; anything else: KVTypeError saying what is allowed."""
    v = str(value).strip().lower() if isinstance(value, str) else None
    if v not in KV_TYPES:
        raise KVTypeError(f"KV cache type {value!r} is not supported; use one of: {', '.join(KV_TYPES)} "
                          f"(default {DEFAULT_KV_TYPE})")
    return v


def kv_dtype(kv_type: str) -> np.dtype:
    """The numpy element type of a cache of this type."""
    return _DTYPES[check_kv_type(kv_type)]


def kv_value_bytes(kv_type: str) -> int:
    """Bytes one cached K or V value takes."""
    return KV_BYTES[check_kv_type(kv_type)]


def kv_type_of(arr: np.ndarray) -> str:
    """The cache type a K/V array stands for, from its element type."""
    for name, dt in _DTYPES.items():
        if arr.dtype == dt:
            return name
    raise KVTypeError(f"a KV cache array of {arr.dtype} is neither float16 nor float32")
