"""The JIT kernels against the numpy engine (inference.ops), an independent implementation of
llama.cpp's activation rounding: the same rounded activations, and the same products up to
float32 summation, on every 2-D weight of the golden models and SmolLM2."""
import numpy as np
import pytest

from inference import ops
from inference.gguf_file import open_gguf
from jit import api, twins

from ..conftest import golden_dir


@pytest.mark.parametrize("fmt", ["q8_0", "q8_K"])
def test_same_activation_rounding_as_ops(fmt):
    rng = np.random.default_rng(11)
    for scale in (1e-4, 1.0, 300.0):
        x = (rng.standard_normal(4096) * scale).astype(np.float32)
        x[:256] = 0
        x[300], x[301] = 7 * scale, -7 * scale   # a tie of |max| within a block
        mine = twins.dequantize_activation(twins.QUANTIZE[fmt](x), fmt).astype(np.float32)
        theirs = (ops.quantize_q8_0 if fmt == "q8_0" else ops.quantize_q8_K)(x)
        assert np.array_equal(mine, theirs)


def check_file(path, max_rows: int = 1 << 30) -> set:
    g = open_gguf(path)
    rng = np.random.default_rng(1)
    types = set()
    for t in g.tensors.values():
        if len(t.shape) != 2 or not api.supports(t.ggml_type) or t.shape[0] > max_rows:
            continue
        x = rng.standard_normal(t.shape[1]).astype(np.float32)
        y = api.matvec(t, x).astype(np.float64)
        ref = ops.linear(t, x[None])[0].astype(np.float64)
        W = np.abs(t.numpy().astype(np.float64))
        # both sum the same rounded products; they differ only by float32 summation order
        assert np.all(np.abs(y - ref) <= 2e-5 * (W @ np.abs(x)) + 1e-30), t.name
        types.add(t.ggml_type.name)
    return types


def test_matvec_agrees_with_ops_linear_smollm2(smollm2_path):
    assert "Q4_1" in check_file(smollm2_path, max_rows=4096)


@pytest.mark.parametrize("stem", ["tiny-llama-Q4_K_M", "tiny-llama-Q4_0", "tiny-llama-Q8_0", "tiny-llama-F16",
                                  "tiny-gemma3-Q6_K", "tiny-step35-Q4_K_M", "tiny-kimi-linear-Q4_K_M"])
def test_matvec_agrees_with_ops_linear(stem):
    assert check_file(golden_dir() / "models" / f"{stem}.gguf")


@pytest.mark.slow
def test_matvec_agrees_with_ops_linear_gemma3_270m(gemma3_path):
    assert {"Q5_0", "Q4_K", "Q6_K", "Q8_0"} <= check_file(gemma3_path, max_rows=8192)
