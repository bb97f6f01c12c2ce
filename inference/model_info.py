"""A summary of a GGUF model from its header: size, shape, tokenizer, memory needed to run it.

Used by `lectern info` (and anything that shows a model card). Nothing is dequantized.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .gguf_file import GGUFFile
from .kv_cache import DEFAULT_KV_TYPE, kv_value_bytes
STATE_BYTES = 4       # recurrent (conv, delta-rule) state is F32
# Architectures whose sliding-window layers follow a fixed period (llama.cpp's swa pattern):
# every n-th layer attends globally, the others over `attention.sliding_window` tokens.
_SWA_PERIOD = {"gemma3": 6, "gemma2": 2, "cohere2": 4}


def human_count(n: int | float) -> str:
    """134515008 -> '134.5M'."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return str(int(n))


def human_bytes(n: int | float) -> str:
    for div, unit in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def _per_layer(v: Any, n_layers: int, default: int = 0) -> list[int]:
    """A metadata value that is either one number for every layer or a per-layer array."""
    if v is None:
        return [default] * n_layers
    if isinstance(v, (list, np.ndarray)):
        vals = [int(x) for x in v]
        return (vals + [vals[-1] if vals else default] * n_layers)[:n_layers]
    return [int(v)] * n_layers


def _plain(v: Any) -> Any:
    return v.tolist() if isinstance(v, np.ndarray) else v


def memory_estimate(g: GGUFFile, n_ctx: int | None = None, kv_type: str = DEFAULT_KV_TYPE) -> dict[str, Any]:
    """Weights (tensor data as stored) plus cache for n_ctx tokens (default: training context).

    Attention layers keep K and V per token (2 bytes a value with the F16 cache type, 4 with
    F32: kv_type); sliding-window layers at most `window` tokens;
    kimi-linear's MLA layers keep their latent (kv_lora_rank + rope dims) per token and its KDA
    layers a fixed recurrent state (conv windows and the delta-rule matrix, F32).
    """
    arch = g.architecture
    kv_bytes = kv_value_bytes(kv_type)
    n_layers = int(g.arch_get("block_count", 0) or 0)
    n_ctx = int(n_ctx or g.arch_get("context_length", 0) or 0)
    n_embd = int(g.arch_get("embedding_length", 0) or 0)
    heads = _per_layer(g.arch_get("attention.head_count"), n_layers)
    kv_heads = _per_layer(g.arch_get("attention.head_count_kv"), n_layers)
    if g.arch_get("attention.head_count_kv") is None:
        kv_heads = heads
    window = int(g.arch_get("attention.sliding_window", 0) or 0)
    pattern = g.arch_get("attention.sliding_window_pattern")
    if pattern is not None and not isinstance(pattern, (list, np.ndarray)):
        pattern = None
    per_token = 0      # bytes per token of every layer that caches tokens (full-context equivalent)
    full_tokens = 0    # ... of the layers whose cache grows with the whole context
    window_bytes = 0   # sliding-window layers: at most `window` tokens each
    state_bytes = 0    # recurrent layers: fixed size
    for il in range(n_layers):
        if arch == "kimi-linear":
            if kv_heads[il] > 0:   # MLA: one latent row per token, V is a view of it
                row = (int(g.arch_get("attention.kv_lora_rank", 0))
                       + int(g.arch_get("rope.dimension_count", 0))) * kv_bytes
                per_token += row
                full_tokens += row
            else:                  # KDA: q, k, v conv windows plus one d x d state per head
                d, h = int(g.arch_get("kda.head_dim", 0)), heads[il]
                conv = (int(g.arch_get("ssm.conv_kernel", 4)) - 1) * 3 * h * d
                state_bytes += (conv + h * d * d) * STATE_BYTES
            continue
        head_dim = n_embd // heads[il] if heads[il] else 0
        k_len = int(g.arch_get("attention.key_length", head_dim) or head_dim)
        v_len = int(g.arch_get("attention.value_length", head_dim) or head_dim)
        row = kv_heads[il] * (k_len + v_len) * kv_bytes
        per_token += row
        if window and _is_swa(arch, il, pattern):
            window_bytes += row * min(window, n_ctx)
        else:
            full_tokens += row
    weights = sum(t.nbytes for t in g.tensors.values())
    cache = full_tokens * n_ctx + window_bytes + state_bytes
    return {
        "weights_bytes": weights,
        "context": n_ctx,
        "kv_type": kv_type,
        "kv_bytes_per_token": per_token,
        "window_cache_bytes": window_bytes,
        "recurrent_state_bytes": state_bytes,
        "cache_bytes": cache,
        "total_bytes": weights + cache,
    }


def _is_swa(arch: str, il: int, pattern) -> bool:
    if pattern is not None:
        return il < len(pattern) and bool(pattern[il])
    period = _SWA_PERIOD.get(arch)
    return bool(period) and il % period < period - 1


def describe(g: GGUFFile, kv_type: str = DEFAULT_KV_TYPE) -> dict[str, Any]:
    """Everything `lectern info` shows, as plain JSON-able values (memory: with this KV cache type)."""
    from gguf import LlamaFileType

    types: Counter = Counter()
    type_bytes: Counter = Counter()
    for t in g.tensors.values():
        types[t.type_name] += 1
        type_bytes[t.type_name] += t.nbytes
    n_params = sum(t.n_elements for t in g.tensors.values())
    ftype = g.get("general.file_type")
    try:
        ftype_name = LlamaFileType(ftype).name if ftype is not None else None
    except ValueError:
        ftype_name = None
    tokens = g.get("tokenizer.ggml.tokens")
    template = g.get("tokenizer.chat_template")
    n_layers = g.arch_get("block_count")
    return {
        "path": str(g.path),
        "paths": [str(p) for p in g.paths],
        "file_size": g.file_size,
        "gguf_version": g.version,
        "architecture": g.architecture or None,
        "name": g.get("general.name"),
        "parameters": n_params,
        "parameters_human": human_count(n_params),
        "tensors": len(g.tensors),
        "file_type": ftype,
        "file_type_name": ftype_name,
        "weight_types": {k: {"tensors": types[k], "bytes": type_bytes[k]}
                         for k in sorted(types, key=lambda k: -type_bytes[k])},
        "context_length": g.arch_get("context_length"),
        "embedding_length": g.arch_get("embedding_length"),
        "block_count": n_layers,
        "head_count": _plain(g.arch_get("attention.head_count")),
        "head_count_kv": _plain(g.arch_get("attention.head_count_kv")),
        "vocab_size": len(tokens) if tokens is not None else g.arch_get("vocab_size"),
        "tokenizer_model": g.get("tokenizer.ggml.model"),
        "tokenizer_pre": g.get("tokenizer.ggml.pre"),
        "chat_template": template is not None,
        "memory": memory_estimate(g, kv_type=kv_type) if n_layers else None,
    }
