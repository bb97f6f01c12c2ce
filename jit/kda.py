"""The KDA decode step on the JIT (jit/kernels/kda.py) and its numpy twin.

`step(...)` and `step_numpy(...)` take the same arguments and update the conv states and S
in place; the twin is built from inference.models.kda's reference pieces, so the kernel is
tested against the very code the prefill runs.
"""
from __future__ import annotations

import numpy as np

from . import compile as jc
from .api import MATVEC_PROTO, get_pool
from .cpu import detect
from .kernels.kda import kda_ir

def kernel():
    cpu = detect()
    return jc.kernel(("kda_heads",), lambda: kda_ir(cpu), {"kda_heads": MATVEC_PROTO}, cpu)["kda_heads"]


def _f32(x: np.ndarray) -> np.ndarray:
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        raise ValueError("kda step: the conv states and S must be C-contiguous float32 (they are updated in place)")
    return x


def step(u: tuple, conv: tuple, cw: tuple, f, dt, a, bl, gate, nw, S, eps: float) -> np.ndarray:
    """One token. u: 3 x [D] (q, k, v projections); conv: 3 x [K-1, D] (in place); cw: 3 x [D, K];
    f, dt, gate [D]; a, bl [H]; nw [d]; S [H, d, d] (in place) -> out [D] float32."""
    H, d, _ = S.shape
    D, K = H * d, cw[0].shape[1]
    if K < 2 or d % 8 or any(c.shape != (K - 1, D) for c in conv) or any(w.shape != (D, K) for w in cw):
        raise ValueError(f"kda step: conv shapes {[c.shape for c in conv]}, taps {[w.shape for w in cw]} "
                         f"do not fit D={D}, K={K} (or d={d} is not a multiple of 8)")
    u = tuple(np.ascontiguousarray(x, np.float32).reshape(D) for x in u)
    f, gate = (np.ascontiguousarray(x, np.float32).reshape(D) for x in (f, gate))
    bl = np.ascontiguousarray(bl, np.float32).reshape(H)
    cw, dt, a, nw = tuple(np.ascontiguousarray(w, np.float32) for w in cw), *(
        np.ascontiguousarray(x, np.float32) for x in (dt, a, nw))
    out = np.empty(D, np.float32)
    scr = np.empty(3 * D + 2 * D, np.float32)
    bufs = (*u, *map(_f32, conv), *cw, f, dt, a, bl, gate, nw, _f32(S), out, scr)
    p = np.array([b.ctypes.data for b in bufs] + [H, d, K, 0], np.int64)
    p[-1:].view(np.float32)[0] = eps
    pool = get_pool(None)
    pool.run(kernel(), (p.ctypes.data, 0, 0), H, (0,), -(-H // pool.n))      # heads split over the threads
    return out


def step_numpy(u: tuple, conv: tuple, cw: tuple, f, dt, a, bl, gate, nw, S, eps: float) -> np.ndarray:
    """The twin: the reference mixer's own steps for one token."""
    from inference import ops
    from inference.models import kda

    H, d, _ = S.shape
    q, k, v = (ops.silu(kda.causal_conv(np.asarray(x, np.float32).reshape(1, -1), c, w)).reshape(1, H, d)
               for x, c, w in zip(u, conv, cw))
    q, k = kda.l2_norm(q, eps), kda.l2_norm(k, eps)
    g = ops.softplus(np.asarray(f, np.float32).reshape(1, -1) + dt).reshape(1, H, d) * a[None, :, None]
    beta = ops.sigmoid(np.asarray(bl, np.float32).reshape(1, H))
    o = kda.gated_delta_rule(q, k, v, g, beta, S)                     # [1, H, d]
    o = ops.rms_norm(o, nw, eps) * ops.sigmoid(np.asarray(gate, np.float32).reshape(1, H, d))
    return o.reshape(-1).astype(np.float32)
