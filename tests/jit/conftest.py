"""JIT tests: one kernel cache per test session (compiled kernels are shared by all tests),
the CPU paths this machine can run, and random *valid* GGUF weight blocks."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from jit import cpu as jcpu


@pytest.fixture(scope="session", autouse=True)
def _session_kernel_cache(tmp_path_factory):
    """Compiled kernels go to a temporary cache shared by the session (models stay where they are)."""
    from jit import compile as jc

    old = jc.CACHE_OVERRIDE
    jc.CACHE_OVERRIDE = tmp_path_factory.mktemp("lectern-kernels")
    yield
    jc.CACHE_OVERRIDE = old


CPU_PRESETS = jcpu.usable_presets()   # host, avx2 (if the machine has it), generic


def cpu_of(preset: str) -> jcpu.CpuInfo:
    return jcpu.PRESETS[preset]()


# byte offsets of the f16 fields of each block type (scales and mins)
F16_FIELDS = {T.Q8_0: (0,), T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q4_K: (0, 2),
              T.Q5_K: (0, 2), T.Q6_K: (208,), T.IQ4_NL: (0,), T.IQ4_XS: (0,),
              T.Q2_K: (80, 82), T.Q3_K: (108,)}


def finite_f16(rng: np.random.Generator, n: int, wide: bool) -> np.ndarray:
    """n finite halves: any finite bit pattern (subnormals to 65504) if wide, else ~N(0, 0.02)."""
    if wide:
        bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
        bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0x83FF, bits).astype(np.uint16)  # inf/nan -> finite
        return bits.view(np.float16)
    return (rng.standard_normal(n) * 0.02).astype(np.float16)


@contextmanager
def plan_set(module, use: bool):
    """module.USE_PLAN = use inside the block, True again after it (the models' default)."""
    module.USE_PLAN = use
    try:
        yield
    finally:
        module.USE_PLAN = True


def prompt_then_decode(m, st, ids, n_prompt: int) -> np.ndarray:
    """ids[:n_prompt] as one batch into state st, then the rest one token at a time ->
    the decoded steps' logits [len(ids) - n_prompt, n_vocab]."""
    m.forward(ids[:n_prompt], st)
    return np.stack([m.forward(ids[i:i + 1], st, last_only=True)[0] for i in range(n_prompt, len(ids))])


def decode_both(m, module, n_prompt: int, n_steps: int, n_ctx: int, seed: int = 0, **state_kw) -> dict:
    """Decode n_steps random tokens after an n_prompt prompt, once with module.USE_PLAN off and once
    on -> {use: (logits [n_steps, n_vocab], the state, the model's plan then)}."""
    ids = np.random.default_rng(seed).integers(0, m.n_vocab, n_prompt + n_steps)
    out = {}
    for use in (False, True):
        with plan_set(module, use):
            st = m.new_state(n_ctx, **state_kw)
            out[use] = prompt_then_decode(m, st, ids, n_prompt), st, getattr(m, "_plan", None)
    return out


def assert_same_bits(out: dict, plan_type: type) -> None:
    """decode_both's two runs: a plan_type plan of the planned state ran only when on, and the
    logits, n_past and every state array (caches, recurrent states, ring positions) have the
    same bits."""
    plan = out[True][2]
    assert out[False][2] is None and isinstance(plan, plan_type) and plan.refs.matches(out[True][1]), \
        "the plan did (not) run"
    assert np.array_equal(out[False][0], out[True][0])
    a, b = out[False][1], out[True][1]
    assert a.arrays.keys() == b.arrays.keys() and a.n_past == b.n_past
    for k in a.arrays:
        assert np.array_equal(a.arrays[k], b.arrays[k]), k


def random_weights(rng: np.random.Generator, qtype: T, rows: int, n_cols: int, wide_scales: bool = False) -> np.ndarray:
    """Random valid weight bytes: uniformly random blocks whose f16 fields are finite."""
    if qtype == T.F32:
        return rng.standard_normal(rows * n_cols).astype(np.float32).view(np.uint8)
    if qtype == T.F16:
        return finite_f16(rng, rows * n_cols, wide_scales).view(np.uint8)
    if qtype == T.BF16:   # wide: any bit pattern below 2^41 in magnitude (subnormals too), else ~N(0, 0.02)
        if wide_scales:     # (float32 products with x must not overflow)
            bits = rng.integers(0, 1 << 16, rows * n_cols, dtype=np.uint16)
            big = (bits & 0x7F80) > ((127 + 40) << 7)
            return np.where(big, bits & 0xBFFF, bits).astype(np.uint16).view(np.uint8)
        f = (rng.standard_normal(rows * n_cols) * 0.02).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    bs, bb = GGML_QUANT_SIZES[qtype]
    nbl = rows * n_cols // bs
    b = rng.integers(0, 256, (nbl, bb), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        b[:, off:off + 2] = finite_f16(rng, nbl, wide_scales).view(np.uint8).reshape(-1, 2)
    return b.reshape(-1)


def batch_reference(w, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """The bits a JIT batch x [T, in] . w must give: llama.cpp's own batch order where it has one
    (Q4_K with rows % 8 == 0, whether the engine repacks it or not, and Q6_K: emulated by
    inference/ggml_matmul.py, checked against its libggml), else each token's matvec (the order
    decode uses; for a weight the engine repacks, jit/repack.py, the repacked layout's matvec)."""
    from gguf import GGML_QUANT_SIZES

    from inference import ggml_matmul
    from jit import api, repack
    from jit.linear import LinearOp

    qtype = T(w.ggml_type)
    rows, n_in = w.n_elements // int(w.shape_ggml[0]), int(w.shape_ggml[0])
    if qtype == T.Q6_K or (qtype == T.Q4_K and rows % 8 == 0):      # repacked or not
        bs, bb = GGML_QUANT_SIZES[qtype]
        blocks = np.frombuffer(np.ascontiguousarray(w.data).tobytes(), np.uint8).reshape(rows, n_in // bs, bb)
        return ggml_matmul.mul_mat(qtype.name, blocks, np.asarray(x, np.float32))
    if repack.applies(qtype, rows):
        op = LinearOp(w)
        return np.stack([op(xi) for xi in x])
    return np.stack([api.matvec(w, xi, threads=threads) for xi in x])
