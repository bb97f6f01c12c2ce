"""Activation quantizers: the JIT kernels equal their numpy twins byte for byte on every CPU
path, and the twins are right: each value is recovered to half a quantization step."""
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jit import api, twins
from jit.kernels.quantize import BLOCK, activation_bytes

from .conftest import CPU_PRESETS, cpu_of

FORMATS = ["q8_0", "q8_1", "q8_K", "q8_K_il", "f16"]


@st.composite
def activations(draw, block: int):
    n_blocks = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-30, 1e-6, 1.0, 3.0, 1e4, 1e30]))
    x = rng.standard_normal(n_blocks * max(block, 32)) * scale
    kind = draw(st.sampled_from(["normal", "zero-block", "ties", "spikes", "halfsteps", "f16-edge"]))
    if kind == "zero-block":
        x[: max(block, 32)] = 0
    elif kind == "ties":          # equal |max| with both signs: the first one sets the Q8_K sign
        x = np.round(x / scale * 2) / 2 * scale
        x[3], x[7] = 2.5 * scale, -2.5 * scale
    elif kind == "spikes":
        x[rng.integers(0, x.size, 3)] = [scale * 50, -scale * 50, 0.0]
    elif kind == "halfsteps":     # x * 127/amax lands exactly on .5: round-to-even must win
        x = (rng.integers(-254, 255, x.size) / 2.0)
        x[::32] = 127.0
    elif kind == "f16-edge":      # overflow, subnormal and exactly-representable half values
        x = rng.choice([65504.0, 65520.0, 1e5, 6e-8, 3e-5, 6.1e-5, -0.0, 1.0 / 3], x.size) * rng.choice([-1, 1], x.size)
    return x.astype(np.float32)


@pytest.mark.parametrize("preset", CPU_PRESETS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_jit_quantizer_equals_twin(preset, fmt):
    cpu = cpu_of(preset)
    kern = api.quantizers(cpu)[fmt]
    bs, bb = BLOCK[fmt]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(x=activations(bs))
    @example(x=np.zeros(256, np.float32))
    @example(x=np.full(256, -1.0, np.float32))
    def check(x):
        out = np.empty(activation_bytes(fmt, x.size), np.uint8)
        kern(x.ctypes.data, out.ctypes.data, x.size)
        ref = twins.QUANTIZE[fmt](x)
        assert np.array_equal(out, ref), f"first differing byte {np.flatnonzero(out != ref)[:4]}"

    check()


@settings(max_examples=80, deadline=None)
@given(x=activations(256))
@np.errstate(invalid="ignore", over="ignore")
def test_twins_recover_values_within_half_a_step(x):
    for fmt in ("q8_0", "q8_1", "q8_K"):
        xq = twins.QUANTIZE[fmt](x)
        xd = twins.dequantize_activation(xq, fmt)
        bs = BLOCK[fmt][0]
        xb = x.reshape(-1, bs).astype(np.float64)
        amax = np.abs(xb).max(axis=1, keepdims=True)
        step = amax / 127
        # half a step from rounding, plus the f16 rounding of the scale (Q8_0/Q8_1: 2^-11 relative)
        slack = 0.5 * step + (np.abs(xb) * 2.0**-10 if fmt != "q8_K" else np.abs(xb) * 2.0**-22) + 1e-37
        err = np.abs(xd.reshape(xb.shape) - xb)
        if fmt != "q8_K":   # an f16 scale only holds 2^-14 <= d <= 65504 to 11 bits
            in_range = ((step >= 2.0**-14) & (step <= 65504)) | (amax == 0)
            err, slack = err[in_range[:, 0]], slack[in_range[:, 0]]
        assert (err <= slack).all()
        if fmt == "q8_1":   # s = d * sum(q), rounded to f16
            d, s, q = twins.unpack_q8_32(xq, True)
            ref = d.astype(np.float64) * q.sum(axis=1)
            # s rounds the f32 d (not the stored f16 d) times sum(q): two f16 roundings apart
            fine = np.isfinite(s) & (np.abs(ref) >= 2.0**-14) & (d >= 2.0**-14)
            assert np.all(np.abs(s - ref)[fine] <= np.abs(ref)[fine] * 2.0**-9)


def test_q8_K_layout_matches_definition():
    x = np.linspace(-3, 1, 256, dtype=np.float32)
    d, q, bs = twins.unpack_q8_K(twins.quantize_q8_K(x))
    assert q[0, 0] == -127 and d[0] == np.float32(1) / (np.float32(-127) / np.float32(-3))
    assert np.array_equal(bs[0], q[0].reshape(16, 16).sum(axis=1))


def test_q8_0_matches_llamacpp_x86_rounding():
    # 127 * 0.5 / 127 -> exactly 0.5 after scaling by 127/amax: round half to even gives 0, not 1
    x = np.zeros(32, np.float32)
    x[0], x[1], x[2] = 127.0, 0.5, 1.5
    _, _, q = twins.unpack_q8_32(twins.quantize_q8_0(x), False)
    assert q[0, :3].tolist() == [127, 0, 2]
