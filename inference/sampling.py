"""Choosing the next token from the logits, the way llama.cpp's default sampler chain does.

Order (llama.cpp `common_sampler`): penalties -> top-k -> top-p -> min-p -> temperature -> draw.
top-p and min-p look at the distribution at temperature 1 (temperature is applied after them),
exactly as llama.cpp does. Temperature <= 0 means greedy: the argmax of the penalised logits.

Penalties (llama.cpp `llama_sampler_penalties_apply`), for every token id seen c > 0 times in the
last `repeat_last_n` tokens of the history (prompt and answer so far):
    logit = logit * repeat_penalty  if logit <= 0  else  logit / repeat_penalty
    logit -= c * frequency_penalty + presence_penalty          (OpenAI's definition)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. Defaults are llama.cpp's."""
    temperature: float = 0.8
    top_k: int = 40               # 0 disables
    top_p: float = 0.95           # 1 disables
    min_p: float = 0.05           # 0 disables
    repeat_penalty: float = 1.0   # 1 disables
    repeat_last_n: int = 64       # tokens of history the penalties look at; -1 = all, 0 = none
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None       # None: a fresh random seed
    max_tokens: int | None = None  # None: until an end-of-generation token or the context is full
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False      # never pick an end-of-generation token (llama.cpp --ignore-eos)

    def __post_init__(self):
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        self.validate()

    def validate(self) -> None:
        def finite(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
            return v

        def integer(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {v!r}")
            return int(v)

        finite("temperature")  # <= 0 is allowed: it means greedy
        if integer("top_k") < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0.0 <= finite("top_p") <= 1.0:
            raise ValueError(f"top_p must be between 0 and 1 (1 disables it), got {self.top_p}")
        if not 0.0 <= finite("min_p") <= 1.0:
            raise ValueError(f"min_p must be between 0 and 1 (0 disables it), got {self.min_p}")
        if finite("repeat_penalty") <= 0.0:
            raise ValueError(f"repeat_penalty must be > 0 (1 disables it), got {self.repeat_penalty}")
        if integer("repeat_last_n") < -1:
            raise ValueError(f"repeat_last_n must be >= -1 (-1 = whole history, 0 = off), "
                             f"got {self.repeat_last_n}")
        finite("frequency_penalty")
        finite("presence_penalty")
        if self.seed is not None and (integer("seed") < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {self.seed}")
        if self.max_tokens is not None and integer("max_tokens") < 0:
            raise ValueError(f"max_tokens must be >= 0 or None (no limit), got {self.max_tokens}")
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop strings must be non-empty strings, got {s!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def with_(self, **changes) -> "SamplingParams":
        return replace(self, **changes)


GREEDY = SamplingParams(temperature=0.0)


class Sampler:
    """Draws tokens for one generation. Same params (with a seed) and same logits -> same tokens."""

    def __init__(self, params: SamplingParams):
        params.validate()
        self.params = params
        self.rng = np.random.default_rng(params.seed)
        self._scratch = np.empty(0, np.float32)   # top-k's partition buffer, reused token after token

    # --- the steps of the chain, each usable (and tested) alone ------------------------------
    def _penalties_off(self, history: Sequence[int]) -> bool:
        p = self.params
        n = p.repeat_last_n if p.repeat_last_n >= 0 else len(history)
        off = p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0
        return off or n == 0 or len(history) == 0

    def penalize(self, logits: np.ndarray, history: Sequence[int] = ()) -> np.ndarray:
        """logits [n_vocab] -> a penalised copy (float64)."""
        p = self.params
        out = np.array(logits, dtype=np.float64)
        if self._penalties_off(history):
            return out
        n = p.repeat_last_n if p.repeat_last_n >= 0 else len(history)
        recent = np.asarray(history[-n:], dtype=np.int64)
        recent = recent[(recent >= 0) & (recent < out.shape[0])]
        ids, counts = np.unique(recent, return_counts=True)
        x = out[ids]
        x = np.where(x <= 0, x * p.repeat_penalty, x / p.repeat_penalty)
        out[ids] = x - counts * p.frequency_penalty - p.presence_penalty
        return out

    def candidates(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penalised logits [n_vocab] -> (ids, logits) kept by top-k, top-p, min-p, best first."""
        p = self.params
        logits = np.asarray(logits)
        if logits.dtype != np.float32:          # float32 logits stay float32 until the k are chosen
            logits = np.asarray(logits, dtype=np.float64)
        n = logits.shape[0]
        k = n if p.top_k <= 0 else min(p.top_k, n)
        ids = self._top_k(logits, k) if k < n else np.arange(n)
        zk = np.asarray(logits[ids], dtype=np.float64)
        # stable descending order: ties keep the lower id first (llama.cpp keeps them in any order)
        order = np.lexsort((ids, -zk))
        ids, z = ids[order], zk[order]
        if p.top_p < 1.0:
            probs = _softmax(z)
            cum = np.cumsum(probs)
            keep = int(np.searchsorted(cum, p.top_p, side="left")) + 1  # first i with cum >= top_p
            ids, z = ids[:keep], z[:keep]
        if p.min_p > 0.0:
            keep = z >= z[0] + math.log(p.min_p)   # p_i >= min_p * p_max; the best always stays
            ids, z = ids[keep], z[keep]
        return ids, z

    def _top_k(self, z: np.ndarray, k: int) -> np.ndarray:
        """The ids of the k largest of z [n] (0 < k < n), in any order: np.argpartition's set,
        without its n-long index array or a float64 copy of float32 logits (fresh megabytes, page
        faults and all, on a 262k vocabulary: most of a token's sampling time).

        If exactly k values are >= the k-th largest, they are the one top-k set (float32 values
        are their float64 values). Otherwise (a tie at the boundary, or NaN) the float64
        argpartition decides which of the tied ones stay, as it always did."""
        n = z.shape[0]
        if self._scratch.shape != z.shape or self._scratch.dtype != z.dtype:
            self._scratch = np.empty_like(z)
        buf = self._scratch
        np.copyto(buf, z)
        buf.partition(n - k)                   # buf[n - k]: the k-th largest
        ids = np.flatnonzero(z >= buf[n - k])
        if len(ids) == k:
            return ids
        return np.argpartition(-np.asarray(z, dtype=np.float64), k - 1)[:k]

    def distribution(self, logits: np.ndarray, history: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """(ids, probabilities) the next token is drawn from. Greedy: the argmax with p = 1.
        Float32 logits are read as float64 values (exact), without a float64 copy of them all when
        no penalty applies."""
        x = np.asarray(logits)
        if x.dtype == np.float32 and self._penalties_off(history):
            z = x
        else:
            z = self.penalize(logits, history)
        if self.params.greedy:
            return np.array([int(np.argmax(z))]), np.array([1.0])
        ids, z = self.candidates(z)
        return ids, _softmax(z / self.params.temperature)

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        """Pick the next token id from logits [n_vocab] (float32 from the model)."""
        logits = np.asarray(logits).reshape(-1)
        if logits.dtype != np.float32:
            logits = np.asarray(logits, dtype=np.float64)
        if np.isnan(logits).any():
            logits = np.where(np.isnan(logits), -np.inf, np.asarray(logits, dtype=np.float64))
        if not np.isfinite(logits).any():
            raise ValueError("the model produced no finite logits; cannot sample")
        ids, probs = self.distribution(logits, history)
        if len(ids) == 1:
            return int(ids[0])
        cum = np.cumsum(probs)
        i = int(np.searchsorted(cum, self.rng.random() * cum[-1], side="right"))
        return int(ids[min(i, len(ids) - 1)])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z))
    return e / e.sum()
