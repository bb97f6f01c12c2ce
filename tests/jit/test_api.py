"""jit.api on real GGUF tensors, the LECTERN_KERNELS switch and the numpy fallback."""
import warnings

import numpy as np
import pytest

from jit import api
from jit import compile as jc
from jit.cpu import generic


def test_matvec_on_smollm2_tensors(smollm2_path):
    from inference.gguf_file import open_gguf

    g = open_gguf(smollm2_path)
    seen = set()
    rng = np.random.default_rng(0)
    for t in g.tensors.values():
        if len(t.shape) != 2 or t.ggml_type in seen or not api.supports(t.ggml_type) or t.shape[0] > 4096:
            continue
        seen.add(t.ggml_type)
        x = rng.standard_normal(t.shape[1]).astype(np.float32)
        W = t.numpy().astype(np.float64)
        y = api.matvec(t, x)
        ref = W @ x
        # 8-bit activations: error well under 1% of the row's |w|.|x|
        assert np.all(np.abs(y - ref) <= 0.01 * (np.abs(W) @ np.abs(x)) + 1e-6), t.name
        y2 = api.matvec(t, np.stack([x, -x]))
        assert np.array_equal(y2[0], y) and np.allclose(y2[1], -y, rtol=1e-6, atol=1e-6)
    assert seen, "no 2-D tensor of a supported type in the model"


def test_lectern_kernels_switch(monkeypatch):
    monkeypatch.setenv("LECTERN_KERNELS", "numpy")
    assert api.enabled() is False
    monkeypatch.setenv("LECTERN_KERNELS", "jit")
    assert api.enabled() is api.available()
    monkeypatch.setenv("LECTERN_KERNELS", "cuda")
    with pytest.raises(ValueError, match="LECTERN_KERNELS"):
        api.enabled()


def test_unavailable_when_llvm_fails(monkeypatch):
    def broken(*a, **k):
        raise jc.JitError("simulated LLVM failure")

    import dataclasses

    monkeypatch.setattr(jc, "kernel", broken)
    fresh = dataclasses.replace(generic(), features="+sse2")   # a CPU no kernel was loaded for yet
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert api.available(fresh) is False
    assert any("unavailable" in str(x.message) and "numpy" in str(x.message) for x in w)


def test_unsupported_type_is_a_jit_error():
    from gguf import GGMLQuantizationType as T

    assert not api.supports(T.IQ2_XXS)
    with pytest.raises(jc.JitError, match="IQ2_XXS"):
        api.matvec_kernel(T.IQ2_XXS)


def test_matvec_op_equals_matvec(smollm2_path):
    from inference.gguf_file import open_gguf

    g = open_gguf(smollm2_path)
    rng = np.random.default_rng(4)
    for name in ("blk.0.attn_q.weight", "blk.0.ffn_down.weight", "output_norm.weight"):
        t = g.tensors[name]
        if len(t.shape) != 2:
            with pytest.raises(ValueError, match="2-D"):
                api.MatvecOp(t)
            continue
        op = api.MatvecOp(t)
        for _ in range(3):   # the activation buffer is reused between calls
            x = rng.standard_normal(t.shape[1]).astype(np.float32)
            assert np.array_equal(op(x), api.matvec(t, x))
        with pytest.raises(ValueError, match="expected"):
            op(np.zeros(t.shape[1] + 1, np.float32))
