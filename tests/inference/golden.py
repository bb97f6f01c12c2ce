"""Comparisons against llama.cpp's reference outputs, as ../shared/golden/README.md defines them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (median d, 95th percentile d or None, top-1 agreement) per kind of file, from the golden README.
TOLERANCES = {
    "F16": (0.01, 0.02, 0.98),
    "BF16": (0.02, 0.03, 0.98),
    "dense": (0.1, 0.2, 0.90),
    "moe": (0.15, None, 0.85),
}
MOE_ARCHS = ("kimi-linear", "step35")


def tolerance_for(stem: str) -> tuple[float, float | None, float]:
    """stem like 'tiny-llama-Q4_K_M' -> the README's row for it."""
    qtype = stem.rsplit("-", 1)[1]
    if qtype in ("F16", "BF16"):
        return TOLERANCES[qtype]
    return TOLERANCES["moe" if any(a in stem for a in MOE_ARCHS) else "dense"]


@dataclass
class LogitReport:
    d: np.ndarray          # [T] max |ours - ref| / std(ref) per position
    top1: float            # fraction of positions with the same argmax

    @property
    def median(self) -> float:
        return float(np.median(self.d))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.d, 95))

    def __str__(self) -> str:
        return f"median d {self.median:.4f}, p95 d {self.p95:.4f}, top-1 {self.top1:.1%}"


def compare_logits(ours: np.ndarray, ref: np.ndarray) -> LogitReport:
    assert ours.shape == ref.shape, f"shape {ours.shape} != reference {ref.shape}"
    assert np.isfinite(ours).all(), "non-finite logits"
    d = np.max(np.abs(ours - ref), axis=-1) / np.std(ref, axis=-1)
    top1 = float(np.mean(np.argmax(ours, -1) == np.argmax(ref, -1)))
    return LogitReport(d, top1)


def assert_close(ours: np.ndarray, ref: np.ndarray, stem: str) -> LogitReport:
    med, p95, top1 = tolerance_for(stem)
    r = compare_logits(ours, ref)
    assert r.median <= med, f"{stem}: {r} (median bound {med})"
    if p95 is not None:
        assert r.p95 <= p95, f"{stem}: {r} (p95 bound {p95})"
    assert r.top1 >= top1, f"{stem}: {r} (top-1 bound {top1:.0%})"
    return r


def check_greedy(step_logits, ref_greedy: np.ndarray, min_steps: int = 1) -> int:
    """Follow llama.cpp's greedy continuation with our own logits, the README's way.

    step_logits(token_or_None) -> our logits [n_vocab] for the next position (None: after the
    prompt). We feed llama.cpp's token each step; the first mismatch is accepted only as a near
    tie (our top-2 margin < 0.25 and their token is our runner-up). Returns the steps matched.
    """
    logits = step_logits(None)
    for i, want in enumerate(ref_greedy):
        order = np.argsort(-logits)
        got = int(order[0])
        if got != int(want):
            margin = float(logits[order[0]] - logits[order[1]])
            near_tie = margin < 0.25 and int(order[1]) == int(want)
            assert near_tie, (f"greedy step {i}: ours {got}, llama.cpp {int(want)}, "
                              f"our margin {margin:.3f}; a clear-margin divergence is a bug")
            return i
        if i + 1 < len(ref_greedy):
            logits = step_logits(int(want))
    assert len(ref_greedy) >= min_steps
    return len(ref_greedy)


def top_k_agreement(ours: np.ndarray, ref_top: list) -> tuple[float, float]:
    """ours [T, V]; ref_top [T][20] of (id, logit) -> (top-1 agreement, fraction with equal top-5 sets)."""
    t1 = t5 = 0
    for row, ref in zip(ours, ref_top):
        ref_ids = [int(i) for i, _ in ref]
        mine = np.argsort(-row)[:5]
        t1 += int(mine[0]) == ref_ids[0]
        t5 += set(int(x) for x in mine) == set(ref_ids[:5])
    n = len(ref_top)
    return t1 / n, t5 / n
