"""A kimi-linear decode plan: every layer of a token in one native call (see jit/plan.py).

KDA and MLA layers have their own compiled layer functions (kernels/kimi_layer.py), named in
each layer's parameter block; the KDA step kernel, the MLA block kernel and the MoE block
(jit.moe) run from inside the same call with parameter blocks filled here once (only the
positions and the MLA key-block count change per token).
"""
from __future__ import annotations

import numpy as np

from inference.models.moe import GATING_SIGMOID, shared_expert

from . import api
from . import compile as jc
from . import kda as jkda
from . import mla_attention as jmla
from . import moe as jm
from .cpu import detect
from .group import Jobs
from .kernels import mla_attention as km
from .kernels.kda import ARGS as KDA_ARGS
from .kernels.kimi_layer import SLOTS, K, KimiShape, kimi_layer_ir, supported
from .kernels.moe_block import padded
from .linear import ONE_PROTO, _addr, op_for, tiles
from .plan import Head, PlanBase, token_fn


def moe_shape(model, il: int):
    c, lay = model.config, model.layers[il]
    return jm.shape_for(lay.ffn_gate_inp, lay.ffn_gate_exps, lay.ffn_down_exps, c.n_expert_used[il], lay.exp_probs_b,
                        True, c.w_scale, 0.0, shared_expert(lay), 0.0)


def layer_shape(model, state, il: int) -> KimiShape:
    c, lay = model.config, model.layers[il]
    moe = lay.ffn_gate_inp is not None
    if c.is_kda[il]:
        return KimiShape("kda", c.n_embd, float(np.float32(c.eps)), moe, c.n_head)
    w = lay.mixer
    kb, vb = jm.expert_op(w.attn_k_b, 0), jm.expert_op(w.attn_v_b, 0)
    return KimiShape("mla", c.n_embd, float(np.float32(c.eps)), moe, c.n_head, c.key_length_mla - c.n_rope, c.n_rope,
                     c.kv_lora_rank, w.attn_v_b.shape[1], state.kv_type,
                     kb._xbytes if kb._quant_addr else 0, vb._xbytes if vb._quant_addr else 0)


def _types_ok(ws) -> bool:
    return all(w is not None and api.supports(w.ggml_type) for w in ws)


def _layer_ok(model, state, il: int) -> bool:
    c, lay, w = model.config, model.layers[il], model.layers[il].mixer
    if c.is_kda[il]:
        proj = [w.attn_qkv] if w.attn_qkv is not None else [w.attn_q, w.attn_k, w.attn_v]
        if c.kda_head_dim % 8 or c.d_conv < 2 or not _types_ok(proj + [w.ssm_f_a, w.ssm_f_b, w.ssm_g_a, w.ssm_g_b,
                                                                        w.ssm_beta, w.attn_output]):
            return False
    else:
        if not _types_ok([w.attn_q, w.attn_kv_a_mqa, w.attn_k_b, w.attn_v_b, w.attn_output]):
            return False
        if not jmla.usable(c.kv_lora_rank + c.n_rope, c.kv_lora_rank, c.n_head):
            return False
    if not supported(layer_shape(model, state, il)):
        return False
    if lay.ffn_gate_inp is None:
        return _types_ok([lay.ffn_gate, lay.ffn_up, lay.ffn_down]) and lay.ffn_gate.shape == lay.ffn_up.shape \
            and lay.ffn_gate.shape[0] % 16 == 0
    return c.gating == GATING_SIGMOID and moe_shape(model, il) is not None


def plannable(model, state) -> bool:
    from inference import ops

    if not (api.enabled() and ops.ROUND_ACTIVATIONS and hasattr(api.get_pool(), "raw")):
        return False
    try:
        jkda.kernel()
    except Exception:  # noqa: BLE001 - the per-op path then runs KDA in numpy too
        return False
    return all(_layer_ok(model, state, il) for il in range(model.config.n_layer))


class KimiPlan(PlanBase):
    def __init__(self, model, state):
        c = model.config
        self._setup(model, state, c.n_layer)
        cpu = detect()
        self._jobs = Jobs(self._pool)
        self._keep: list = []
        self._blocks: list = []
        self._moe: list = []                 # the MoE layers' jit.moe blocks
        E = c.n_embd
        self.buf = {k: np.zeros(E, np.float32) for k in ("x", "h", "o", "down", "mo")}
        self.P = np.zeros((c.n_layer, len(SLOTS)), np.int64)
        self._mla: list = []                 # (layer, param block, cache, row bytes)
        for il, lay in enumerate(model.layers):
            shape = layer_shape(model, state, il)
            p = self.P[il]
            fn = jc.kernel(("kimi_layer", shape), lambda s=shape: kimi_layer_ir(s, cpu), {"kimi_layer": ONE_PROTO},
                           cpu)["kimi_layer"]
            self._keep.append(fn)
            p[K["layer"]] = _addr(fn)
            for k in ("x", "h", "o"):
                p[K[k]] = self.buf[k].ctypes.data
            p[K["attn_norm"]], p[K["ffn_norm"]] = self._f32(lay.attn_norm), self._f32(lay.ffn_norm)
            p[K["linear_one"]], p[K["linear_group"]] = _addr(tiles()["linear_one"]), self._jobs.linear_group
            p[K["run"]], p[K["ctx"]], p[K["group_rows"]] = self._run, self._ctx, _addr(self._jobs.k["group_rows"])
            if shape.kind == "kda":
                self._kda(p, lay.mixer, state, il, c)
            else:
                self._mla_layer(p, lay.mixer, state, il, shape, c)
            self._ffn(p, model, lay, il)
        self._fn = token_fn("kimi_layers", len(SLOTS), E, c.eps)
        self.head = Head(self, model.output, model.output_norm, E)

    # --- helpers ---------------------------------------------------------------------------------
    def _arr(self, n: int) -> np.ndarray:
        a = np.zeros(max(1, n), np.float32)
        self._keep.append(a)
        return a

    def _f32(self, a: np.ndarray) -> int:
        """The address of a float32 C-contiguous copy-if-needed of a (kept alive; the same values)."""
        a = np.ascontiguousarray(a, np.float32)
        self._keep.append(a)
        return a.ctypes.data

    # --- layers ----------------------------------------------------------------------------------
    def _kda(self, p, w, state, il: int, c) -> None:
        H, d = c.n_head, c.kda_head_dim
        D = H * d
        u, fa, ga, bl = self._arr(3 * D), self._arr(w.ssm_f_a.shape[0]), self._arr(w.ssm_g_a.shape[0]), self._arr(H)
        f, gate, out, scr = self._arr(D), self._arr(D), self._arr(D), self._arr(5 * D)
        ua = u.ctypes.data
        first = [(op_for(w.attn_qkv), ua)] if w.attn_qkv is not None else \
            [(op_for(m), ua + 4 * i * D) for i, m in enumerate((w.attn_q, w.attn_k, w.attn_v))]
        p[K["job_proj"]] = self._jobs.rows(first + [(op_for(w.ssm_f_a), fa.ctypes.data), (op_for(w.ssm_beta), bl.ctypes.data),
                                                    (op_for(w.ssm_g_a), ga.ctypes.data)], self.buf["h"].ctypes.data)
        p[K["lo_fb"]] = self._block(op_for(w.ssm_f_b), fa.ctypes.data, f.ctypes.data)
        p[K["lo_gb"]] = self._block(op_for(w.ssm_g_b), ga.ctypes.data, gate.ctypes.data)
        conv = [state.arrays[f"blk.{il}.conv_{n}"] for n in "qkv"]
        S = state.arrays[f"blk.{il}.ssm"]
        addr = dict(uq=ua, uk=ua + 4 * D, uv=ua + 8 * D, cq=conv[0].ctypes.data, ck=conv[1].ctypes.data,
                    cv=conv[2].ctypes.data, wq=self._f32(w.ssm_conv1d_q), wk=self._f32(w.ssm_conv1d_k),
                    wv=self._f32(w.ssm_conv1d_v), f=f.ctypes.data, dt=self._f32(w.ssm_dt), a=self._f32(w.ssm_a),
                    bl=bl.ctypes.data, gate=gate.ctypes.data, nw=self._f32(w.ssm_norm), S=S.ctypes.data,
                    out=out.ctypes.data, scr=scr.ctypes.data)
        kp = np.array([addr[k] for k in KDA_ARGS] + [H, d, c.d_conv, 0], np.int64)
        kp[-1:].view(np.float32)[0] = np.float32(c.eps)
        self._keep.append(kp)
        p[K["kda_fn"]], p[K["kda_p"]] = _addr(jkda.kernel()), kp.ctypes.data
        p[K["kda_chunk"]] = -(-H // self._pool.n)
        p[K["lo_o"]] = self._block(op_for(w.attn_output), out.ctypes.data, self.buf["o"].ctypes.data)

    def _mla_layer(self, p, w, state, il: int, s: KimiShape, c) -> None:
        H, n, r, R, dv = s.n_head, s.n_nope, s.n_rope, s.rank, s.dv
        Hp, nbmax = padded(H), jmla.MAX_BLOCKS
        qf, ckp, cbuf, qn, Q = self._arr(H * (n + r)), self._arr(R + r), self._arr(R), self._arr(H * n), self._arr(H * (R + r))
        m, l, wb, tot = self._arr(nbmax * H + 16), self._arr(nbmax * H + 16), self._arr(nbmax * Hp), self._arr(Hp)
        acc, lat, att = self._arr(nbmax * H * R), self._arr(H * R), self._arr(H * dv)
        h = self.buf["h"].ctypes.data
        p[K["job_proj"]] = self._jobs.rows([(op_for(w.attn_q), qf.ctypes.data), (op_for(w.attn_kv_a_mqa), ckp.ctypes.data)], h)
        kb, vb = ([jm.expert_op(m, h) for h in range(H)] for m in (w.attn_k_b, w.attn_v_b))
        xq_kb = np.zeros(H * s.xbytes_kb + 64, np.uint8)
        xq_vb = np.zeros(H * s.xbytes_vb + 64, np.uint8)
        self._keep += [xq_kb, xq_vb]
        kx = (xq_kb.ctypes.data, s.xbytes_kb) if s.xbytes_kb else (qn.ctypes.data, 4 * n)
        vx = (xq_vb.ctypes.data, s.xbytes_vb) if s.xbytes_vb else (lat.ctypes.data, 4 * R)
        p[K["kb_table"]], _, p[K["kb_chunk"]] = self._jobs.table(
            [(op, kx[0] + h * kx[1], Q.ctypes.data + h * 4 * (R + r)) for h, op in enumerate(kb)])
        p[K["vb_table"]], _, p[K["vb_chunk"]] = self._jobs.table(
            [(op, vx[0] + h * vx[1], att.ctypes.data + h * 4 * dv) for h, op in enumerate(vb)])
        p[K["quant_kb"]], p[K["xq_kb"]] = kb[0]._quant_addr, xq_kb.ctypes.data
        p[K["quant_vb"]], p[K["xq_vb"]] = vb[0]._quant_addr, xq_vb.ctypes.data
        cache = state.arrays[f"blk.{il}.kv"]
        mp = np.zeros(km.N_PARAMS, np.int64)
        mp[km.P_Q], mp[km.P_K], mp[km.P_M], mp[km.P_L], mp[km.P_H] = Q.ctypes.data, cache.ctypes.data, m.ctypes.data, \
            l.ctypes.data, H
        mp[km.P_SCALE:km.P_SCALE + 1].view(np.float32)[0] = np.float32(1.0 / np.sqrt(c.key_length_mla))
        self._keep.append(mp)
        p[K["mla_fn"]], p[K["mla_p"]] = _addr(jmla.kernel(R + r, R, s.kv == "f16")), mp.ctypes.data
        for k, a in (("qf", qf), ("ckp", ckp), ("c", cbuf), ("qn", qn), ("Q", Q), ("m", m), ("l", l), ("w", wb),
                     ("tot", tot), ("acc", acc), ("lat", lat)):
            p[K[k]] = a.ctypes.data
        p[K["kv_norm"]] = self._f32(w.attn_kv_a_norm)
        p[K["lo_o"]] = self._block(op_for(w.attn_output), att.ctypes.data, self.buf["o"].ctypes.data)
        self._mla.append((il, mp, cache.ctypes.data, cache.strides[0]))

    def _ffn(self, p, model, lay, il: int) -> None:
        h = self.buf["h"].ctypes.data
        if lay.ffn_gate_inp is None:
            F = lay.ffn_gate.shape[0]
            gate, up, g = self._arr(F), self._arr(F), self._arr(F)
            p[K["job_ffn"]] = self._jobs.gate_up(op_for(lay.ffn_gate), op_for(lay.ffn_up), h, gate.ctypes.data,
                                                 up.ctypes.data, g.ctypes.data, "swiglu")
            p[K["lo_down"]] = self._block(op_for(lay.ffn_down), g.ctypes.data, self.buf["down"].ctypes.data)
            p[K["down"]] = self.buf["down"].ctypes.data
            return
        block = jm.MoeBlock(moe_shape(model, il), lay.ffn_gate_inp, lay.ffn_gate_exps, lay.ffn_up_exps,
                            lay.ffn_down_exps, lay.exp_probs_b, shared_expert(lay), h=h, out=self.buf["mo"].ctypes.data)
        self._moe.append(block)
        p[K["moe_fn"]], p[K["moe_p"]], p[K["down"]] = block.fn_addr, block.M, self.buf["mo"].ctypes.data

    def step(self, x: np.ndarray, pos: int) -> np.ndarray:
        """x [n_embd] (the token's embedding) through every layer at position pos -> the logits
        [n_vocab] (an array no earlier caller still holds), or the last layer's output [n_embd]
        if the plan has no head."""
        self._pool.wake()                    # the workers spin again while this thread prepares
        np.copyto(self.buf["x"], x)
        S = pos + 1
        blk = jmla.block_size(S)
        for il, mp, base, row in self._mla:
            mp[km.P_S], mp[km.P_BLK] = S, blk
            self.P[il, K["nb"]] = -(-S // blk)
            self.P[il, K["crow"]] = base + pos * row
        out = self.head.target()
        self._call()
        return self.head.result(out)
