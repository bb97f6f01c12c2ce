"""inference/ggml_matmul against plain loops written from llama.cpp's C sources (one output at a
time, scalar float32 steps, blocks decoded from their C struct layouts), on random valid blocks.

The kernels were also checked bit for bit against llama.cpp's own libggml on Gemma 3's tensors
(tests/inference/models/test_real_models.py checks the end result); here each formula is pinned:
lane grouping, fma order, where the scales multiply, how the activations are rounded."""
from __future__ import annotations

import struct

import numpy as np
from gguf import GGMLQuantizationType as Q
from hypothesis import given, settings, strategies as st

from inference import ggml_matmul as gm
from inference.quants import dequantize

F32 = np.float32


def f32(v) -> F32:
    return F32(v)


def fma(a, b, c) -> F32:
    """float32 fma: the product of two float32 is exact in a double, one rounding of the sum (then
    float32; the double rounding never matters at these magnitudes)."""
    return F32(float(a) * float(b) + float(c))


def half(b: bytes, at: int) -> F32:
    return F32(np.frombuffer(b[at:at + 2], np.float16)[0])


def hsum8(acc) -> F32:
    h = [f32(acc[4 + i] + acc[i]) for i in range(4)]
    return f32(f32(h[0] + h[2]) + f32(h[1] + h[3]))


# --- blocks: random bytes with a small positive F16 scale (any bit pattern of the rest is valid) ----
def blocks_of(rng, kind: str, rows: int, n: int) -> np.ndarray:
    qk, bb, d_at = {"Q5_0": (32, 22, (0,)), "Q8_0": (32, 34, (0,)), "Q4_K": (256, 144, (0, 2)),
                    "Q6_K": (256, 210, (208,))}[kind]
    b = rng.integers(0, 256, (rows, n // qk, bb), dtype=np.uint8)
    for a in d_at:
        b[..., a:a + 2] = (rng.random((rows, n // qk, 1)) * 0.02 + 1e-4).astype(np.float16).view(np.uint8)
    return b


def codes_q0(blk: bytes, kind: str) -> list[int]:
    if kind == "Q8_0":
        return [int(v) for v in np.frombuffer(blk[2:34], np.int8)]
    qh = struct.unpack("<I", blk[2:6])[0]
    qs = blk[6:22]
    return [((qs[j] & 15) if j < 16 else (qs[j - 16] >> 4)) | (((qh >> j) & 1) << 4) for j in range(32)]


def q8_0_row(x):
    """quantize_row_q8_0 (x86): d = amax/127 stored F16, q = round(x * (127/amax))."""
    out = []
    for b in range(0, len(x), 32):
        amax = f32(max(abs(float(v)) for v in x[b:b + 32]))
        inv = f32(F32(127) / amax) if amax else F32(0)
        out.append((half(np.float16(amax / F32(127)).tobytes(), 0), [int(np.rint(f32(v * inv))) for v in x[b:b + 32]]))
    return out


def q8_K_row(x, packed4: bool):
    """quantize_row_q8_K_ref, or ggml_quantize_mat_q8_K_4x8 (packed4: +amax wins a +-amax tie)."""
    out = []
    for b in range(0, len(x), 256):
        blk = [F32(v) for v in x[b:b + 256]]
        amax, mx = F32(0), F32(0)
        for v in blk:
            if abs(v) > amax:
                amax, mx = abs(v), v
        if packed4 and any(v == amax for v in blk):
            mx = amax
        if amax == 0:
            out.append((F32(0), [0] * 256))
            continue
        iscale = f32(F32(-127) / mx)
        out.append((f32(F32(1) / iscale), [min(127, int(np.rint(f32(iscale * v)))) for v in blk]))
    return out


def plain_q0(blocks, kind, x):
    """tinyBLAS_Q0_AVX / ggml_vec_dot_q{5,8}_0_q8_0: acc[l] = fma(d_w*d_a, sum of 4 products, acc[l])."""
    T, O = x.shape[0], blocks.shape[0]
    y = np.zeros((T, O), F32)
    for t in range(T):
        act = q8_0_row(x[t])
        for o in range(O):
            acc = [F32(0)] * 8
            for b, (da, qa) in enumerate(act):
                blk = blocks[o, b].tobytes()
                dw = half(blk, 0)
                qw = [c - (16 if kind == "Q5_0" else 0) for c in codes_q0(blk, kind)]
                for lane in range(8):
                    s = sum(qw[4 * lane + k] * qa[4 * lane + k] for k in range(4))
                    acc[lane] = fma(f32(dw * da), s, acc[lane])
            y[t, o] = hsum8(acc)
    return y


def scale_min_k4(s: bytes, j: int) -> tuple[int, int]:
    if j < 4:
        return s[j] & 63, s[j + 4] & 63
    return (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)


def plain_q4_K(blocks, x):
    """Repacked Q4_K: rows in whole groups of 4 (gemm, packed4 rounding): one fma per pair of 32-sub-
    blocks; the other rows (gemv, ref rounding): one per superblock; y = acc - accm."""
    T, O = x.shape[0], blocks.shape[0]
    n4 = T - T % 4
    y = np.zeros((T, O), F32)
    for t in range(T):
        act = q8_K_row(x[t], packed4=t < n4)
        groups = [[0, 1], [2, 3], [4, 5], [6, 7]] if t < n4 else [list(range(8))]
        for o in range(O):
            acc, accm = F32(0), F32(0)
            for b, (da, qa) in enumerate(act):
                blk = blocks[o, b].tobytes()
                d, dmin, qs = half(blk, 0), half(blk, 2), blk[16:144]
                for js in groups:
                    isum = imin = 0
                    for j in js:
                        sc, m = scale_min_k4(blk[4:16], j)
                        c, hi = divmod(j, 2)
                        w = [(qs[32 * c + i] >> 4) if hi else (qs[32 * c + i] & 15) for i in range(32)]
                        a = qa[32 * j:32 * j + 32]
                        isum += sc * sum(wi * ai for wi, ai in zip(w, a))
                        imin += m * sum(a)
                    acc = fma(f32(isum), f32(d * da), acc)
                    accm = fma(f32(imin), f32(dmin * da), accm)
            y[t, o] = f32(acc - accm)
    return y


def q6_codes(blk: bytes) -> list[int]:
    """dequantize_row_q6_K's element order: half h, group g, l -> element 128h + 32g + l (unsigned)."""
    out = [0] * 256
    for h in range(2):
        ql, qh = blk[64 * h:64 * h + 64], blk[128 + 32 * h:128 + 32 * h + 32]
        for l in range(32):
            out[128 * h + l] = (ql[l] & 15) | ((qh[l] & 3) << 4)
            out[128 * h + 32 + l] = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)
            out[128 * h + 64 + l] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)
            out[128 * h + 96 + l] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)
    return out


def plain_q6_K(blocks, x):
    """T >= 8: tiled kernel, buf = fma(f32(s1) * d_w, d_a, buf), s1 = sum_s sc_s (dot_s - 32 bsum_s);
    T < 8: ggml_vec_dot_q6_K_q8_K, lane l = sum over chunks c of 32 of sc[2c + (l >= 4)] * (4 products
    at 32c + 4l) - 32 (sc[2l] bsum[2l] + sc[2l+1] bsum[2l+1]); acc[l] = fma(d_a * d_w, lane, acc[l])."""
    T, O = x.shape[0], blocks.shape[0]
    y = np.zeros((T, O), F32)
    for t in range(T):
        act = q8_K_row(x[t], packed4=False)
        for o in range(O):
            buf, acc = F32(0), [F32(0)] * 8
            for b, (da, qa) in enumerate(act):
                blk = blocks[o, b].tobytes()
                w, d = q6_codes(blk), half(blk, 208)
                sc = [int(v) for v in np.frombuffer(blk[192:208], np.int8)]
                bsum = [sum(qa[16 * s:16 * s + 16]) for s in range(16)]
                if T >= 8:
                    s1 = sum(sc[s] * (sum(w[e] * qa[e] for e in range(16 * s, 16 * s + 16)) - 32 * bsum[s])
                             for s in range(16))
                    buf = fma(f32(f32(s1) * d), da, buf)
                    continue
                for lane in range(8):
                    pos = sum(sc[2 * c + (lane >= 4)] * sum(w[32 * c + 4 * lane + k] * qa[32 * c + 4 * lane + k]
                                                          for k in range(4)) for c in range(8))
                    sub = sc[2 * lane] * bsum[2 * lane] + sc[2 * lane + 1] * bsum[2 * lane + 1]
                    acc[lane] = fma(f32(da * d), f32(pos - 32 * sub), acc[lane])
            y[t, o] = buf if T >= 8 else hsum8(acc)
    return y


def activations(rng, T: int, n: int) -> np.ndarray:
    x = (rng.standard_normal((T, n)) * rng.random((1, n)) * 4).astype(F32)
    x[0, :32] = 0                                                  # an all-zero block
    if T > 1:
        x[1, 3], x[1, 9] = 5.5, -5.5                               # a +-amax tie
    return x


SETTINGS = settings(max_examples=6, deadline=None)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(1, 6), kind=st.sampled_from(["Q5_0", "Q8_0"]))
def test_q5_0_and_q8_0_follow_the_lane_formula(seed, T, kind):
    rng = np.random.default_rng(seed)
    blocks, x = blocks_of(rng, kind, 3, 96), activations(rng, T, 96)
    assert np.array_equal(gm.mul_mat(kind, blocks, x), plain_q0(blocks, kind, x))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(1, 9))
def test_repacked_q4_K_follows_gemm_and_gemv(seed, T):
    rng = np.random.default_rng(seed)
    blocks, x = blocks_of(rng, "Q4_K", 8, 256), activations(rng, T, 256)
    assert np.array_equal(gm.mul_mat("Q4_K", blocks, x), plain_q4_K(blocks, x))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), T=st.sampled_from([1, 3, 8, 9]))
def test_q6_K_follows_the_tiled_kernel_and_vec_dot(seed, T):
    rng = np.random.default_rng(seed)
    blocks, x = blocks_of(rng, "Q6_K", 2, 512), activations(rng, T, 512)
    assert np.array_equal(gm.mul_mat("Q6_K", blocks, x), plain_q6_K(blocks, x))


def test_q8_K_flavours_differ_only_on_a_signed_tie():
    x = np.zeros((2, 256), F32)
    x[:, 7], x[:, 100] = -3.0, 3.0                                 # -amax first, then +amax
    x[:, 50] = 1.0
    q_ref, d_ref = gm.quantize_q8_K(x)
    q_pk, d_pk = gm.quantize_q8_K(x, packed4=True)
    assert d_ref[0, 0] > 0 > d_pk[0, 0]                             # ref: first max; packed: +amax
    assert q_ref[0, 0, 7] == -127 and q_pk[0, 0, 7] == 127
    assert np.array_equal(q_ref * d_ref[..., None], q_pk * d_pk[..., None])   # same values either way


def test_kernels_agree_with_the_plain_math():
    """Sanity: emulation = float64 products of the rounded activations, up to float32 rounding."""
    rng = np.random.default_rng(7)
    x = activations(rng, 5, 512)
    for kind in ("Q5_0", "Q8_0", "Q4_K", "Q6_K"):
        blocks = blocks_of(rng, kind, 8, 512)
        ours = gm.mul_mat(kind, blocks, x)
        if kind in ("Q5_0", "Q8_0"):
            q, d = gm.quantize_q8_0(x)
            xr = (q * d[..., None]).reshape(5, 512)
        else:                                                      # rows 0-3 packed (gemm), row 4 ref
            parts = [gm.quantize_q8_K(r[None], packed4=i < 4) for i, r in enumerate(x)]
            xr = np.concatenate([(q * d[..., None]).reshape(1, -1) for q, d in parts])
        w = dequantize(blocks.reshape(-1), Q[kind], 8 * 512).reshape(8, 512)
        want = xr.astype(np.float64) @ w.T.astype(np.float64)
        np.testing.assert_allclose(ours, want, rtol=2e-5, atol=1e-5 * np.abs(want).max())


def test_q4_K_with_rows_not_a_multiple_of_8_is_not_repacked(monkeypatch):
    """llama.cpp repacks Q4_K only when the row count is a multiple of 8; otherwise mul_mat declines
    and ops.linear takes its generic path (regression: it used to return None)."""
    from inference import ops
    from inference.gguf_file import Tensor

    monkeypatch.setenv("LECTERN_KERNELS", "numpy")
    rng = np.random.default_rng(11)
    blocks, x = blocks_of(rng, "Q4_K", 6, 256), activations(rng, 3, 256)
    assert gm.mul_mat("Q4_K", blocks, x) is None
    w = Tensor("w", Q.Q4_K, (256, 6), blocks.reshape(-1))
    want = ops.quantize_q8_K(x).astype(np.float64) @ dequantize(blocks.reshape(-1), Q.Q4_K, 6 * 256).reshape(6, 256).T
    np.testing.assert_allclose(ops.linear(w, x), want, rtol=1e-5, atol=1e-6)
