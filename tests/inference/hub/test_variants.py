"""Variant names from file names, and files grouped into variants (split parts, mmproj, others)."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from inference.hub.variants import (RepoFile, find_variant, group_variants, is_model_file,
                                    parse_quant, split_base)

# The quantization names llama.cpp's llama-quantize writes (LLAMA_FTYPE names), plus the
# unsloth/bartowski extras (XL, L) and the float types.
QUANTS = ["Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q3_K_XL", "Q4_0", "Q4_1", "Q4_K_S",
          "Q4_K_M", "Q4_K_L", "Q4_K_XL", "Q5_0", "Q5_1", "Q5_K_S", "Q5_K_M", "Q6_K", "Q6_K_L",
          "Q8_0", "Q8_K_XL", "Q4_0_4_4", "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M",
          "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_XS", "IQ4_NL", "TQ1_0", "TQ2_0", "F16",
          "BF16", "F32", "MXFP4_MOE"]
# Model names as repositories spell them: letters, digits, dots, sizes; never a quant token, and
# never "UD" in any case (a stem ending in "-Ud" before "-Q2_K" is unsloth's UD-Q2_K spelling).
word = st.from_regex(r"[A-Za-z][a-z]{1,8}", fullmatch=True).filter(lambda w: w.lower() != "ud")
size = st.from_regex(r"[0-9]{1,3}(\.[0-9])?[BMbm]", fullmatch=True)
stem = st.lists(st.one_of(word, size, st.sampled_from(["Instruct", "it", "A3B", "v0.1", "Qwen3"])),
                min_size=1, max_size=5).map("-".join)


@given(stem, st.sampled_from(QUANTS), st.sampled_from(["-", "."]), st.booleans(), st.booleans())
@settings(max_examples=150)
def test_quant_is_found_in_any_spelling(name, quant, sep, lower, ud):
    q = quant.lower() if lower else quant
    q = f"UD-{q}" if ud and sep == "-" else q
    got_name, got_quant = parse_quant(f"{name}{sep}{q}.gguf")
    assert got_quant == quant
    assert got_name == (f"UD-{quant}" if ud and sep == "-" else quant)


@given(stem, st.sampled_from(QUANTS), st.integers(1, 40), st.booleans())
@settings(max_examples=100)
def test_split_parts_form_one_variant_with_the_total_size(name, quant, count, in_folder):
    folder = f"{quant}/" if in_folder else ""
    sizes = [1000 + 7 * i for i in range(count)]
    files = [RepoFile(f"{folder}{name}-{quant}-{i + 1:05d}-of-{count:05d}.gguf", s)
             for i, s in enumerate(sizes)]
    files.reverse()          # the listing order must not matter
    files += [RepoFile("README.md", 10), RepoFile(f"mmproj-{name}-F16.gguf", 5000),
              RepoFile(".gitattributes", 3), RepoFile(f"{name}.imatrix", 99)]
    vs = group_variants(files)
    assert len(vs) == 1
    v = vs[0]
    assert (v.name, v.quant, v.size, len(v.files)) == (quant, quant, sum(sizes), count)
    assert [f.path for f in v.files] == sorted(f.path for f in files[:count])
    assert v.complete


@given(st.lists(st.tuples(st.sampled_from(QUANTS), st.integers(1, 10**12)), min_size=1,
                max_size=12, unique_by=lambda t: t[0]))
def test_variants_are_sorted_by_size(pairs):
    vs = group_variants([RepoFile(f"Model-{q}.gguf", s) for q, s in pairs])
    assert [v.size for v in vs] == sorted(s for _, s in pairs)
    assert {v.name for v in vs} == {q for q, _ in pairs}


def test_known_repository_layouts():
    files = [
        RepoFile("Kimi-Linear-48B-A3B-Instruct.Q4_K_M.gguf", 29_700_000_000, "a" * 64),
        RepoFile("UD-Q2_K_XL/Kimi-UD-Q2_K_XL-00002-of-00002.gguf", 9_000_000_000),
        RepoFile("UD-Q2_K_XL/Kimi-UD-Q2_K_XL-00001-of-00002.gguf", 10_000_000_000),
        RepoFile("BF16/Kimi-BF16-00001-of-00003.gguf", 40_000_000_000),
        RepoFile("BF16/Kimi-BF16-00002-of-00003.gguf", 40_000_000_000),   # part 3 missing
        RepoFile("mmproj-BF16.gguf", 800_000_000),
        RepoFile("ggml-model-iq4_xs.gguf", 25_000_000_000),
        RepoFile("model.safetensors", 1),
    ]
    vs = group_variants(files)
    assert [(v.name, v.quant, v.size) for v in vs] == [
        ("UD-Q2_K_XL", "Q2_K_XL", 19_000_000_000),
        ("IQ4_XS", "IQ4_XS", 25_000_000_000),
        ("Q4_K_M", "Q4_K_M", 29_700_000_000),
        ("BF16", "BF16", 80_000_000_000),
    ]
    assert [f.path.split("-")[-3] for f in vs[0].files] == ["00001", "00002"]
    assert not vs[3].complete and vs[0].complete
    assert vs[2].files[0].sha256 == "a" * 64
    assert find_variant(vs, "q2_k_xl") is vs[0]          # the only Q2_K_XL, by its quant
    assert find_variant(vs, "ud-q2_k_xl") is vs[0]
    assert find_variant(vs, "Q8_0") is None


def test_two_models_with_one_quant_are_told_apart():
    vs = group_variants([RepoFile("base-Q4_K_M.gguf", 10), RepoFile("chat-Q4_K_M.gguf", 20)])
    assert [v.name for v in vs] == ["Q4_K_M (base-Q4_K_M)", "Q4_K_M (chat-Q4_K_M)"]


def test_names_without_a_quant_and_non_models():
    assert parse_quant("model.gguf") == ("model", "")
    assert parse_quant("Qwen3-4B.gguf") == ("Qwen3-4B", "")      # Qwen3 is not a quant token
    assert split_base("a/b-00003-of-00010.gguf") == ("a/b", 3)
    assert not is_model_file("mmproj-model-f16.gguf")
    assert not is_model_file("model.gguf.part") and is_model_file("dir/Model.GGUF")
    assert re.fullmatch(r"Q\d_K_M", parse_quant("x/y-Q5_K_M-00001-of-00002.gguf")[0])
