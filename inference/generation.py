"""One answer being generated: prefill, then sample token by token, streaming text pieces."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from .errors import ContextOverflowError
from .sampling import Sampler, SamplingParams

if TYPE_CHECKING:
    from .engine import Session

Progress = Callable[[int, int], None]   # (tokens done, tokens to do)
Cancel = Callable[[], bool]             # True: stop at the next layer / token boundary

# Prefill chunk: tokens per forward, unless the model asks for another (Model.prefill_chunk; a
# chunk of None means the model's). The batch kernels want long chunks (kimi-linear-48b-slice,
# 4096 tokens: 148 t/s in chunks of 512, 34 t/s in chunks of 64; llama.cpp's n_ubatch is 512
# too). Stop and progress act between layers (Session._forward_chunk), so the chunk does not
# bound how long either waits.
PREFILL_CHUNK = 512


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefill_tokens: int = 0          # evaluated (prompt_tokens - reused_tokens)
    prefill_seconds: float = 0.0
    generated_tokens: int = 0        # tokens of the answer (an end-of-generation token excluded)
    decode_tokens: int = 0           # single-token forward passes during the answer
    decode_seconds: float = 0.0
    time_to_first_token: float = 0.0  # from the request to the first sampled token
    stop_reason: str = ""            # eog | stop | length | context | cancelled

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prefill_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"prompt {self.prompt_tokens} tokens ({self.reused_tokens} reused), "
                f"prefill {self.prefill_tokens_per_s:.1f} tok/s, "
                f"{self.generated_tokens} generated at {self.decode_tokens_per_s:.1f} tok/s, "
                f"first token after {self.time_to_first_token:.2f} s, stop: {self.stop_reason}")


class Generation:
    """One answer: prefill the prompt, then sample until EOG, a stop string, max_tokens, the end
    of the context, or cancel(). Iterating yields text pieces (complete UTF-8) as they come;
    text that may be the start of a stop string is held back until it is known not to be."""

    def __init__(self, session: Session, prompt: list[int], params: SamplingParams,
                 on_token: Callable[[str], None] | None = None, progress: Progress | None = None,
                 cancel: Cancel | None = None, chunk: int | None = None):
        params.validate()
        n, m, n_ctx = len(prompt), params.max_tokens, session.n_ctx
        if m is not None and n + m > n_ctx:
            raise ContextOverflowError(
                f"the prompt is {n} tokens and the answer may take {m} more: {n + m} tokens exceed "
                f"the context size of {n_ctx}. Shorten the prompt or conversation, ask for fewer "
                "tokens, or use a larger context size")
        if m is None and n >= n_ctx:
            raise ContextOverflowError(
                f"the prompt is {n} tokens and leaves no room for an answer in the context size of "
                f"{n_ctx}. Shorten the prompt or conversation, or use a larger context size")
        self.session, self.prompt, self.params = session, prompt, params
        self.on_token, self.progress, self.cancel, self.chunk = on_token, progress, cancel, chunk
        self.text = ""
        self.tokens: list[int] = []
        self.stats = GenerationStats(prompt_tokens=n)
        self._pending = ""
        self._started = False

    def run(self) -> "Generation":
        for _ in self:
            pass
        return self

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a Generation runs once; call session.generate again")
        self._started = True
        s, p, st = self.session, self.params, self.stats
        t0 = time.perf_counter()
        pre = s.prefill(self.prompt, self.progress, self.cancel, self.chunk)
        st.reused_tokens, st.prefill_tokens, st.prefill_seconds = pre.n_reused, pre.n_evaluated, pre.seconds
        if pre.cancelled:
            st.stop_reason = "cancelled"
            return
        tok = s.engine.tokenizer
        decoder = tok.decoder(special=False)   # control tokens print nothing (llama.cpp)
        sampler = Sampler(p)
        limit = p.max_tokens if p.max_tokens is not None else s.n_ctx - len(self.prompt)
        stopped = False
        while True:
            if len(self.tokens) >= limit:
                st.stop_reason = "length" if p.max_tokens is not None else "context"
                break
            if self.cancel is not None and self.cancel():
                st.stop_reason = "cancelled"
                break
            logits = s.logits
            if p.ignore_eos and tok.eog_ids:             # as llama.cpp: EOG logits to -inf
                logits = logits.copy()
                logits[..., sorted(tok.eog_ids)] = -np.inf
            t = sampler.sample(logits, s.tokens)
            if not self.tokens:
                st.time_to_first_token = time.perf_counter() - t0
            if tok.is_eog(t):
                st.stop_reason = "eog"
                break
            self.tokens.append(t)
            st.generated_tokens = len(self.tokens)
            out, stopped = self._emit(decoder.add(t))
            if out:
                yield out
            if stopped:
                st.stop_reason = "stop"
                break
            if len(self.tokens) >= limit:
                continue   # the last token is not evaluated: nothing would read its logits
            t1 = time.perf_counter()
            s.eval_token(t)
            st.decode_seconds += time.perf_counter() - t1
            st.decode_tokens += 1
        if not stopped:
            out, stopped = self._emit(decoder.flush())
            if stopped:
                st.stop_reason = "stop"
            elif self._pending:      # nothing more will come: what was held back is text
                rest, self._pending = self._pending, ""
                self.text += rest
                out += self._notified(rest)
            if out:
                yield out

    def _emit(self, piece: str) -> tuple[str, bool]:
        """Add a decoded piece; return (text safe to show now, whether a stop string was hit)."""
        self._pending += piece
        stops = self.params.stop
        if not stops:
            out, self._pending = self._pending, ""
            self.text += out
            return self._notified(out), False
        hits = [i for i in (self._pending.find(x) for x in stops) if i >= 0]
        if hits:
            out, self._pending = self._pending[:min(hits)], ""
            self.text += out
            return self._notified(out), True
        hold = max((k for x in stops for k in range(1, len(x)) if self._pending.endswith(x[:k])),
                   default=0)
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        self.text += out
        return self._notified(out), False

    def _notified(self, out: str) -> str:
        if out and self.on_token is not None:
            self.on_token(out)
        return out
