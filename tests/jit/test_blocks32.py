"""Q4_1 on the JIT in llama.cpp's own float order: matvec and the batch kernel mm_q4_1 give
exactly the bits of inference.ggml_cpu.vec_dot_q4_1_q8_1 (checked there against llama.cpp's
eval callback), for odd shapes, any token count (groups of 4 and leftovers) and thread count."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import ggml_cpu, ops
from inference.gguf_file import Tensor
from jit import api
from jit import linear as jl
from jit.cpu import detect
from jit.pool import Pool
from tests.jit.conftest import random_weights

pytestmark = pytest.mark.skipif(not detect().has_fma, reason="llama.cpp's order needs a hardware FMA")


def ggml(w: Tensor, x: np.ndarray) -> np.ndarray:
    n_out, n_in = w.shape
    q, d = ops._q8_blocks(x)
    nb = n_in // 32
    return ggml_cpu.vec_dot_q4_1_q8_1(w.data.reshape(n_out, nb, 20), q.reshape(-1, nb, 32), d.reshape(-1, nb))


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 70), nb=st.integers(1, 40), n_tok=st.integers(1, 11), threads=st.integers(1, 3),
       wide=st.booleans(), seed=st.integers(0, 10_000))
def test_q4_1_batch_and_matvec_are_ggml_bits(rows, nb, n_tok, threads, wide, seed):
    rng = np.random.default_rng(seed)
    w = Tensor("w", T.Q4_1, (32 * nb, rows), random_weights(rng, T.Q4_1, rows, 32 * nb, wide_scales=wide))
    x = (rng.standard_normal((n_tok, 32 * nb)) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
    with np.errstate(all="ignore"):
        want = ggml(w, x)
    op = jl.LinearOp(w, pool=Pool(threads, align=1))
    got = op(x)
    ok = np.isfinite(want)
    assert np.array_equal(got[ok], want[ok])
    assert np.array_equal(np.stack([api.matvec(w, xi, threads=threads) for xi in x])[ok], want[ok])


@pytest.mark.slow
def test_smollm2_on_the_jit_follows_the_exact_numpy_engine(smollm2_path, monkeypatch):
    """With Q4_1, attention, SwiGLU and the decode plan in llama.cpp's order, the JIT engine
    differs from the numpy one (bit for bit llama.cpp, tests/inference/models/test_real_models.py)
    only in the Q8_0 output matmul's float32 summation: ~1e-5 here, never a changed choice."""
    from inference import load_model
    from tests.conftest import load_real

    m = load_model(smollm2_path)
    prompt = load_real("smollm2-135m-instruct.json")["prompts"][0]
    ids = np.array(prompt["ids"])
    got = {}
    for path in ("jit", "numpy"):
        monkeypatch.setenv("LECTERN_KERNELS", path)
        st_ = m.new_state(len(ids) + 8)
        batch = m.forward(ids, st_)
        steps = [m.forward(np.array([t]), st_, last_only=True)[0] for t in prompt["greedy_ids"][:8]]
        got[path] = np.concatenate([batch, np.stack(steps)])
    assert np.abs(got["jit"] - got["numpy"]).max() < 1e-4
    assert np.array_equal(got["jit"].argmax(axis=1), got["numpy"].argmax(axis=1))
