"""Sessions: prefix reuse, chunked and cancellable prefill, context limits, save/restore.

Outside truth: the model's own one-batch logits (which the architecture tests tie to llama.cpp's
golden outputs) and llama.cpp's greedy continuations in ../shared/golden/ref.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from functools import lru_cache

import numpy as np
import pytest

from inference import ContextOverflowError
from inference import engine as engine_module
from inference import interrupt
from inference.engine import Engine, Generation, SessionFileError, weight_bytes_per_token
from inference.models.base import KV
from inference.sampling import GREEDY, SamplingParams
from tests.conftest import golden_dir

ARCHS = ["tiny-llama-F16", "tiny-gemma3-F16", "tiny-kimi-linear-F16", "tiny-step35-F16"]
# chunked evaluation adds float32 rounding in a different order than one batch
RTOL = 2e-4


@lru_cache(maxsize=None)
def engine(stem: str) -> Engine:
    return Engine.load(golden_dir() / "models" / f"{stem}.gguf")


def ref(stem: str):
    return np.load(golden_dir() / "ref" / f"{stem}.npz")


def prompt(stem: str, n: int) -> list[int]:
    return [int(t) for t in ref(stem)["tokens"][:n]]


def fresh_logits(stem: str, tokens) -> np.ndarray:
    """Next-token logits after `tokens`, from an empty state in one batch."""
    return engine(stem).model.logits(tokens)[-1]


def assert_same_logits(a, b, what=""):
    scale = float(np.std(b))
    np.testing.assert_allclose(a, b, rtol=0, atol=RTOL * scale * 10, err_msg=what)
    assert int(np.argmax(a)) == int(np.argmax(b)), what


# --- prefill ----------------------------------------------------------------------------------
@pytest.mark.parametrize("stem", ARCHS)
def test_chunked_prefill_equals_one_batch(stem, monkeypatch):
    monkeypatch.setattr(engine_module, "PROGRESS_EVERY", float("inf"))   # chunk ends only
    tokens = prompt(stem, 70)
    s = engine(stem).session(128)
    seen = []
    r = s.prefill(tokens, progress=lambda d, t: seen.append((d, t)), chunk=16)
    assert (r.n_reused, r.n_evaluated, r.cancelled) == (0, 70, False)
    assert seen == [(0, 70), (16, 70), (32, 70), (48, 70), (64, 70), (70, 70)]
    assert s.tokens == tokens and s.n_past == 70
    assert_same_logits(s.logits, fresh_logits(stem, tokens))


@pytest.mark.parametrize("stem,want", [("tiny-llama-F16", 512), ("tiny-kimi-linear-F16", 2048)])
def test_the_default_chunk_is_the_models(stem, want, monkeypatch):
    """Without a chunk, prefill takes the model's prefill_chunk: kimi-linear's MLA wants 2048
    queries per decompression of its cache, the other architectures llama.cpp's 512."""
    e = engine(stem)
    assert e.model.prefill_chunk == want
    monkeypatch.setattr(type(e.model), "prefill_chunk", 20)
    sizes = []
    real = e.model.forward
    monkeypatch.setattr(e.model, "forward", lambda toks, *a, **k: sizes.append(len(toks)) or real(toks, *a, **k))
    tokens = prompt(stem, 50)
    s = e.session(64)
    s.prefill(tokens)
    assert sizes == [20, 20, 10]
    assert_same_logits(s.logits, fresh_logits(stem, tokens))


@pytest.mark.parametrize("stem", ARCHS)
def test_extending_the_prompt_continues_without_recomputing(stem):
    tokens = prompt(stem, 80)
    s = engine(stem).session(128)
    s.prefill(tokens[:50])
    r = s.prefill(tokens)
    assert (r.n_reused, r.n_evaluated) == (50, 30)
    assert_same_logits(s.logits, fresh_logits(stem, tokens))
    again = s.prefill(tokens)            # nothing new: nothing evaluated
    assert (again.n_reused, again.n_evaluated) == (80, 0)


@pytest.mark.parametrize("stem", ARCHS)
def test_a_changed_tail_reuses_what_it_can_and_stays_exact(stem):
    base = prompt(stem, 60)
    other = base[:40] + [(t + 7) % 512 for t in base[40:55]]
    s = engine(stem).session(128)
    s.prefill(base)
    r = s.prefill(other)
    st = s.state
    rewindable = all(k == "kv" for k in st.kinds.values())
    if rewindable:
        assert r.n_reused == 40
    assert r.n_reused + r.n_evaluated == len(other)
    assert s.tokens == other and s.n_past == len(other)
    assert_same_logits(s.logits, fresh_logits(stem, other))


@pytest.mark.parametrize("stem", ["tiny-kimi-linear-F16", "tiny-step35-F16"])
def test_next_turn_resumes_from_the_snapshot_at_the_end_of_the_prompt(stem):
    # a chat turn: prompt, answer (decoded token by token), then the next prompt, which repeats
    # the prompt but not the answer's exact tokens; recurrent state cannot rewind into the answer,
    # and a sliding-window ring has overwritten the window before the divergence after 100 tokens
    turn1 = prompt(stem, 40)
    s = engine(stem).session(256)
    s.prefill(turn1)
    for t in [5, 6, 7, 8, 9, 10, 11, 12, 13, 14] * 10:
        s.eval_token(t)
    turn2 = turn1 + [5, 6, 7, 99] + prompt(stem, 70)[40:]
    r = s.prefill(turn2)
    assert r.n_reused == 40, "should resume from the end of the previous prompt"
    assert_same_logits(s.logits, fresh_logits(stem, turn2))


def test_recurrent_state_without_snapshot_starts_over_and_stays_exact():
    stem = "tiny-kimi-linear-F16"
    s = engine(stem).session(128)
    s.prefill(prompt(stem, 30))
    other = [3, 4, 5] + prompt(stem, 30)[3:]
    r = s.prefill(other)
    assert r.n_reused == 0 and r.n_evaluated == 30
    assert_same_logits(s.logits, fresh_logits(stem, other))


@pytest.mark.parametrize("stem", ["tiny-llama-F16", "tiny-kimi-linear-F16"])
def test_cancel_stops_at_a_chunk_boundary_and_resumes(stem):
    tokens = prompt(stem, 64)
    s = engine(stem).session(128)
    r = s.prefill(tokens, cancel=lambda: s.n_past >= 32, chunk=16)   # two chunks run, then stop
    assert r.cancelled and r.n_evaluated == 32
    assert s.tokens == tokens[:32] and s.n_past == 32
    assert_same_logits(s.logits, fresh_logits(stem, tokens[:32]))
    r = s.prefill(tokens, chunk=16)
    assert (r.n_reused, r.n_evaluated, r.cancelled) == (32, 32, False)
    assert_same_logits(s.logits, fresh_logits(stem, tokens))


def _non_kv(state) -> dict:
    return {k: a.copy() for k, a in state.arrays.items() if state.kinds[k] != KV}


@pytest.mark.parametrize("stem", ARCHS)
def test_cancel_between_layers_undoes_the_chunk(stem):
    """A Stop seen after a chunk's first layer: the chunk is undone (recurrent states, rings and
    n_past as before it), and reading on gives the uninterrupted logits."""
    tokens = prompt(stem, 48)
    s = engine(stem).session(128)
    s.prefill(tokens[:16], chunk=16)
    before, logits = _non_kv(s.state), s.logits.copy()
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) == 2        # 1: before the chunk, 2: after its first layer

    r = s.prefill(tokens, cancel=cancel, chunk=32)
    assert r.cancelled and (r.n_reused, r.n_evaluated) == (16, 0) and len(calls) == 2
    assert s.n_past == 16 and s.tokens == tokens[:16]
    after = _non_kv(s.state)
    assert after.keys() == before.keys()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    np.testing.assert_array_equal(s.logits, logits)
    r = s.prefill(tokens, chunk=32)
    assert (r.n_reused, r.n_evaluated, r.cancelled) == (16, 32, False)
    assert_same_logits(s.logits, fresh_logits(stem, tokens))


def test_a_failure_inside_a_chunk_leaves_the_state_as_before_it():
    s = engine("tiny-kimi-linear-F16").session(128)
    tokens = prompt("tiny-kimi-linear-F16", 40)
    s.prefill(tokens[:8], chunk=8)
    before = _non_kv(s.state)

    calls = []

    def cancel():
        calls.append(1)
        if len(calls) == 2:           # after the chunk's first layer
            raise MemoryError("out of memory half-way through a chunk")
        return False

    with pytest.raises(MemoryError):
        s.prefill(tokens, cancel=cancel, chunk=32)
    assert s.n_past == 8
    for k, a in before.items():
        np.testing.assert_array_equal(s.state.arrays[k], a, err_msg=k)
    s.prefill(tokens, chunk=32)
    assert_same_logits(s.logits, fresh_logits("tiny-kimi-linear-F16", tokens))


def _fail_at_layer(k: int):
    """Hooks under which a forward fails after its first k layers (as out of memory would)."""
    def on_layer(done, n):
        if done == k:
            raise MemoryError(f"out of memory after layer {k}")
    return interrupt.watching(interrupt.Hooks(on_layer, lambda part=0.0: None))


def _per_op(monkeypatch):
    """Decode layer by layer (the decode plans run every layer in one native call, no hooks)."""
    from inference.models import gemma3, kimi_linear, llama, step35
    for m in (gemma3, kimi_linear, llama, step35):
        monkeypatch.setattr(m, "USE_PLAN", False)


@pytest.mark.parametrize("stem", ARCHS)
def test_a_decode_step_that_fails_half_way_leaves_a_session_that_decodes_right(stem, monkeypatch):
    """A decode step that fails after some layers (recurrent states and rings half-written):
    the session goes back to its last prompt, and the next turn gives the uninterrupted logits."""
    _per_op(monkeypatch)
    tokens = prompt(stem, 24)
    s = engine(stem).session(128)
    s.prefill(tokens[:20], chunk=8)
    s.eval_token(tokens[20])
    with _fail_at_layer(1), pytest.raises(MemoryError):
        s.eval_token(tokens[21])
    assert s.n_past == len(s.tokens) and s.tokens == tokens[:len(s.tokens)]
    s.prefill(tokens[:22])
    s.eval_token(tokens[22])
    assert_same_logits(s.logits, fresh_logits(stem, tokens[:23]))


@pytest.mark.parametrize("stem", ["tiny-llama-F16", "tiny-kimi-linear-F16"])
def test_a_failure_after_the_state_moved_on_sets_it_back(stem, monkeypatch):
    """A forward that fails after the state took the token (in the output head, say): n_past
    matches the session's tokens again and decoding on gives the uninterrupted logits."""
    tokens = prompt(stem, 24)
    e = engine(stem)
    s = e.session(128)
    s.prefill(tokens[:20])
    forward = e.model.forward

    def failing(*a, **k):
        forward(*a, **k)
        raise MemoryError("out of memory in the output head")
    monkeypatch.setattr(e.model, "forward", failing)
    with pytest.raises(MemoryError):
        s.eval_token(tokens[20])
    monkeypatch.setattr(e.model, "forward", forward)
    assert s.n_past == len(s.tokens) and s.tokens == tokens[:len(s.tokens)]
    s.prefill(tokens[:21])
    s.eval_token(tokens[21])
    assert_same_logits(s.logits, fresh_logits(stem, tokens[:22]))


@pytest.mark.parametrize("stem", ARCHS)
def test_a_prefill_without_cancel_that_fails_half_way_can_be_read_again(stem):
    """No cancel, so no undo point: a chunk that fails after its first layer leaves the session
    at its last prompt (or empty), and reading the same tokens again gives the right logits."""
    tokens = prompt(stem, 48)
    s = engine(stem).session(128)
    s.prefill(tokens[:16], chunk=16)
    with _fail_at_layer(1), pytest.raises(MemoryError):
        s.prefill(tokens, chunk=16)
    assert s.n_past == len(s.tokens) and s.tokens == tokens[:len(s.tokens)]
    s.prefill(tokens, chunk=16)
    assert_same_logits(s.logits, fresh_logits(stem, tokens))


def test_progress_moves_between_the_layers_of_a_chunk(monkeypatch):
    monkeypatch.setattr(engine_module, "PROGRESS_EVERY", 0.0)
    stem = "tiny-llama-F16"
    n_layer = engine(stem).model.config.n_layer
    seen = []
    s = engine(stem).session(128)
    s.prefill(prompt(stem, 40), progress=lambda d, t: seen.append(d), chunk=32)
    inside = [[base + size * k // n_layer for k in range(1, n_layer)] for base, size in ((0, 32), (32, 8))]
    assert n_layer > 1 and seen == [0, *inside[0], 32, *inside[1], 40]


# --- limits and bad input ---------------------------------------------------------------------
def test_context_overflow_says_how_many_tokens_and_what_to_do():
    s = engine("tiny-llama-F16").session(64)
    with pytest.raises(ContextOverflowError, match=r"70 tokens.*64.*shorten"):
        s.prefill(list(range(1, 71)))
    with pytest.raises(ContextOverflowError, match=r"50 tokens.*20 more.*70.*64"):
        s.generate(list(range(1, 51)), SamplingParams(max_tokens=20))
    with pytest.raises(ContextOverflowError, match=r"64 tokens.*no room"):
        s.generate(list(range(1, 65)), SamplingParams())
    s.generate(list(range(1, 51)), SamplingParams(max_tokens=14))   # fits exactly


def test_bad_token_ids_are_refused_before_touching_the_state():
    from inference import TokenizerError

    s = engine("tiny-llama-F16").session(64)
    s.prefill([1, 2, 3])
    with pytest.raises(TokenizerError, match="512"):
        s.prefill([1, 2, 3, 512])
    assert s.tokens == [1, 2, 3] and s.n_past == 3
    with pytest.raises(ValueError, match="no tokens"):
        s.prefill([])


# --- stop strings (the hold-back logic, driven with arbitrary pieces) ---------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text("ab\n<>", max_size=4), max_size=12),
       st.lists(st.text("ab\n<>", min_size=1, max_size=4), max_size=3))
def test_stop_strings_cut_the_text_and_nothing_past_them_is_ever_shown(pieces, stops):
    gen = Generation(engine("tiny-llama-F16").session(16), [1], SamplingParams(stop=tuple(stops)))
    full = "".join(pieces)
    hits = [full.find(x) for x in stops if x in full]
    want = full[:min(hits)] if hits else full
    shown, stopped = "", False
    for p in pieces:
        out, stopped = gen._emit(p)
        shown += out
        assert want.startswith(shown)          # never shows what a stop string would cut
        if stopped:
            break
    if not stopped:
        shown += gen._pending                  # end of generation releases held-back text
    assert shown == want
    assert stopped == bool(hits)


# --- save / restore ---------------------------------------------------------------------------
@pytest.mark.parametrize("stem", ARCHS)
def test_restore_gives_identical_next_token_logits(stem, tmp_path):
    tokens = prompt(stem, 45)
    s = engine(stem).session(96)
    s.prefill(tokens[:40])
    for t in tokens[40:]:
        s.eval_token(t)
    path = tmp_path / "conv.lectern"
    s.save(path)
    r = type(s).restore(Engine.load(engine(stem).path), path)
    assert r.tokens == s.tokens and r.n_past == s.n_past and r.n_ctx == 96
    np.testing.assert_array_equal(r.logits, s.logits)
    for t in [17, 99, 4]:
        np.testing.assert_array_equal(r.eval_token(t), s.eval_token(t))
    # and a restored session reuses its prefix like the original
    assert r.prefill(s.tokens + [5]).n_reused == len(s.tokens)


def test_a_kimi_session_saved_with_the_old_float32_latent_cache_restores(tmp_path):
    """Before the MLA cache was float16 it was float32 holding half-rounded rows: such files load
    into the float16 cache exactly."""
    stem = "tiny-kimi-linear-F16"
    tokens = prompt(stem, 30)
    s = engine(stem).session(64)
    s.prefill(tokens)
    assert s.state.kv_type == "f16"
    kv = [k for k in s.state.arrays if k.endswith(".kv")]
    want = {k: s.state.arrays[k].copy() for k in kv}
    for k in kv:                                    # the old layout: the same values in float32
        s.state.arrays[k] = s.state.arrays[k].astype(np.float32)
    s.save(tmp_path / "old.lectern")
    r = type(s).restore(Engine.load(engine(stem).path), tmp_path / "old.lectern")
    for k in kv:
        assert r.state.arrays[k].dtype == np.float16
        np.testing.assert_array_equal(r.state.arrays[k], want[k])


def test_state_file_holds_only_the_used_part_of_the_kv_cache(tmp_path):
    s = engine("tiny-llama-F16").session(4096)
    s.prefill(prompt("tiny-llama-F16", 10))
    s.save(tmp_path / "s.npz")
    full = s.state.nbytes()
    assert (tmp_path / "s.npz").stat().st_size < full / 100


def test_a_state_file_from_another_model_is_refused(tmp_path):
    s = engine("tiny-llama-F16").session(32)
    s.prefill([1, 2, 3])
    s.save(tmp_path / "s.npz")
    with pytest.raises(SessionFileError, match="another model.*tiny-llama-F16"):
        type(s).restore(engine("tiny-llama-Q8_0"), tmp_path / "s.npz")


def test_damaged_or_foreign_state_files_get_a_clear_error(tmp_path):
    s = engine("tiny-llama-F16").session(32)
    s.prefill([1, 2, 3])
    good = tmp_path / "s.npz"
    s.save(good)
    restore = lambda p: type(s).restore(engine("tiny-llama-F16"), p)  # noqa: E731
    (tmp_path / "text").write_text("hello")
    with pytest.raises(SessionFileError, match="not a Lectern session"):
        restore(tmp_path / "text")
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(SessionFileError):
        restore(trunc)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(SessionFileError, match="not a Lectern session|damaged"):
        restore(other)
    with pytest.raises(SessionFileError, match="not found"):
        restore(tmp_path / "missing.npz")


def test_pickled_arrays_in_a_state_file_are_never_loaded(tmp_path):
    s = engine("tiny-llama-F16").session(32)
    s.prefill([1, 2, 3])
    good = tmp_path / "s.npz"
    s.save(good)
    evil = tmp_path / "evil.npz"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(evil, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "tokens.npy":
                import io
                buf = io.BytesIO()
                np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
                data = buf.getvalue()
            zout.writestr(item, data)
    with pytest.raises(SessionFileError, match="tokens is object"):
        type(s).restore(engine("tiny-llama-F16"), evil)


# --- bandwidth accounting -----------------------------------------------------------------------
def test_weight_bytes_per_token_counts_active_experts_and_one_embedding_row():
    for stem in ("tiny-llama-F16", "tiny-kimi-linear-F16"):
        m = engine(stem).model
        g = m.gguf
        total = sum(t.nbytes for t in g.tensors.values())
        got = weight_bytes_per_token(m)
        emb = g.tensors["token_embd.weight"]
        exps = sum(t.nbytes for n, t in g.tensors.items() if "_exps" in n)
        n_exp, n_used = g.arch_get("expert_count", 0), g.arch_get("expert_used_count", 0)
        tied = "output.weight" not in g.tensors
        want = total - emb.nbytes + emb.nbytes // emb.shape[0] + (emb.nbytes if tied else 0)
        if exps:
            want -= exps - exps * n_used // n_exp
        assert abs(got - want) <= len(g.tensors), stem
        assert got < total or tied


# --- memory ----------------------------------------------------------------------------------
RSS_SCRIPT = r"""
import json, re, sys
from inference.engine import Engine
e = Engine.load(sys.argv[1])
s = e.session()
s.prefill(list(range(1, 33)))
for t in (5, 6, 7):
    s.eval_token(t)
status = open("/proc/self/status").read()
kb = lambda k: int(re.search(k + r":\s+(\d+) kB", status).group(1)) * 1024
print(json.dumps({"rss": kb("VmRSS"), "peak": kb("VmHWM")}))
"""


@pytest.mark.slow
def test_weights_are_never_dequantized_wholesale(smollm2_path):
    """Resident memory after loading SmolLM2 and running a prompt stays near the file size.

    Its 135M weights as float32 would take 540 MB, far above the 98 MB file + 200 MB allowed."""
    p = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(smollm2_path)], capture_output=True,
                       text=True, timeout=1200)
    assert p.returncode == 0, p.stderr
    mem = json.loads(p.stdout)
    limit = smollm2_path.stat().st_size + 200 * 2**20
    assert mem["rss"] <= limit and mem["peak"] <= limit, (mem, limit)


# --- generation -------------------------------------------------------------------------------
def first_divergence(a, b) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def assert_follows_greedy(stem_or_engine, prompt_ids, got, want):
    """Our greedy tokens equal llama.cpp's up to the end, or up to a near tie (README rule)."""
    e = engine(stem_or_engine) if isinstance(stem_or_engine, str) else stem_or_engine
    i = first_divergence(got, want)
    if i == len(want):
        return i
    s = e.session(len(prompt_ids) + len(want) + 1)
    s.prefill(list(prompt_ids) + list(want[:i]))
    order = np.argsort(-s.logits)
    margin = float(s.logits[order[0]] - s.logits[order[1]])
    assert got[i] == order[0] and want[i] == order[1] and margin < 0.25, \
        f"step {i}: ours {got[i]}, llama.cpp {want[i]}, margin {margin:.3f}: not a near tie"
    return i


@pytest.mark.parametrize("stem", ARCHS)
def test_greedy_generation_follows_llama_cpp(stem):
    r = ref(stem)
    want = [int(t) for t in r["greedy"]]
    s = engine(stem).session(256)
    seen = []
    gen = s.generate([int(t) for t in r["tokens"]], GREEDY.with_(max_tokens=len(want)),
                     on_token=seen.append)
    pieces = list(gen)
    assert pieces == seen and "".join(pieces) == gen.text
    assert gen.text == engine(stem).tokenizer.decode(gen.tokens, special=False)
    assert_follows_greedy(stem, r["tokens"], gen.tokens, want)
    st = gen.stats
    assert (st.prompt_tokens, st.reused_tokens, st.prefill_tokens) == (len(r["tokens"]), 0, len(r["tokens"]))
    assert st.generated_tokens == len(want) and st.decode_tokens == len(want) - 1
    assert st.stop_reason == "length"
    assert st.prefill_tokens_per_s > 0 and st.decode_tokens_per_s > 0 and st.time_to_first_token > 0
    # the last token is not evaluated; the state covers the prompt and the rest of the answer
    assert s.tokens == [int(t) for t in r["tokens"]] + gen.tokens[:-1]


def test_same_seed_same_text_and_the_seed_matters():
    stem = "tiny-llama-F16"
    p = prompt(stem, 20)
    run = lambda seed: engine(stem).session(64).generate(  # noqa: E731
        p, SamplingParams(seed=seed, max_tokens=12, temperature=1.5)).run().tokens
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_a_stop_string_ends_the_answer_before_it():
    stem = "tiny-llama-F16"
    p = [int(t) for t in ref(stem)["tokens"]]
    full = engine(stem).session(256).generate(p, GREEDY.with_(max_tokens=16)).run()
    stop = " but2"
    assert stop in full.text
    cut = engine(stem).session(256).generate(p, GREEDY.with_(max_tokens=16, stop=(stop, "zzz"))).run()
    assert cut.text == full.text[:full.text.find(stop)]
    assert cut.stats.stop_reason == "stop"


def test_end_of_generation_token_stops_and_is_not_part_of_the_answer(monkeypatch):
    stem = "tiny-llama-F16"
    r = ref(stem)
    greedy = [int(t) for t in r["greedy"]]
    tok = engine(stem).tokenizer
    # declare llama.cpp's 6th greedy token an end-of-generation token
    monkeypatch.setattr(tok, "is_eog", lambda t: t == greedy[5])
    gen = engine(stem).session(256).generate([int(t) for t in r["tokens"]], GREEDY.with_(max_tokens=16)).run()
    assert gen.stats.stop_reason == "eog"
    assert gen.tokens == greedy[:5]


def test_cancel_stops_between_tokens():
    stem = "tiny-llama-F16"
    s = engine(stem).session(128)
    gen = s.generate(prompt(stem, 10), GREEDY.with_(max_tokens=20), cancel=lambda: len(gen.tokens) >= 3)
    gen.run()
    assert gen.stats.stop_reason == "cancelled" and len(gen.tokens) == 3
    assert s.n_past == len(s.tokens) == 13     # consistent: the state holds what was produced


def test_repeat_penalty_breaks_loops():
    stem = "tiny-kimi-linear-F16"
    r = ref(stem)
    greedy = [int(t) for t in r["greedy"]]
    assert len(set(greedy)) < len(greedy)          # llama.cpp's greedy answer repeats itself
    gen = engine(stem).session(256).generate(
        [int(t) for t in r["tokens"]], GREEDY.with_(max_tokens=len(greedy), repeat_penalty=50.0)).run()
    assert len(set(gen.tokens)) == len(gen.tokens)


@pytest.mark.parametrize("stem", ["tiny-llama-F16", "tiny-kimi-linear-F16"])
def test_chat_turns_reuse_the_conversation_so_far(stem):
    e = engine(stem)
    s = e.session(512)
    m1 = [{"role": "user", "content": "hello there"}]
    g1 = s.chat(m1, GREEDY.with_(max_tokens=6)).run()
    m2 = m1 + [{"role": "assistant", "content": g1.text}, {"role": "user", "content": "and more"}]
    g2 = s.chat(m2, GREEDY.with_(max_tokens=6)).run()
    assert g2.stats.reused_tokens >= len(e.encode_chat(m1))
    fresh = e.session(512).chat(m2, GREEDY.with_(max_tokens=6)).run()
    assert g2.tokens == fresh.tokens


# --- the real default model --------------------------------------------------------------------
def smollm2_prompts():
    from tests.conftest import load_real

    return load_real("smollm2-135m-instruct.json")["prompts"]


def test_chat_prompt_tokens_are_llama_cpps(smollm2_path):
    e = Engine.load(smollm2_path)
    p0, p1 = smollm2_prompts()
    assert e.encode_chat([{"role": "user", "content": "What is the capital of France?"}]) == p0["ids"]
    assert e.encode_chat([{"role": "system", "content": "You are a concise assistant."},
                          {"role": "user", "content": "Give me three tips for writing clear code."}]) \
        == p1["ids"]


@pytest.mark.slow
def test_smollm2_greedy_answer_follows_llama_cpp(smollm2_path):
    e = Engine.load(smollm2_path)
    p = smollm2_prompts()[1]
    ids, want = p["ids"], p["greedy_ids"]
    gen = e.session(256).generate(ids, GREEDY.with_(max_tokens=24)).run()
    n = assert_follows_greedy(e, ids, gen.tokens, want[:24])
    if n == 24:
        assert gen.text == e.tokenizer.decode(want[:24], special=False)
        assert p["greedy_text"].startswith(gen.text)


def test_gemma3_chat_and_raw_prompt_tokens_are_llama_cpps(gemma3_path):
    from tests.conftest import load_real

    e = Engine.load(gemma3_path)
    p0, p1, p2 = load_real("gemma3-270m.json")["prompts"]
    assert e.encode_chat([{"role": "user", "content": "What is the capital of France?"}]) == p0["ids"]
    assert e.encode_chat([{"role": "user", "content": "Write a haiku about the sea."}]) == p1["ids"]
    assert e.encode_text(p2["text"]) == p2["ids"]       # one BOS, as llama.cpp


@pytest.mark.slow
def test_gemma3_greedy_continuation_follows_llama_cpp(gemma3_path):
    from tests.conftest import load_real

    e = Engine.load(gemma3_path)
    p = load_real("gemma3-270m.json")["prompts"][2]
    gen = e.session(128).generate(p["text"], GREEDY.with_(max_tokens=12)).run()
    n = assert_follows_greedy(e, p["ids"], gen.tokens, p["greedy_ids"][:12])
    if n == 12:
        assert p["greedy_text"].startswith(gen.text)
