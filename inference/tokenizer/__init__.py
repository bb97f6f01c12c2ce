"""Tokenizers that reproduce llama.cpp exactly: SentencePiece-style (`llama`) and byte-level BPE
(`gpt2`) vocabularies from GGUF metadata, with llama.cpp's pre-tokenizer regexes per
`tokenizer.ggml.pre`, special-token splitting, and (incremental) detokenization.

    tok = Tokenizer.from_gguf(gguf_file)
    ids = tok.encode("Hello", add_bos=True, special=False)
    text = tok.decode(ids)
"""
from .detok import IncrementalDecoder
from .tokenizer import Tokenizer

__all__ = ["Tokenizer", "IncrementalDecoder"]
