"""K-quant batch kernels (kbatch.py): groups of tokens share each unpacked superblock, and every
token gets exactly llama.cpp's bits for its batch (Q4_K gemm/gemv, Q6_K tiled/vec_dot, as
inference/ggml_matmul.py emulates them; Q5_K and Q4_K with rows % 8 != 0: the JIT matvec's), for
any token count (groups and leftovers), row step and thread split; all near the numpy reference."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import ops
from inference.gguf_file import Tensor
from jit import api
from jit import linear as jl
from jit.kernels.kbatch import GROUP, KINDS
from jit.kernels.kquants import STEPS, batch_modes
from jit.kernels.kquants_il import STEPS_IL
from jit.kernels.tiles import P_STEP
from jit.pool import Pool
from tests.jit.conftest import batch_reference, random_weights

K_TYPES = [T[name] for name in KINDS]


def numpy_linear(w: Tensor, x: np.ndarray) -> np.ndarray:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LECTERN_KERNELS", "numpy")
        return ops.linear(w, x)


@pytest.mark.parametrize("repacked", [False, True])
@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda q: q.name)
def test_prefill_of_a_k_quant_runs_its_batch_kernels(qtype, repacked, monkeypatch):
    """Each order's batch kernel: the file layout's, or the repacked layout's (jit/repack.py) for a
    weight the engine keeps in 8-row groups."""
    monkeypatch.setenv("LECTERN_REPACK", "1" if repacked else "0")
    w = Tensor("w", qtype, (256, 16), random_weights(np.random.default_rng(1), qtype, 16, 256))
    op = jl.LinearOp(w)
    assert op.repacked == (repacked and qtype.name in ("Q4_K", "Q5_K"))
    for n_tok in (70, 3, 8):
        kernels = [k for _, _, k, _ in op._segments(n_tok)]
        modes = [m for _, _, m in batch_modes(qtype.name, 16, n_tok)]
        want = [op._x8_modes[m] for m in modes] if op.repacked else [jl.mm_kernel(qtype.name, mode=m) for m in modes]
        assert kernels == want
    assert {(qtype.name, m) for m in op._modes} <= set(STEPS) | set(STEPS_IL)


def test_batch_modes_follow_llama_cpp():
    assert batch_modes("Q4_K", 16, 70) == [(0, 68, "gemm"), (68, 70, "gemv")]
    assert batch_modes("Q4_K", 16, 3) == [(0, 3, "gemv")]
    assert batch_modes("Q4_K", 12, 70) == [(0, 70, "gemv")]          # rows % 8 != 0: not repacked
    assert batch_modes("Q6_K", 7, 7) == [(0, 7, "vec_dot")]
    assert batch_modes("Q6_K", 7, 8) == [(0, 8, "tiled")]
    assert batch_modes("Q5_K", 8, 9) == [(0, 9, "gemv")]


@settings(max_examples=40, deadline=None)
@given(qi=st.sampled_from(range(len(K_TYPES))), rows=st.sampled_from([1, 5, 8, 16, 24, 37, 40]), nb=st.integers(1, 4),
       n_tok=st.integers(1, 3 * GROUP + 3), step=st.integers(1, 20), threads=st.integers(1, 3),
       wide=st.booleans(), seed=st.integers(0, 10_000))
def test_batch_gives_llama_cpp_bits_per_token(qi, rows, nb, n_tok, step, threads, wide, seed):
    qtype = K_TYPES[qi]
    rng = np.random.default_rng(seed)
    w = Tensor("w", qtype, (256 * nb, rows), random_weights(rng, qtype, rows, 256 * nb, wide_scales=wide))
    x = (rng.standard_normal((n_tok, 256 * nb)) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
    op = jl.LinearOp(w, pool=Pool(threads, align=1))
    op._p[P_STEP] = step
    with np.errstate(all="ignore"):
        got = op(x) if n_tok > 1 else op(x[None, 0])
        want = batch_reference(w, x, threads)
        ref = numpy_linear(w, x)
    assert got.shape == (n_tok, rows)
    ok = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), ok)
    assert np.array_equal(got[ok], want[ok])
    # vs float64 sums of the same rounded values: within float32 rounding of sum |w| |x|
    bound = np.abs(x.astype(np.float64)) @ np.abs(dequantize(w.data, qtype).reshape(rows, -1).astype(np.float64)).T
    fin = np.isfinite(ref) & ok & np.isfinite(bound)
    assert np.all(np.abs(got[fin] - ref[fin]) <= 1e-5 * bound[fin] + 1e-30)


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda q: q.name)
def test_a_gemma_sized_batch_gives_llama_cpp_bits(qtype):
    """ffn_down's shape (2048 -> 640) over a 64-token tile plus leftovers, 2 threads; and one
    token is decode (the matvec) in every mode table."""
    rng = np.random.default_rng(3)
    w = Tensor("w", qtype, (2048, 640), random_weights(rng, qtype, 640, 2048))
    x = rng.standard_normal((70, 2048)).astype(np.float32)
    got = jl.LinearOp(w, pool=Pool(2, align=1))(x)
    assert np.array_equal(got, batch_reference(w, x, threads=2))
    assert np.array_equal(batch_reference(w, x[:1]), api.matvec(w, x[0], threads=2)[None])
