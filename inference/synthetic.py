"""Synthetic benchmark models: GGUF files of real model shapes with random, valid weights.

`build(name, ftype, layers, dims)` gives a Spec (metadata + tensor list, nothing generated yet);
`write(spec, path)` streams random blocks of each tensor's type into a GGUF (gguf's GGUFWriter),
with the key set and tokenizer fields of the golden tiny models of the same architecture, which
both our loader and llama.cpp accept. Weights have std ~ 1/sqrt(fan_in) so activations stay
O(1) through the layers; norms are ~1, the KDA decay is a realistic small negative log-decay.

Shapes (ggml `ne` order; see ../shared/docs/kimi-linear-and-step35.md sections 1.2 and 2.2):
  kimi-linear-48b-slice  E 2304, 32 heads x 128 (KDA and MLA), MLA kv_lora 512 / qk_rope 64 /
                         nope 128 / v 128, dense FF 9216 (layer 0), 32 experts FF 1024 top-8 +
                         1 shared, 4 layers = KDA KDA KDA MLA (MLA where (il+1) % 4 == 0 or last)
  step35-flash-slice     E 4096, head dim 128, 64 heads on full layers / 96 on sliding ones,
                         8 KV heads, dense FF 11264 (layer 0), 32 experts FF 1280 top-8 + shared
                         1280, 4 layers = full + 3 sliding (full where il % 4 == 0), window 512
Both: 32000-token SentencePiece-style vocabulary (<unk> <s> </s>, 256 byte tokens, then "▁wN").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUFWriter
from gguf import GGMLQuantizationType as T

from .errors import LecternError
from .synthetic_blocks import FILE_TYPE, fit_type, mix_type, random_tensor

NAMES = ("kimi-linear-48b-slice", "step35-flash-slice")

KIMI_DIMS = dict(n_embd=2304, n_head=32, head_dim=128, kv_lora=512, n_rope=64, n_nope=128, v_mla=128,
                 n_ff=9216, n_ff_exp=1024, n_expert=32, n_expert_used=8, n_vocab=32000, n_layer=4,
                 n_dense=1, d_conv=4, n_ctx=131072)
STEP_DIMS = dict(n_embd=4096, head_dim=128, n_head_full=64, n_head_swa=96, n_head_kv=8, n_ff=11264,
                 n_ff_exp=1280, n_expert=32, n_expert_used=8, n_vocab=32000, n_layer=4, n_dense=1,
                 window=512, n_ctx=131072)


@dataclass
class TensorSpec:
    name: str
    ne: tuple[int, ...]          # ggml order: ne[0] = row length
    qtype: T
    std: float
    mean: float = 0.0
    values: np.ndarray | None = None   # fixed float32 values (ssm_a, dt bias), numpy shape

    @property
    def nbytes(self) -> int:
        bs, bb = GGML_QUANT_SIZES[self.qtype]
        return math.prod(self.ne) // bs * bb


@dataclass
class Spec:
    name: str
    arch: str
    ftype: str
    dims: dict
    meta: list = field(default_factory=list)      # (key, kind, value); kind = u32 f32 bool str arr
    tensors: list[TensorSpec] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def kv_bytes_per_token(self, cache_bytes: int = 2) -> int:
        """Bytes of attention cache one more token adds (sliding layers: 0 once the window is full)."""
        d = self.dims
        if self.arch == "kimi-linear":
            return d["n_mla"] * (d["kv_lora"] + d["n_rope"]) * cache_bytes
        return d["n_full"] * 2 * d["n_head_kv"] * d["head_dim"] * cache_bytes

    def fixed_state_bytes(self, cache_bytes: int = 2) -> int:
        """Bytes of state that does not grow with the context (KDA state, full sliding windows)."""
        d = self.dims
        if self.arch == "kimi-linear":
            D = d["n_head"] * d["head_dim"]
            per = d["n_head"] * d["head_dim"] ** 2 * 4 + 3 * (d["d_conv"] - 1) * D * 4
            return (d["n_layer"] - d["n_mla"]) * per
        return (d["n_layer"] - d["n_full"]) * d["window"] * 2 * d["n_head_kv"] * d["head_dim"] * cache_bytes


class _Builder:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.d = spec.dims

    def weight(self, name: str, n_in: int, *rest: int, role: str | None = None, il: int = -1,
               std: float | None = None):
        """A matrix (or stack) with rows of n_in values, its type from the file type / mix."""
        if role is None:
            role = name.split(".")[2] if name.startswith("blk.") else name.split(".")[0]
        qt = fit_type(mix_type(self.spec.ftype, role, il, self.d["n_layer"], self.d["n_expert"]), n_in)
        self.spec.tensors.append(TensorSpec(name, (n_in, *rest), qt, std if std is not None else n_in ** -0.5))

    def f32(self, name: str, ne: tuple, std: float, mean: float = 0.0, values=None):
        self.spec.tensors.append(TensorSpec(name, tuple(ne), T.F32, std, mean, values))

    def norm(self, name: str, n: int):
        self.f32(name, (n,), 0.05, 1.0)

    def ffn(self, il: int, E: int):
        d = self.d
        b = f"blk.{il}."
        if il < d["n_dense"]:
            for n in ("ffn_gate", "ffn_up"):
                self.weight(f"{b}{n}.weight", E, d["n_ff"], il=il)
            self.weight(f"{b}ffn_down.weight", d["n_ff"], E, il=il)
            return
        X, F = d["n_expert"], d["n_ff_exp"]
        self.f32(f"{b}ffn_gate_inp.weight", (E, X), E ** -0.5)
        self.f32(f"{b}exp_probs_b.bias", (X,), 0.01)
        for n in ("ffn_gate_exps", "ffn_up_exps"):
            self.weight(f"{b}{n}.weight", E, F, X, il=il)
        self.weight(f"{b}ffn_down_exps.weight", F, E, X, il=il)
        for n in ("ffn_gate_shexp", "ffn_up_shexp"):
            self.weight(f"{b}{n}.weight", E, F, il=il)
        self.weight(f"{b}ffn_down_shexp.weight", F, E, il=il)

    def common(self):
        d, E = self.d, self.d["n_embd"]
        self.weight("token_embd.weight", E, d["n_vocab"], std=1.0, role="token_embd")
        self.norm("output_norm.weight", E)
        self.weight("output.weight", E, d["n_vocab"], role="output")


def _tokenizer_meta() -> list:
    return [("tokenizer.ggml.model", "str", "llama"),
            ("tokenizer.ggml.bos_token_id", "u32", 1), ("tokenizer.ggml.eos_token_id", "u32", 2),
            ("tokenizer.ggml.unknown_token_id", "u32", 0), ("tokenizer.ggml.add_bos_token", "bool", True)]


def vocab(n: int) -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types): control, 256 bytes, then normal pieces '▁w<i>'."""
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    toks += [f"\u2581w{i}" for i in range(n - len(toks))]
    types += [1] * (n - len(types))
    scores = [0.0] * 259 + [-float(i) for i in range(1, n - 258)]
    return toks[:n], scores[:n], types[:n]


def _kimi(spec: Spec) -> None:
    d = spec.dims
    L, E, H, hd = d["n_layer"], d["n_embd"], d["n_head"], d["head_dim"]
    D = H * hd
    mla = [int((il + 1) % 4 == 0 or (il == L - 1 and L > 1)) for il in range(L)]
    d["n_mla"] = sum(mla)
    a = "kimi-linear"
    spec.meta += [(f"{a}.context_length", "u32", d["n_ctx"]), (f"{a}.embedding_length", "u32", E),
                  (f"{a}.block_count", "u32", L), (f"{a}.feed_forward_length", "u32", d["n_ff"]),
                  (f"{a}.attention.head_count", "u32", H), (f"{a}.attention.head_count_kv", "arr", mla),
                  (f"{a}.attention.layer_norm_rms_epsilon", "f32", 1e-5),
                  (f"{a}.ssm.conv_kernel", "u32", d["d_conv"]), (f"{a}.kda.head_dim", "u32", hd),
                  (f"{a}.attention.kv_lora_rank", "u32", d["kv_lora"]),
                  (f"{a}.rope.dimension_count", "u32", d["n_rope"]),
                  (f"{a}.attention.key_length", "u32", d["kv_lora"] + d["n_rope"]),
                  (f"{a}.attention.value_length", "u32", d["kv_lora"]),
                  (f"{a}.attention.key_length_mla", "u32", d["n_nope"] + d["n_rope"]),
                  (f"{a}.attention.value_length_mla", "u32", d["v_mla"]),
                  (f"{a}.expert_count", "u32", d["n_expert"]),
                  (f"{a}.expert_used_count", "u32", d["n_expert_used"]),
                  (f"{a}.expert_feed_forward_length", "u32", d["n_ff_exp"]),
                  (f"{a}.expert_shared_count", "u32", 1),
                  (f"{a}.leading_dense_block_count", "u32", d["n_dense"]),
                  (f"{a}.expert_weights_scale", "f32", 2.446), (f"{a}.expert_gating_func", "u32", 2)]
    b = _Builder(spec)
    b.common()
    rng = np.random.default_rng(7)
    for il in range(L):
        p = f"blk.{il}."
        b.norm(f"{p}attn_norm.weight", E)
        b.norm(f"{p}ffn_norm.weight", E)
        if mla[il]:
            R, r, n, dv = d["kv_lora"], d["n_rope"], d["n_nope"], d["v_mla"]
            b.weight(f"{p}attn_q.weight", E, H * (n + r), il=il)
            b.weight(f"{p}attn_kv_a_mqa.weight", E, R + r, il=il)
            b.norm(f"{p}attn_kv_a_norm.weight", R)
            b.weight(f"{p}attn_k_b.weight", n, R, H, il=il)
            b.weight(f"{p}attn_v_b.weight", R, dv, H, il=il)
            b.weight(f"{p}attn_output.weight", H * dv, E, il=il)
        else:
            for n in "qkv":
                b.weight(f"{p}attn_{n}.weight", E, D, il=il)
            for n in "qkv":
                b.f32(f"{p}ssm_conv1d_{n}.weight", (d["d_conv"], 1, D), 0.5)
            b.weight(f"{p}ssm_f_a.weight", E, hd, il=il)
            b.weight(f"{p}ssm_f_b.weight", hd, D, il=il)
            b.weight(f"{p}ssm_g_a.weight", E, hd, il=il)
            b.weight(f"{p}ssm_g_b.weight", hd, D, il=il)
            b.weight(f"{p}ssm_beta.weight", E, H, il=il)
            A = -rng.uniform(1.0, 16.0, H).astype(np.float32)           # -exp(A_log), A_log ~ log U(1,16)
            b.f32(f"{p}ssm_a", (1, H), 0.0, values=A.reshape(H, 1))
            dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), D))     # softplus^-1 of dt in [1e-3, 0.1]
            b.f32(f"{p}ssm_dt.bias", (D,), 0.0, values=np.log(np.expm1(dt)).astype(np.float32))
            b.norm(f"{p}ssm_norm.weight", hd)
            b.weight(f"{p}attn_output.weight", D, E, il=il)
        b.ffn(il, E)


def _step35(spec: Spec) -> None:
    d = spec.dims
    L, E, hd, kv = d["n_layer"], d["n_embd"], d["head_dim"], d["n_head_kv"]
    full = [il % 4 == 0 for il in range(L)]
    d["n_full"] = sum(full)
    heads = [d["n_head_full"] if f else d["n_head_swa"] for f in full]
    a = "step35"
    spec.meta += [(f"{a}.context_length", "u32", d["n_ctx"]), (f"{a}.embedding_length", "u32", E),
                  (f"{a}.block_count", "u32", L), (f"{a}.feed_forward_length", "u32", d["n_ff"]),
                  (f"{a}.attention.head_count", "arr", heads),
                  (f"{a}.attention.head_count_kv", "arr", [kv] * L),
                  (f"{a}.attention.key_length", "u32", hd), (f"{a}.attention.value_length", "u32", hd),
                  (f"{a}.rope.dimension_count", "u32", hd), (f"{a}.rope.freq_base", "f32", 5e6),
                  (f"{a}.rope.freq_base_swa", "f32", 1e4),
                  (f"{a}.attention.sliding_window", "u32", d["window"]),
                  (f"{a}.attention.sliding_window_pattern", "arr", [not f for f in full]),
                  (f"{a}.attention.layer_norm_rms_epsilon", "f32", 1e-5),
                  (f"{a}.expert_count", "u32", d["n_expert"]),
                  (f"{a}.expert_used_count", "u32", d["n_expert_used"]),
                  (f"{a}.expert_feed_forward_length", "u32", d["n_ff_exp"]),
                  (f"{a}.expert_shared_feed_forward_length", "u32", d["n_ff_exp"]),
                  (f"{a}.expert_weights_scale", "f32", 3.0), (f"{a}.expert_weights_norm", "bool", True),
                  (f"{a}.expert_gating_func", "u32", 2),
                  (f"{a}.leading_dense_block_count", "u32", d["n_dense"]),
                  (f"{a}.swiglu_clamp_exp", "arr", [0.0] * L), (f"{a}.swiglu_clamp_shexp", "arr", [0.0] * L)]
    b = _Builder(spec)
    b.common()
    for il in range(L):
        p, Hq = f"blk.{il}.", heads[il]
        for n in ("attn_norm", "ffn_norm"):
            b.norm(f"{p}{n}.weight", E)
        b.weight(f"{p}attn_q.weight", E, hd * Hq, il=il)
        b.weight(f"{p}attn_k.weight", E, hd * kv, il=il)
        b.weight(f"{p}attn_v.weight", E, hd * kv, il=il)
        b.norm(f"{p}attn_q_norm.weight", hd)
        b.norm(f"{p}attn_k_norm.weight", hd)
        b.weight(f"{p}attn_gate.weight", E, Hq, il=il)
        b.weight(f"{p}attn_output.weight", hd * Hq, E, il=il)
        b.ffn(il, E)


def build(name: str, ftype: str = "Q4_K_M", layers: int | None = None, dims: dict | None = None) -> Spec:
    """The Spec of a synthetic model. layers: block count (the real layer pattern continues);
    dims: overrides of KIMI_DIMS / STEP_DIMS keys (tests shrink the widths with it)."""
    if name not in NAMES:
        raise LecternError(f"unknown synthetic model {name!r}; choose one of {', '.join(NAMES)}")
    if ftype not in FILE_TYPE:
        raise LecternError(f"unknown weight type {ftype!r}; choose one of {', '.join(FILE_TYPE)}")
    kimi = name.startswith("kimi")
    d = dict(KIMI_DIMS if kimi else STEP_DIMS)
    bad = set(dims or {}) - set(d)
    if bad:
        raise LecternError(f"unknown dimension(s) {sorted(bad)}; known: {', '.join(d)}")
    d.update(dims or {})
    if layers is not None:
        if layers < 1:
            raise LecternError("--layers must be at least 1")
        d["n_layer"] = layers
    spec = Spec(name, "kimi-linear" if kimi else "step35", ftype, d)
    spec.meta += [("general.architecture", "str", spec.arch), ("general.name", "str", f"synthetic-{name}"),
                  ("general.quantization_version", "u32", 2), ("general.file_type", "u32", FILE_TYPE[ftype])]
    spec.meta += _tokenizer_meta()
    (_kimi if kimi else _step35)(spec)
    return spec


_ADD = {"u32": "add_uint32", "f32": "add_float32", "bool": "add_bool", "str": "add_string", "arr": "add_array"}


def write(spec: Spec, path: str | Path, seed: int = 0, progress=None) -> Path:
    """Stream the model to path (random blocks generated one tensor at a time). progress(i, n)."""
    path = Path(path)
    w = GGUFWriter(path, spec.arch)
    w.kv_data[0].pop("general.architecture", None)       # re-added below in the golden files' order
    for key, kind, value in spec.meta:
        getattr(w, _ADD[kind])(key, value)
    toks, scores, types = vocab(spec.dims["n_vocab"])
    w.add_array("tokenizer.ggml.tokens", toks)
    w.add_array("tokenizer.ggml.scores", scores)
    w.add_array("tokenizer.ggml.token_type", types)
    for t in spec.tensors:
        shape = tuple(reversed(t.ne))
        if t.qtype in (T.F32, T.F16):
            w.add_tensor_info(t.name, shape, np.dtype(np.float32 if t.qtype == T.F32 else np.float16), t.nbytes)
        else:
            row = GGML_QUANT_SIZES[t.qtype]
            byte_shape = shape[:-1] + (shape[-1] // row[0] * row[1],)
            w.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), t.nbytes, raw_dtype=t.qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for i, t in enumerate(spec.tensors):
        if t.values is not None:
            data = np.ascontiguousarray(t.values, np.float32).reshape(-1).view(np.uint8)
        else:
            data = random_tensor(t.qtype, math.prod(t.ne), t.std, rng, t.mean)
        w.write_tensor_data(data)
        if progress:
            progress(i + 1, len(spec.tensors))
    w.close()
    return path
