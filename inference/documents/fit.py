"""Will the documents fit? Tokens against the context size, and the state's memory against RAM.

The state's size comes from the model's own State layout (`model.new_state`), probed at a small
context: buffers of kind KV are [n_ctx, ...] by position, so they grow by one row per token;
ring buffers (sliding-window layers) grow until they hold their window; recurrent buffers
(linear attention: conv windows, delta-rule matrices) have a fixed size. For a Kimi-Linear
model only the few MLA layers grow; for a plain attention model every layer does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..model_info import human_bytes
from ..models.base import KV, RING

PROBE = 64       # context of the probe state; smaller than any sliding window we know


@dataclass
class StateSize:
    per_token: int       # bytes per token of the growing (KV) buffers
    fixed: int           # bytes of the recurrent buffers
    ring_rows: dict      # ring buffer -> (bytes per row, rows at most; 0 = unknown)

    def at(self, n_tokens: int) -> int:
        ring = sum(b * (min(n_tokens, rows) if rows else n_tokens) for b, rows in self.ring_rows.values())
        return self.fixed + self.per_token * n_tokens + ring


def state_size(model) -> StateSize:
    st = model.new_state(PROBE)
    per_token = fixed = 0
    rings = {}
    for name, arr in st.arrays.items():
        kind = st.kinds.get(name)
        row = arr.nbytes // arr.shape[0] if arr.ndim and arr.shape[0] else 0
        if kind == KV and arr.shape[:1] == (PROBE,):
            per_token += row
        elif kind == RING and not name.startswith("pos."):
            rings[name] = row + 8                     # + the slot's int64 position
        elif not name.startswith("pos."):
            fixed += arr.nbytes
    return StateSize(per_token, fixed, _ring_rows(model, st, rings))


def _ring_rows(model, probe, rings: dict) -> dict:
    """Ring buffers at a context well past their windows show how many rows they keep (the
    probe state is allocated lazily by numpy, so its size costs no memory)."""
    if not rings:
        return {}
    big = model.new_state(2 * max(probe.windows.values()) + 4096)
    return {name: (row, big.arrays[name].shape[0]) for name, row in rings.items()}


@dataclass
class FitReport:
    fits: bool
    n_tokens: int
    n_ctx: int
    n_ctx_train: int
    state_bytes: int               # the session state holding n_tokens
    bytes_per_token: int           # growth per token (0 for a purely recurrent model)
    remedies: list[str] = field(default_factory=list)
    ram_bytes: int | None = None   # memory available, if known
    weights_bytes: int = 0
    kv_type: str = "f16"           # the KV cache type the state was measured with

    @property
    def message(self) -> str:
        """One paragraph for a banner or stderr."""
        head = (f"{self.n_tokens:,} tokens of {self.n_ctx:,} in the context; the state needs "
                f"{human_bytes(self.state_bytes)}")
        if self.bytes_per_token:
            head += f" ({human_bytes(self.bytes_per_token)} per token, {self.kv_type.upper()} KV cache)"
        if self.fits:
            return head + "."
        return head + ". It does not fit: " + "; or ".join(self.remedies) + "."


def fit_check(engine, n_tokens: int, n_ctx: int, ram_bytes: int | None = None) -> FitReport:
    """Whether n_tokens (prompt plus room for the answer) fit a session of n_ctx tokens and,
    if ram_bytes is given, whether the state for them fits in that much memory."""
    size = state_size(engine.model)
    need = size.at(n_tokens)
    train = int(engine.n_ctx_train)
    rep = FitReport(True, n_tokens, n_ctx, train, need, size.per_token, ram_bytes=ram_bytes,
                    weights_bytes=int(engine.path.stat().st_size) if engine.path.exists() else 0,
                    kv_type=engine.model.kv_type)
    over = n_tokens - n_ctx
    if over > 0:
        rep.fits = False
        if n_tokens <= train:
            rep.remedies.append(f"raise the context setting to at least {n_tokens:,} tokens "
                                f"(this model was trained for up to {train:,})")
        rep.remedies.append(f"use a model with a longer context (at least {n_tokens:,} tokens; "
                            f"this one was trained for {train:,})" if n_tokens > train else
                            "use a model with a longer context")
        rep.remedies.append(f"trim the documents by about {over:,} tokens (attach fewer files "
                            "or only the pages you need)")
    if ram_bytes is not None and need > ram_bytes:
        rep.fits = False
        rep.remedies.append(f"free memory: the state needs {human_bytes(need)} but "
                            f"{human_bytes(ram_bytes)} is available")
        if size.per_token and engine.model.kv_type == "f32":
            rep.remedies.append("use the f16 KV cache type (half the memory per token)")
        if size.per_token and not size.fixed:
            rep.remedies.append("use a model whose state grows less per token (a linear-attention "
                                "model such as Kimi-Linear)")
        if over <= 0:
            rep.remedies.append("trim the documents")
    return rep


def available_ram() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None (unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
