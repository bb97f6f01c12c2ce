"""`tokenizer.ggml.pre` names -> llama.cpp's pre-tokenizer families, their flags and regexes.

Facts from llama-vocab.cpp (`load` and `llm_tokenizer_bpe`). The regexes are written as
llama.cpp runs them (ECMAScript syntax with \\p{..} classes that pretokenize.py maps onto
llama.cpp's "collapsed" one-character-per-category text). Names llama.cpp does not know make
llama.cpp refuse the file; we warn, name the family we use instead, and go on with "default".
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

# ---- pieces shared by many families -----------------------------------------------------
_CONTR = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3 = _CONTR + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = _CONTR + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN35 = (_CONTR + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
_UPPER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"
_LOWER = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_LOOK_UP = r"((?=[\p{L}])([^a-z]))"       # llama.cpp's stand-in for an uppercase letter
_LOOK_LO = r"((?=[\p{L}])([^A-Z]))"       # ... and for a lowercase one
_TAIL_SLASH = r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_PUNCT_WORD = '[!"' + r"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
_DS3 = _PUNCT_WORD + r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# letters of deepseek-llm's tokenizer.json, as code points (some are NFC-unstable, so escaped)
_DEEPSEEK_LETTERS = (
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-"
    "\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d"
    "\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17"
    "\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb"
    "\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
_BLOOM = r" ?[^(\s|.,!?…。，、।۔،)]+"

# Custom splitters (llama.cpp implements these by hand; pretokenize.py does the same).
KIMI_K2 = r"\p{Han}+"
AFMOE_DIGITS = r"\p{AFMoE_digits}"
TINY_AYA_DIGITS = r"\d{1,3}(?=(?:\d{3})*\b)"
NEWLINES = r"[^\n]+|[\n]+"

REGEXES: dict[str, list[str]] = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "llama3": [LLAMA3],
    "jais2": [_CONTR + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
              + "".join(rf"|\s{{{n}}}(?!\S)" for n in (512, 256, 128, 64, 32, 16, 8, 4)) + r"|\s{1,2}(?!\S)|\s{1}"],
    "deepseek-llm": [
        r"[\r\n]",
        _DEEPSEEK_LETTERS,
        r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
        r"\s+$",
        r"[一-龥ࠀ-一가-퟿]+",
        r"\p{N}+",
    ],
    "deepseek3": [r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+", _DS3],
    "spark2_5": [r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+", _PUNCT_WORD + r"| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+",
                 r"\p{N}"],
    "youtu": [r"[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
              r"[^\r\n\p{L}\p{N}]?" + _UPPER + "*" + _LOWER + "+" + _CONTR + "?|[^\\r\\n\\p{L}\\p{N}]?"
              + _UPPER + "+" + _LOWER + "*" + _CONTR + r"?|\p{N}" + _TAIL_SLASH],
    "deepseek-coder": [r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
               r"[0-9][0-9][0-9]"],
    "starcoder": [r"\p{N}", GPT2],
    "gpt2": [GPT2],
    "qwen2": [QWEN2],
    "qwen35": [QWEN35],
    "bloom": [_BLOOM],
    "chatglm4": [LLAMA3],
    "viking": [_BLOOM, r"\p{N}"],
    "tekken": [r"[^\r\n\p{L}\p{N}]?" + _LOOK_UP + "*" + _LOOK_LO + r"+|[^\r\n\p{L}\p{N}]?" + _LOOK_UP + "+"
               + _LOOK_LO + r"*|\p{N}" + _TAIL_SLASH],
    "chameleon": [r"<sentinel:[0-9]+>", r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", r"([\t\n]|    |  )", r"\p{N}",
                  r"[\p{P}!-/:-@\[-`{-~]", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"],
    "gpt4o": [r"[^\r\n\p{L}\p{N}]?" + _LOOK_UP + "*" + _LOOK_LO + "+" + _CONTR + r"?|[^\r\n\p{L}\p{N}]?"
              + _LOOK_UP + "+" + _LOOK_LO + "*" + _CONTR + r"?|\p{N}{1,3}" + _TAIL_SLASH],
    "granite-emb-multi": [r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+" + _CONTR
                          + r"?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*"
                          + _CONTR + r"?|\p{N}{1,3}" + _TAIL_SLASH],
    "tiny_aya": [TINY_AYA_DIGITS, r"[^\r\n\p{L}\p{N}]?" + _UPPER + "*" + _LOWER + "+" + _CONTR
                 + r"?|[^\r\n\p{L}\p{N}]?" + _UPPER + "+" + _LOWER + "*" + _CONTR + r"?|\p{N}{1,3}" + _TAIL_SLASH],
    "kimi-k2": [KIMI_K2],
    "superbpe": [r"\p{N}+", r"(?=(\d{3})+(?!\d))"],
    "bailingmoe": [r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"],
    "seed-coder": [_CONTR + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "ufakzeka": [r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "afmoe": [AFMOE_DIGITS, r"[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+", _DS3],
    "laguna": [NEWLINES, QWEN2],
    "exaone-moe": [_CONTR + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?"
                   r"|\s*[\r\n]|\s+(?!\S)|\s+"],
    "gemma4": [NEWLINES],
    "minicpm5": [r"\p{N}{1,3}", _CONTR + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+"],
}
REGEXES["grok-2"] = REGEXES["qwen2"]

# Families that work on raw UTF-8 with SentencePiece-style "▁" spaces and <0xXX> byte tokens.
RAW_UTF8 = {"gemma4", "sarvam-moe"}
REGEXES["sarvam-moe"] = [NEWLINES]


@dataclass(frozen=True)
class PreSpec:
    family: str
    flags: dict = field(default_factory=dict)

    @property
    def regexes(self) -> list[str]:
        return REGEXES[self.family]

    @property
    def byte_encode(self) -> bool:
        return self.family not in RAW_UTF8


_NO_CLEAN = {"clean_spaces": False}
# name -> (family, flags that differ from the BPE defaults)
_NAMES: dict[str, tuple[str, dict]] = {
    "default": ("default", {}),
    "minicpm5": ("minicpm5", {"ignore_merges": True}),
    **{n: ("llama3", {"ignore_merges": True, "add_bos": True})
       for n in ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                 "jina-v5-nano")},
    "deepseek-llm": ("deepseek-llm", _NO_CLEAN),
    "deepseek-coder": ("deepseek-coder", _NO_CLEAN),
    "deepseek-v3": ("deepseek3", _NO_CLEAN),
    "spark2_5": ("spark2_5", _NO_CLEAN),
    "youtu": ("youtu", {"clean_spaces": False, "ignore_merges": True}),
    "falcon": ("falcon", {}),
    "mpt": ("gpt2", {}),
    "starcoder": ("starcoder", {}),
    **{n: ("gpt2", {}) for n in ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                                 "a.x-4.0", "mellum", "modern-bert", "exaone4", "olmo", "jais", "jina-v1-en",
                                 "jina-v2-code", "roberta-bpe")},
    "jais-2": ("jais2", {}),
    "gemma4": ("gemma4", {"escape_whitespaces": True}),
    "granite-embed-multi-311m": ("gemma4", {"escape_whitespaces": True}),
    "sarvam-moe": ("sarvam-moe", {"escape_whitespaces": True, "clean_spaces": False}),
    "refact": ("starcoder", {}),
    "command-r": ("starcoder", _NO_CLEAN),
    **{n: ("qwen2", _NO_CLEAN) for n in ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2")},
    "qwen35": ("qwen35", _NO_CLEAN),
    "stablelm2": ("qwen2", {}),
    "megrez": ("qwen2", {}),
    "dbrx": ("llama3", {}),
    "smaug-bpe": ("llama3", {}),
    "poro-chat": ("bloom", _NO_CLEAN),
    "chatglm-bpe": ("chatglm4", {"no_bos": True}),
    "glm4": ("chatglm4", {"no_bos": True, "ignore_merges": True}),
    "glm5": ("chatglm4", {"no_bos": True, "ignore_merges": True}),
    "viking": ("viking", _NO_CLEAN),
    "tekken": ("tekken", {"clean_spaces": False, "ignore_merges": True, "add_bos": True}),
    "smollm": ("starcoder", _NO_CLEAN),
    "codeshell": ("starcoder", {}),
    "bloom": ("bloom", {}),
    "gpt3-finnish": ("bloom", {}),
    "exaone": ("starcoder", {}),
    "exaone-moe": ("exaone-moe", {}),
    "chameleon": ("chameleon", {"add_bos": True, "clean_spaces": False}),
    "minerva-7b": ("starcoder", {}),
    **{n: ("gpt4o", _NO_CLEAN) for n in ("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2")},
    "granite-embed-multi-97m": ("granite-emb-multi", {"clean_spaces": False, "ignore_merges": True}),
    "tiny_aya": ("tiny_aya", _NO_CLEAN),
    "cohere2moe": ("tiny_aya", _NO_CLEAN),
    "superbpe": ("superbpe", _NO_CLEAN),
    "trillion": ("gpt2", _NO_CLEAN),
    "granite-docling": ("gpt2", _NO_CLEAN),
    **{n: ("bailingmoe", _NO_CLEAN) for n in ("bailingmoe", "bailingmoe2", "llada-moe")},
    "seed-coder": ("seed-coder", _NO_CLEAN),
    "hunyuan": ("qwen2", _NO_CLEAN),
    **{n: ("deepseek3", _NO_CLEAN) for n in ("hunyuan-dense", "hy_v4", "joyai-llm")},
    "kimi-k2": ("kimi-k2", _NO_CLEAN),
    "ufakzeka": ("ufakzeka", _NO_CLEAN),
    "grok-2": ("grok-2", _NO_CLEAN),
    "afmoe": ("afmoe", _NO_CLEAN),
    "laguna": ("laguna", _NO_CLEAN),
    "solar-open": ("qwen2", _NO_CLEAN),
    "mellum2": ("starcoder", {}),
}


def resolve_pre(name: str, where: str = "GGUF file") -> PreSpec:
    """The family llama.cpp uses for `tokenizer.ggml.pre` = name (empty: default, as llama.cpp)."""
    if not name:
        warnings.warn(f"{where}: no tokenizer.ggml.pre; using the 'default' pre-tokenizer "
                      "(llama.cpp does the same and warns that quality may suffer)", stacklevel=3)
        return PreSpec("default")
    if name not in _NAMES:
        warnings.warn(f"{where}: unknown pre-tokenizer {name!r} (llama.cpp refuses this file); "
                      "using the 'default' pre-tokenizer, tokens may differ from the model's own", stacklevel=3)
        return PreSpec("default")
    family, flags = _NAMES[name]
    return PreSpec(family, dict(flags))


def known_pre_names() -> list[str]:
    return sorted(_NAMES)
