"""The vocabulary as llama.cpp loads it from GGUF metadata (llama-vocab.cpp, `load`).

Token attributes, the special ids and their defaults per tokenizer model, the add-BOS/EOS
flags, the end-of-generation set and the list of special tokens that the text is split on
before tokenizing. Where llama.cpp walks an unordered map (auto-detected EOT / FIM tokens,
the order of equally long special tokens) we use a fixed order: vocabulary order, first wins.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TokenizerError
from .pretypes import resolve_pre

# GGUF tokenizer.ggml.token_type values
TYPE_UNDEFINED, TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER_DEFINED, TYPE_UNUSED, TYPE_BYTE = range(7)

# llama_token_attr bits
ATTR_UNDEFINED = 0
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8

_TYPE_TO_ATTR = np.array([ATTR_UNDEFINED, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_CONTROL,
                          ATTR_USER_DEFINED, ATTR_UNUSED, ATTR_BYTE], dtype=np.int32)

SPM, BPE = "spm", "bpe"

# Token texts llama.cpp recognises when the metadata does not name the token (first match wins).
EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
             "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>")
EOM_TEXTS = ("<|eom_id|>",)
FIM_TEXTS = {
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
             "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
             "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
             "<｜end▁of▁sentence｜>", "[e~[")

# special ids: (metadata key suffix, attribute name)
_SPECIAL_KEYS = (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("eot_token_id", "eot"),
                 ("eom_token_id", "eom"), ("unknown_token_id", "unk"), ("seperator_token_id", "sep"),
                 ("padding_token_id", "pad"), ("mask_token_id", "mask"),
                 ("fim_pre_token_id", "fim_pre"), ("fim_suf_token_id", "fim_suf"),
                 ("fim_mid_token_id", "fim_mid"), ("fim_pad_token_id", "fim_pad"),
                 ("fim_rep_token_id", "fim_rep"), ("fim_sep_token_id", "fim_sep"),
                 ("prefix_token_id", "fim_pre"), ("suffix_token_id", "fim_suf"),
                 ("middle_token_id", "fim_mid"))


@dataclass
class Vocab:
    model: str                      # tokenizer.ggml.model: "llama" (SPM) or "gpt2" (byte-level BPE)
    kind: str                       # SPM | BPE
    tokens: list[str]               # id -> text as stored
    attrs: np.ndarray               # id -> llama_token_attr bits (int32)
    token_to_id: dict[str, int]     # text -> id (the last of duplicate texts, as llama.cpp)
    meta: dict[str, Any] = field(repr=False)
    pre_name: str = "default"       # tokenizer.ggml.pre as given
    pre_type: str = "default"       # llama.cpp's pre-tokenizer family (pretypes.REGEXES key)
    special: dict[str, int | None] = field(default_factory=dict)   # bos, eos, eot, ... -> id
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool = False
    clean_spaces: bool = False
    escape_whitespaces: bool = True
    ignore_merges: bool = False
    byte_encode: bool = True
    eog_ids: frozenset[int] = frozenset()
    special_order: list[int] = field(default_factory=list)   # partition order: longest text first

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def scores(self) -> list[float]:
        s = self.meta.get("tokenizer.ggml.scores")
        if s is None:
            return [0.0] * self.n_tokens
        return np.asarray(s, dtype=np.float32)[: self.n_tokens].astype(np.float64).tolist()

    def merges(self) -> list[str]:
        return list(self.meta.get("tokenizer.ggml.merges") or [])


def load_vocab(meta: dict[str, Any], name: str = "GGUF file") -> Vocab:
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        raise TokenizerError(f"{name}: no tokenizer.ggml.model in the metadata; this file carries no vocabulary")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise TokenizerError(f"{name}: no tokenizer.ggml.tokens in the metadata; the vocabulary is missing")
    tokens = list(tokens)
    if "" in tokens:                                  # rare: one C-level scan decides
        for i, t in enumerate(tokens):
            if not t:
                tokens[i] = f"[EMPTY_{i}]"
    n = len(tokens)
    v = Vocab(model=str(model), kind=_kind(str(model), name), tokens=tokens,
              attrs=_attrs(meta, n, name), token_to_id=dict(zip(tokens, range(n))), meta=meta)
    _defaults(v, name)
    _special_ids(v)
    _add_flags(v)
    _auto_special(v)
    _eog(v)
    _special_order(v)
    _strip_attrs(v)
    return v


def _kind(model: str, name: str) -> str:
    if model == "llama":
        return SPM
    if model in ("gpt2", "gemma4"):
        return BPE
    raise TokenizerError(
        f"{name}: tokenizer model {model!r} is not supported (supported: 'llama' SentencePiece-style "
        "and 'gpt2' byte-level BPE vocabularies)")


def _attrs(meta: dict[str, Any], n: int, name: str) -> np.ndarray:
    types = meta.get("tokenizer.ggml.token_type")
    if types is None:
        return np.full(n, ATTR_NORMAL, dtype=np.int32)
    types = np.asarray(types)
    if types.size < n:
        raise TokenizerError(f"{name}: tokenizer.ggml.token_type has {types.size} entries for {n} tokens")
    types = types[:n].astype(np.int64)
    out = np.full(n, ATTR_UNDEFINED, dtype=np.int32)
    ok = (types >= 0) & (types < len(_TYPE_TO_ATTR))
    out[ok] = _TYPE_TO_ATTR[types[ok]]
    return out


def _defaults(v: Vocab, name: str) -> None:
    """Per-model defaults, then the pre-tokenizer's flags (llama-vocab.cpp, `load`)."""
    if v.kind == SPM:
        v.special = dict(bos=1, eos=2, unk=0)
        v.add_space_prefix, v.clean_spaces, v.add_bos, v.add_eos = True, False, True, False
        v.escape_whitespaces = True
    else:
        v.special = dict(bos=11, eos=11) if v.model == "gpt2" else {}
        pre = str(v.meta.get("tokenizer.ggml.pre") or "")
        if v.model == "gemma4":
            pre = "gemma4"
        v.pre_name = pre or "default"
        v.add_space_prefix, v.escape_whitespaces, v.clean_spaces = False, False, True
        spec = resolve_pre(pre, name)
        v.pre_type = spec.family
        for k, val in spec.flags.items():
            if k == "no_bos":
                v.special["bos"] = None
            else:
                setattr(v, k, val)
        v.byte_encode = spec.byte_encode
    for key in ("bos", "eos", "eot", "eom", "unk", "sep", "pad", "mask",
                "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep"):
        v.special.setdefault(key, None)
    if "tokenizer.ggml.add_space_prefix" in v.meta:
        v.add_space_prefix = bool(v.meta["tokenizer.ggml.add_space_prefix"])


def _special_ids(v: Vocab) -> None:
    for key, attr in _SPECIAL_KEYS:
        cur = v.special.get(attr)
        if cur is not None and cur >= v.n_tokens:
            v.special[attr] = None
        new = v.meta.get(f"tokenizer.ggml.{key}")
        if new is None:
            continue
        new = int(new)
        if 0 <= new < v.n_tokens:
            v.special[attr] = new
        else:
            warnings.warn(f"tokenizer.ggml.{key} = {new} is outside the vocabulary; using {cur}", stacklevel=3)


def _add_flags(v: Vocab) -> None:
    for key, attr in (("add_bos_token", "add_bos"), ("add_eos_token", "add_eos")):
        val = v.meta.get(f"tokenizer.ggml.{key}")
        if val is not None:
            setattr(v, attr, bool(val))
    if v.pre_type == "gemma4":
        v.add_bos = True


def _promote_control(v: Vocab, tid: int) -> None:
    v.attrs[tid] |= ATTR_CONTROL


def _auto_special(v: Vocab) -> None:
    """EOT / EOM / FIM tokens found by their text when the metadata does not name them."""
    for attr, texts in (("eot", EOT_TEXTS), ("eom", EOM_TEXTS), *FIM_TEXTS.items()):
        if v.special.get(attr) is not None:
            continue
        found = [v.token_to_id[t] for t in texts if t in v.token_to_id]
        if found:
            tid = found[0]
            v.special[attr] = tid
            _promote_control(v, tid)
    # control tokens whose text says "unused" are unused
    for tid in np.nonzero(v.attrs & ATTR_CONTROL)[0]:
        if "unused" in v.tokens[tid]:
            v.attrs[tid] |= ATTR_UNUSED


def _eog(v: Vocab) -> None:
    eog = {v.special[k] for k in ("fim_pad", "fim_rep", "fim_sep") if v.special[k] is not None}
    for text in EOG_TEXTS:
        tid = v.token_to_id.get(text)
        if tid is not None:
            eog.add(tid)
            _promote_control(v, tid)
    for text in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):   # gpt-oss
        if text in v.token_to_id:
            v.attrs[v.token_to_id[text]] = ATTR_USER_DEFINED
    eog |= {v.special[k] for k in ("eos", "eot", "eom") if v.special[k] is not None}
    texts = {v.tokens[t]: t for t in eog if 0 <= t < v.n_tokens}
    if "<|end|>" in texts and (("<|return|>" in texts and "<|call|>" in texts)
                               or (("<|call|>" in texts or "<|calls|>" in texts) and "<|flush|>" in texts)):
        eog.discard(texts["<|end|>"])
        v.attrs[texts["<|end|>"]] = ATTR_USER_DEFINED
    if "</s>" in texts and ("<|tool_response>" in texts or "<|plamo:eos|>" in texts):
        eog.discard(texts["</s>"])
        v.attrs[texts["</s>"]] = ATTR_NORMAL
    v.eog_ids = frozenset(eog)


def _special_order(v: Vocab) -> None:
    """Control, user-defined and unknown tokens, longest UTF-8 text first (ties: lower id first)."""
    ids = np.nonzero(v.attrs & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))[0].tolist()
    v.special_order = sorted(ids, key=lambda i: (-len(v.tokens[i].encode("utf-8")), i))


def _strip_attrs(v: Vocab) -> None:
    """LSTRIP / RSTRIP that llama.cpp sets by model name (the GGUF does not carry them)."""
    model_name = str(v.meta.get("general.name") or "").lower()
    arch = str(v.meta.get("general.architecture") or "")
    pre = str(v.meta.get("tokenizer.ggml.pre") or "")

    def set_attr(text: str, bit: int, on: bool) -> None:
        tid = v.token_to_id.get(text)
        if tid is None:
            return
        v.attrs[tid] = (v.attrs[tid] | bit) if on else (v.attrs[tid] & ~bit)

    if any(s in pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or \
            any(s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
        set_attr("<mask>", ATTR_LSTRIP, True)
    elif "phi-3" in model_name or "phi3" in model_name:
        for tid in v.special_order:
            v.attrs[tid] |= ATTR_RSTRIP
        set_attr("</s>", ATTR_RSTRIP, True)
        for text in ("<unk>", "<s>", "<|endoftext|>"):
            set_attr(text, ATTR_RSTRIP, False)
    elif "modern-bert" in model_name:
        set_attr("[MASK]", ATTR_LSTRIP, True)
