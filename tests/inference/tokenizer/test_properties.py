"""Round trips and the incremental decoder, on random text (hypothesis).

Rules, as llama.cpp: byte-level BPE gives the text back exactly. SPM turns spaces into "▁" and
back, so a "▁" in the text comes back as a space; with add_space_prefix (the tiny vocabularies)
the first piece's leading space is dropped, which gives the text back without BOS, while after a
BOS (skipped when special=False) the added space stays: decode = " " + text. Byte-level BPE drops
bytes that have no token (llama.cpp does too).
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TRICKY = ("aZé1 \t\n\r\u00a0'sS,.!?😀🚀👍🏽\u0301今天気한글Привет\u200b\x00\x7f\ufffd\U0010fffd"
          "<|im_start|><think></think><end_of_turn>  \n\n\t\t▁")
texts = st.one_of(st.text(max_size=60), st.text(alphabet=TRICKY, max_size=60))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _incremental(tok, ids, special=True):
    dec = tok.decoder(special=special)
    chunks = [dec.add(i) for i in ids]
    chunks.append(dec.flush())
    return chunks


def _representable(tok, text: str) -> str:
    """The text less the bytes that have no token: SmolLM2 lacks 0x04, 0x06, 0x13, 0x14, 0x16,
    0x1D and 0xF1, 0xF2 (U+40000..U+BFFFF), which llama.cpp drops without a word."""
    from inference.tokenizer.bpe import BYTE_TO_CHAR

    keep = bytes(b for b in text.encode() if BYTE_TO_CHAR[b] in tok.vocab.token_to_id)
    return keep.decode("utf-8", errors="replace")


@SETTINGS
@given(texts)
def test_bpe_round_trip(qwen2_tok, smollm2_tok, text):
    for tok in (qwen2_tok, smollm2_tok):
        want = _representable(tok, text)
        bos = tok.token_text(tok.bos_id) if tok.add_bos else ""
        ids = tok.encode(text, add_bos=True, special=False)
        assert tok.decode(ids, special=False) == want
        assert tok.decode(ids, special=True) == bos + want
        ids = tok.encode(text, add_bos=True, special=True)       # control texts become control ids,
        assert tok.decode(ids, special=True) == bos + want       # which print their text again


def test_bpe_missing_bytes_are_dropped_like_llama_cpp(smollm2_tok, qwen2_tok):
    t = smollm2_tok
    cont = t.token_id("\u0122")                      # byte 0x80, the continuation byte
    assert t.encode("a\x04b\U00040000c") == [t.token_id("a"), t.token_id("b"), cont, cont, cont, t.token_id("c")]
    assert smollm2_tok.decode(smollm2_tok.encode("a\x04b\U00040000c")) == "ab\ufffd\ufffd\ufffdc"
    assert qwen2_tok.decode(qwen2_tok.encode("a\x04b\U00040000c", add_bos=False)) == "a\x04b\U00040000c"


@SETTINGS
@given(texts)
def test_spm_round_trip(gemma3_tok, tiny_tok, text):
    def norm(s: str) -> str:
        return s.replace("\u2581", " ")

    ids = gemma3_tok.encode(text, add_bos=True)
    assert ids[0] == gemma3_tok.bos_id
    assert gemma3_tok.decode(ids, special=False) == norm(text)
    # The tiny vocabulary has no "▁" token: a space that joins no word comes back through byte
    # tokens as "▁" itself, and then the added prefix space is not stripped either.
    ids = tiny_tok.encode(text, add_bos=False)
    out = norm(tiny_tok.decode(ids, special=False))
    if ids and tiny_tok.token_text(ids[0]).startswith("\u2581"):
        assert out == norm(text)
    else:
        assert out in (norm(text), " " + norm(text))
    with_bos = norm(tiny_tok.decode(tiny_tok.encode(text, add_bos=True), special=False))
    assert with_bos == (" " + norm(text) if text else "")


@SETTINGS
@given(texts)
def test_incremental_decoder(qwen2_tok, gemma3_tok, tiny_tok, text):
    for tok in (qwen2_tok, gemma3_tok, tiny_tok):
        ids = tok.encode(text, add_bos=True, special=True)
        for special in (True, False):
            chunks = _incremental(tok, ids, special)
            assert "".join(chunks) == tok.decode(ids, special=special)
            if "\ufffd" not in text:
                assert not any("\ufffd" in c for c in chunks)   # never half a character


@SETTINGS
@given(st.lists(st.integers(0, 511), max_size=40))
def test_incremental_decoder_on_any_ids(tiny_tok, ids):
    """Random byte tokens make invalid UTF-8: still the same text as decode, with U+FFFD."""
    assert "".join(_incremental(tiny_tok, ids)) == tiny_tok.decode(ids)


def test_multibyte_characters_come_out_whole(qwen2_tok, gemma3_tok, tiny_tok):
    text = "😀🚀 今天 👍🏽 é \U000f0000\U000f0001 Ω"       # private-use characters force byte tokens
    for tok in (qwen2_tok, gemma3_tok, tiny_tok):
        ids = tok.encode(text, add_bos=False)
        pieces = [tok.token_to_piece(i) for i in ids]
        assert sum(1 for p in pieces if p and not _is_utf8(p)) >= 4, "expected partial-UTF-8 byte tokens"
        chunks = _incremental(tok, ids)
        assert "".join(chunks) == tok.decode(ids)
        assert tok.decode(ids).replace("\u2581", " ").removeprefix(" ") == text   # tiny: see above
        assert not any("\ufffd" in c for c in chunks)
        if not tok.vocab.add_space_prefix:
            # after each id, exactly the longest complete UTF-8 prefix of the bytes so far is out
            for k in range(len(ids)):
                data = b"".join(pieces[: k + 1])
                n = len(data)
                while not _is_utf8(data[:n]):
                    n -= 1
                assert "".join(chunks[: k + 1]) == data[:n].decode()


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


SPM_CHARS = ("a", "b", "\u2581", "\x00", "\x01", "\uffff", "é")


@SETTINGS
@given(st.lists(st.text(alphabet=SPM_CHARS, max_size=6), min_size=1, max_size=8))
def test_spm_cut_characters_match_a_scan_of_each_token(tokens):
    """The characters before an inner "▁" (found in one pass over the joined vocabulary, with a
    separator no token holds) are those a token-by-token scan finds."""
    from inference.tokenizer.spm import SPACE, _before_space

    want = {t[j - 1] for t in tokens for j in range(1, len(t)) if t[j] == SPACE}
    assert _before_space(tokens) == want


@SETTINGS
@given(st.text(alphabet=TRICKY + "<>|_/unused", max_size=80), st.booleans())
def test_special_texts_present_are_every_one_in_the_text(gemma3_tok, qwen2_tok, text, parse_special):
    """The lazily grown prefix tree finds exactly the special texts that occur in the text."""
    from inference.tokenizer.special import SpecialSplitter
    from inference.tokenizer.vocab import ATTR_CONTROL, ATTR_UNKNOWN

    for tok in (gemma3_tok, qwen2_tok):
        v = tok.vocab
        sp = SpecialSplitter(v)
        skip = 0 if parse_special else ATTR_CONTROL | ATTR_UNKNOWN
        want = [t for t in v.special_order if not v.attrs[t] & skip and v.tokens[t] in text]
        assert sp.present(text, parse_special) == want
        assert sp.present(text, parse_special) == want            # the grown tree, visited again
