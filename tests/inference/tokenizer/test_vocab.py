"""Vocabulary facts (special ids, end-of-generation, attributes), the special-token split,
clean-up of spaces, merge loops and SPM cutting against their straightforward versions."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.errors import TokenizerError
from inference.tokenizer import Tokenizer, bpe, spm
from inference.tokenizer.detok import clean_spaces
from inference.tokenizer.vocab import ATTR_CONTROL, ATTR_UNUSED, load_vocab
from tests.conftest import golden_dir

FIXTURE_OK = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _with_meta(tok: Tokenizer, **changes) -> Tokenizer:
    meta = dict(tok.vocab.meta)
    meta.update(changes)
    return Tokenizer(load_vocab(meta))


def test_special_ids_and_end_of_generation(smollm2_tok, gemma3_tok, qwen2_tok):
    s = smollm2_tok
    assert (s.bos_id, s.eos_id, s.add_bos) == (1, 2, False)
    assert s.eot_id == s.token_id("<|im_end|>")
    assert s.is_eog(s.token_id("<|im_end|>")) and s.is_eog(s.token_id("<|endoftext|>"))
    assert not s.is_eog(s.token_id("<|im_start|>")) and not s.is_eog(s.token_id("Hello"))
    g = gemma3_tok
    assert (g.bos_id, g.eos_id, g.n_vocab) == (2, 1, 262144)
    assert g.eot_id == g.token_id("<end_of_turn>") == 106
    assert g.is_eog(1) and g.is_eog(106) and not g.is_eog(105)
    q = qwen2_tok
    assert q.eos_id == q.token_id("<｜end▁of▁sentence｜>") and q.is_eog(q.eos_id)
    for fim in ("<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"):      # llama.cpp stops on these too
        assert q.is_eog(q.token_id(fim))


def test_unused_control_tokens_print_only_with_special(gemma3_tok):
    g = gemma3_tok
    tid = g.token_id("<unused0>")
    assert g.vocab.attrs[tid] & ATTR_UNUSED and g.vocab.attrs[tid] & ATTR_CONTROL
    assert g.decode([tid]) == "<unused0>" and g.decode([tid], special=False) == ""
    assert g.token_to_piece(g.token_id("\n\n")) == b"\n\n"                # user-defined: raw text
    assert g.token_to_piece(g.token_id("\u2581spaces")) == b" spaces"


def test_out_of_range_ids(smollm2_tok):
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        smollm2_tok.decode([1, 49152])
    with pytest.raises(TokenizerError):
        smollm2_tok.token_text(-1)


def test_bad_vocabularies(smollm2_tok):
    with pytest.raises(TokenizerError, match="not supported"):
        _with_meta(smollm2_tok, **{"tokenizer.ggml.model": "bert"})
    with pytest.raises(TokenizerError, match="tokenizer.ggml.tokens"):
        _with_meta(smollm2_tok, **{"tokenizer.ggml.tokens": []})
    with pytest.warns(UserWarning, match="unknown pre-tokenizer 'brand-new'"):
        t = _with_meta(smollm2_tok, **{"tokenizer.ggml.pre": "brand-new"})
    assert t.vocab.pre_type == "default"


def test_special_split_longest_first_and_strip(tiny_tok):
    # phi-3 models: llama.cpp strips whitespace right of special tokens, except after <s>
    t = _with_meta(tiny_tok, **{"general.name": "Phi-3 mini"})
    s, e = t.token_id("<s>"), t.token_id("</s>")
    assert t.specials.split("a</s>  \n b<s> c", True) == ["a", e, "b", s, " c"]
    assert t.specials.split("a</s>  b", False) == ["a</s>  b"]          # control text stays text
    assert tiny_tok.specials.split("a</s>  b", True) == ["a", e, "  b"]


def test_special_partition_is_longest_token_first(qwen2_tok):
    q = qwen2_tok
    # "<|fim_pad|>" contains no other special text; "<think>" is user-defined: split even with special=False
    frags = q.specials.split("x<think>y<|fim_pad|>z", False)
    assert frags == ["x", q.token_id("<think>"), "y<|fim_pad|>z"]
    frags = q.specials.split("x<think>y<|fim_pad|>z", True)
    assert frags == ["x", q.token_id("<think>"), "y", q.token_id("<|fim_pad|>"), "z"]


def _llama_clean(text: bytes) -> bytes:
    """llama.cpp's three in-place passes of detokenize (clean_spaces), transcribed."""
    t = bytearray(text)
    total = len(t)
    for pass_no in (1, 2, 3):
        n, total = total, (1 if total else 0)
        i = 1
        while i < n:
            x = t[i]
            if pass_no == 1 and t[i - 1] == 32 and x in b"?!.,":
                total -= 1
            if pass_no == 2 and x == 39 and i + 1 < n and t[i - 1] == 32 and t[i + 1] == 32:
                total -= 1
                i += 1
                t[i] = 0
            if pass_no == 3 and t[i - 1] == 32 and x == 39 and i + 1 < n:
                x1 = t[i + 1]
                if x1 in b"sm":
                    total -= 1
                elif i + 2 < n and (x1, t[i + 2]) in ((114, 101), (118, 101)):
                    total -= 1
            t[total] = x
            total += 1
            i += 1
    return bytes(t[:total])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=30).map(lambda b: bytes(b" 'smrevtd?!.,a"[c % 14] for c in b)))
def test_clean_spaces_equals_llama_cpp(data):
    assert clean_spaces(data) == _llama_clean(data)


@pytest.fixture(scope="module")
def gpt2_tok(qwen2_tok):
    t = _with_meta(qwen2_tok, **{"tokenizer.ggml.pre": "gpt-2"})        # gpt-2 cleans up spaces
    assert t.vocab.clean_spaces
    return t


@FIXTURE_OK
@given(st.text(alphabet=" 'smrevtd?!.,aé😀\n", max_size=40))
def test_incremental_decoder_with_clean_spaces(gpt2_tok, text):
    t = gpt2_tok
    ids = t.encode(text, add_bos=False)
    dec = t.decoder()
    out = "".join(dec.add(i) for i in ids) + dec.flush()
    assert out == t.decode(ids) == _llama_clean(text.encode()).decode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abcab"), min_size=0, max_size=60), st.integers(0, 2**32))
def test_bpe_heap_merge_equals_simple(syms, seed):
    rng = random.Random(seed)
    pairs = [(a, b) for a in "abc" for b in "abc"] + [("ab", "c"), ("a", "bc"), ("ab", "ab"), ("c", "ab"), ("abc", "a")]
    ranks = {p: rng.randrange(50) * 100 + i for i, p in enumerate(pairs) if rng.random() < 0.7}
    simple = syms[:]
    while True:                       # the definition: lowest rank, leftmost, one merge at a time
        cands = [(ranks[(simple[i], simple[i + 1])], i) for i in range(len(simple) - 1)
                 if (simple[i], simple[i + 1]) in ranks]
        if not cands:
            break
        _, i = min(cands)
        simple[i:i + 2] = [simple[i] + simple[i + 1]]
    assert bpe.merge(syms[:], ranks) == simple
    assert bpe._merge_heap(syms[:], ranks) == simple if syms else True


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("ab▁"), max_size=60), st.integers(0, 2**32))
def test_spm_heap_merge_equals_simple(syms, seed):
    rng = random.Random(seed)
    vocab = sorted({"".join(rng.choice("ab▁") for _ in range(rng.randint(2, 4))) for _ in range(30)})
    t2i = {v: i for i, v in enumerate(vocab)}
    scores = [float(rng.randrange(5)) for _ in vocab]                  # many ties
    simple = syms[:]
    while True:
        cands = [(-scores[t2i[simple[i] + simple[i + 1]]], i) for i in range(len(simple) - 1)
                 if simple[i] + simple[i + 1] in t2i]
        if not cands:
            break
        _, i = min(cands)
        simple[i:i + 2] = [simple[i] + simple[i + 1]]
    assert spm.merge(syms[:], t2i, scores, len(vocab)) == simple
    assert spm._merge_heap(syms[:], t2i, scores, len(vocab)) == simple if syms else True


@FIXTURE_OK
@given(st.text(alphabet="ab c>d</▁ \n'é今", max_size=80) | st.text(max_size=80))
def test_spm_cutting_equals_whole_fragment_merge(gemma3_tok, text):
    """Cut pieces merged separately == llama.cpp's merge of the whole fragment at once."""
    model = gemma3_tok.model
    out: list[int] = []
    model.encode(text, out)
    whole = spm._merge_heap(list(text.replace(" ", "\u2581")), model.token_to_id, model.scores,
                            model.vocab.n_tokens) if text else []
    ref: list[int] = []
    for sym in whole:
        tid = model.token_to_id.get(sym)
        ref += [tid] if tid is not None else model._byte_ids(sym)
    assert out == ref


def test_vocabulary_only_file_and_load_time(qwen2_tok):
    import time

    from inference.gguf_file import open_gguf

    g = open_gguf(golden_dir() / "real" / "qwen2-bpe-vocab.gguf")
    assert not g.tensors
    t0 = time.perf_counter()
    tok = Tokenizer.from_gguf(g)
    assert time.perf_counter() - t0 < 5.0       # ~0.3 s alone; generous for a busy machine
    assert tok.encode("Hello world") == qwen2_tok.encode("Hello world")
