"""The KDA (Kimi Delta Attention) decode step as one kernel: everything after the projections.

void kda_heads(const i64 *p, void *, void *, i64 h0, i64 h1, i64 unused)    heads [h0, h1) of one token
  p: the addresses of the arrays below in ARGS order, then H, d, K, and eps's float32 bits
  (a pool job over heads: heads are independent, so any split gives the same bits)
  all arrays float32; D = H*d
  u*   [D]        this token's projections W_q x, W_k x, W_v x (before the conv)
  c*   [K-1, D]   conv state: the previous K-1 projections, oldest first (shifted in place)
  w*   [D, K]     conv taps per channel, tap K-1 = this token
  f    [D]        W_fb W_fa x (decay pre-activation, without dt bias);  dt [D] bias
  a    [H]        -exp(A_log);  bl [H] beta logits (W_beta x);  gate [D] W_gb W_ga x
  nw   [d]        ssm_norm weight;  S [H, d, d] state (key i, value j), updated in place
  out  [D]        rms_norm(o_h, nw) * sigmoid(gate_h) per head;  scr [3D + 2Hd] scratch
Per channel: z = silu(sum_i w[c,i] x_i) (x = state then u); per head: q, k L2-normed
(x / sqrt(sum x^2 + eps), sums of squares in double like ggml's rms_norm), g = a[h] softplus(f + dt),
beta = sigmoid(bl[h]); S <- diag(e^g) S (key axis); delta = beta (v - S^T k); S += k delta^T;
o = S^T q / sqrt(d). Two passes over each head's S: decay + S^T k, then update + S^T q.
"""
from __future__ import annotations

from ..cpu import CpuInfo
from .emit import ModuleText

ARGS = ("uq", "uk", "uv", "cq", "ck", "cv", "wq", "wk", "wv", "f", "dt", "a", "bl", "gate", "nw", "S",
        "out", "scr")


def _at(fn, base: str, idx: str) -> str:
    return fn.v(f"getelementptr inbounds float, ptr {base}, i64 {idx}")


def _ld(fn, base: str, idx: str) -> str:
    return fn.load("float", _at(fn, base, idx), 4)


def _st(fn, val: str, base: str, idx: str) -> None:
    fn.store("float", val, _at(fn, base, idx), 4)


def _exp(fn, x: str) -> str:
    return fn.call("float", "llvm.exp.f32", [f"float {x}"], "float")


def _sigmoid(fn, x: str) -> str:
    e = _exp(fn, fn.v(f"fneg float {x}"))
    return fn.v(f"fdiv float 1.0, {fn.v(f'fadd float 1.0, {e}')}")


def _conv(fn, u: str, c: str, w: str, z: str) -> None:
    """z[c] = silu(sum_{i<K-1} w[c,i] st[i,c] + w[c,K-1] u[c]); shift the state (channels of heads h0..h1)."""
    with fn.loop("%c0", "%c1", stem="ch") as C:
        wrow = fn.v(f"mul i64 {C.i}, %K")
        with fn.loop("0", "%Km1", stem="tap") as I:
            acc = I.carry("float", "0.0")
            s = _ld(fn, c, fn.v(f"add i64 {fn.v(f'mul i64 {I.i}, %D')}, {C.i}"))
            p = fn.v(f"fmul float {_ld(fn, w, fn.v(f'add i64 {wrow}, {I.i}'))}, {s}")
            I.set(acc, fn.v(f"fadd float {acc}, {p}"))
        x = _ld(fn, u, C.i)
        p = fn.v(f"fmul float {_ld(fn, w, fn.v(f'add i64 {wrow}, %Km1'))}, {x}")
        acc = fn.v(f"fadd float {acc}, {p}")
        with fn.loop("0", "%Km2", stem="sh") as I:
            i1 = fn.v(f"add i64 {I.i}, 1")
            nxt = _ld(fn, c, fn.v(f"add i64 {fn.v(f'mul i64 {i1}, %D')}, {C.i}"))
            _st(fn, nxt, c, fn.v(f"add i64 {fn.v(f'mul i64 {I.i}, %D')}, {C.i}"))
        _st(fn, x, c, fn.v(f"add i64 {fn.v('mul i64 %Km2, %D')}, {C.i}"))
        e = _exp(fn, fn.v(f"fneg float {acc}"))
        _st(fn, fn.v(f"fdiv float {acc}, {fn.v(f'fadd float 1.0, {e}')}"), z, C.i)


def _sumsq(fn, x: str, base: str, n: str) -> str:
    """sum of float32 squares accumulated in double, / n, as float (ggml rms_norm's mean)."""
    with fn.loop("0", n, stem="sq") as I:
        acc = I.carry("double", "0.0")
        v = _ld(fn, x, fn.v(f"add i64 {base}, {I.i}"))
        sq = fn.v(f"fpext float {fn.v(f'fmul float {v}, {v}')} to double")
        I.set(acc, fn.v(f"fadd double {acc}, {sq}"))
    nd = fn.v(f"sitofp i64 {n} to double")
    return fn.v(f"fptrunc double {fn.v(f'fdiv double {acc}, {nd}')} to float")


def _rsqrt(fn, ms: str, eps: str) -> str:
    s = fn.call("float", "llvm.sqrt.f32", [f"float {fn.v(f'fadd float {ms}, {eps}')}"], "float")
    return fn.v(f"fdiv float 1.0, {s}")


def _scale(fn, x: str, base: str, n: str, r: str, r2: str) -> None:
    """x[base + i] = x[base + i] * r * r2"""
    with fn.loop("0", n, stem="sc") as I:
        i = fn.v(f"add i64 {base}, {I.i}")
        _st(fn, fn.v(f"fmul float {fn.v(f'fmul float {_ld(fn, x, i)}, {r}')}, {r2}"), x, i)


def _head(fn, zq, zk, zv, tmp) -> None:
    with fn.loop("%h0", "%h1", stem="head") as Hh:
        base = fn.v(f"mul i64 {Hh.i}, %d")
        kS = _at(fn, tmp, fn.v(f"shl i64 {base}, 1"))             # this head's [2d] of scratch
        o = _at(fn, kS, "%d")
        for z in (zq, zk):                                       # L2 norms: rms_norm(x, eps/d) / sqrt(d)
            r = _rsqrt(fn, _sumsq(fn, z, base, "%d"), "%eps_d")
            _scale(fn, z, base, "%d", r, "%inv_sqrt_d")
        beta = _sigmoid(fn, _ld(fn, "%bl", Hh.i))
        ah = _ld(fn, "%a", Hh.i)
        sbase = fn.v(f"mul i64 {base}, %d")                      # S[h] = S + h*d*d
        with fn.loop("0", "%d", stem="z0") as J:
            _st(fn, "0.0", kS, J.i)
            _st(fn, "0.0", o, J.i)
        with fn.loop("0", "%d", stem="dec") as I:                # decay rows, accumulate S^T k
            c = fn.v(f"add i64 {base}, {I.i}")
            x = fn.v(f"fadd float {_ld(fn, '%f', c)}, {_ld(fn, '%dt', c)}")
            big = fn.v(f"fcmp ogt float {x}, 20.0")
            sp = fn.call("float", "log1pf", [f"float {_exp(fn, x)}"], "float")      # softplus (libm)
            sp = fn.v(f"select i1 {big}, float {x}, float {sp}")
            e = _exp(fn, fn.v(f"fmul float {sp}, {ah}"))
            kc = _ld(fn, zk, c)
            row = fn.v(f"add i64 {sbase}, {fn.v(f'mul i64 {I.i}, %d')}")
            ke = fn.splat(8, "float", kc)
            es = fn.splat(8, "float", e)
            with fn.loop("0", "%d", step=8, stem="r1") as J:          # 8 values at a time (d % 8 == 0)
                pS, pk = _at(fn, "%S", fn.v(f"add i64 {row}, {J.i}")), _at(fn, kS, J.i)
                s = fn.v(f"fmul <8 x float> {fn.load('<8 x float>', pS, 4)}, {es}")
                fn.store("<8 x float>", s, pS, 4)
                acc = fn.v(f"fadd <8 x float> {fn.load('<8 x float>', pk, 4)}, {fn.v(f'fmul <8 x float> {ke}, {s}')}")
                fn.store("<8 x float>", acc, pk, 4)
        with fn.loop("0", "%d", stem="dl") as J:                 # delta = beta (v - S^T k), in kS
            v = _ld(fn, zv, fn.v(f"add i64 {base}, {J.i}"))
            _st(fn, fn.v(f"fmul float {beta}, {fn.v(f'fsub float {v}, {_ld(fn, kS, J.i)}')}"), kS, J.i)
        with fn.loop("0", "%d", stem="up") as I:                 # S += k delta^T, accumulate S^T q
            c = fn.v(f"add i64 {base}, {I.i}")
            kc, qc = _ld(fn, zk, c), _ld(fn, zq, c)
            row = fn.v(f"add i64 {sbase}, {fn.v(f'mul i64 {I.i}, %d')}")
            ke, qe = fn.splat(8, "float", kc), fn.splat(8, "float", qc)
            with fn.loop("0", "%d", step=8, stem="r2") as J:
                pS, pd, po = _at(fn, "%S", fn.v(f"add i64 {row}, {J.i}")), _at(fn, kS, J.i), _at(fn, o, J.i)
                upd = fn.v(f"fmul <8 x float> {ke}, {fn.load('<8 x float>', pd, 4)}")
                s = fn.v(f"fadd <8 x float> {fn.load('<8 x float>', pS, 4)}, {upd}")
                fn.store("<8 x float>", s, pS, 4)
                acc = fn.v(f"fadd <8 x float> {fn.load('<8 x float>', po, 4)}, {fn.v(f'fmul <8 x float> {qe}, {s}')}")
                fn.store("<8 x float>", acc, po, 4)
        _scale(fn, o, "0", "%d", "%inv_sqrt_d", "1.0")           # o = S^T q / sqrt(d)
        r = _rsqrt(fn, _sumsq(fn, o, "0", "%d"), "%eps")          # rms_norm(o, nw) * sigmoid(gate)
        with fn.loop("0", "%d", stem="on") as J:
            c = fn.v(f"add i64 {base}, {J.i}")
            y = fn.v(f"fmul float {fn.v(f'fmul float {_ld(fn, o, J.i)}, {r}')}, {_ld(fn, '%nw', J.i)}")
            _st(fn, fn.v(f"fmul float {y}, {_sigmoid(fn, _ld(fn, '%gate', c))}"), "%out", c)


def kda_ir(cpu: CpuInfo) -> str:
    mt = ModuleText(cpu)
    fn = mt.function("define void @kda_heads(ptr noalias %p, ptr %unused1, ptr %unused2, i64 %h0, i64 %h1, "
                     "i64 %unused3) nounwind")
    for i, name in enumerate(ARGS):
        fn.do(f"%{name} = load ptr, ptr {fn.gep('%p', str(8 * i))}, align 8")
    n = len(ARGS)
    for i, name in enumerate(("H", "d", "K")):
        fn.do(f"%{name} = load i64, ptr {fn.gep('%p', str(8 * (n + i)))}, align 8")
    fn.do(f"%eps = load float, ptr {fn.gep('%p', str(8 * (n + 3)))}, align 4")
    fn.do("%D = mul i64 %H, %d")
    fn.do("%c0 = mul i64 %h0, %d")
    fn.do("%c1 = mul i64 %h1, %d")
    fn.do("%Km1 = sub i64 %K, 1")
    fn.do("%Km2 = sub i64 %K, 2")
    fn.do("%df = sitofp i64 %d to float")
    fn.do("%eps_d = fdiv float %eps, %df")
    fn.do("%sqd = call float @llvm.sqrt.f32(float %df)")
    fn.do("%inv_sqrt_d = fdiv float 1.0, %sqd")
    fn.declare("declare float @llvm.sqrt.f32(float)")
    zq, zk, zv = "%scr", _at(fn, "%scr", "%D"), _at(fn, "%scr", fn.v("mul i64 %D, 2"))
    tmp = _at(fn, "%scr", fn.v("mul i64 %D, 3"))
    for u, c, w, z in (("%uq", "%cq", "%wq", zq), ("%uk", "%ck", "%wk", zk), ("%uv", "%cv", "%wv", zv)):
        _conv(fn, u, c, w, z)
    _head(fn, zq, zk, zv, tmp)
    fn.do("ret void")
    mt.add(fn)
    return mt.text()
