"""Speculative decoding: a cheap draft proposes k tokens, the target checks them all in one forward.

Read top to bottom: prefill -> per round: draft -> verify -> accept -> roll back. Both models keep a
KV cache (preallocated, so a round copies no cache); a rejection crops it instead of re-reading the
prefix. The rule in `accept` (Leviathan et al. 2023; Chen et al. 2023) makes the output follow the
target's distribution exactly; greedy verification (`accept_greedy`, the same rule on one-hot
distributions) keeps the target's own greedy output. Each round reports back to draft sources
that learn from it (`observe`), and a source that drafts on the target's cache gets it (`attach`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import DynamicCache

from billion.core.errors import BillionError
from billion.core.generation import Detokenizer
from billion.core.kv_cache import new_cache
from billion.core.sampling import SamplingSettings, make_generator, penalize_repeats, probabilities, sample
from billion.spec.results import (EmittedToken, Round, SpeculativeResult, SpeculativeStats,  # noqa: F401
                                  SpeculativeUpdate, TokenKind, summarize, token_kinds)
from billion.spec.source import Draft, DraftSource, forward_logits

MAX_K = 16


@dataclass(frozen=True)
class KSchedule:
    """How many tokens to draft per round."""

    k: int = 4
    #: grow k by one after a fully accepted round, shrink it by one after a rejection
    dynamic: bool = False
    k_max: int = MAX_K

    def validate(self) -> "KSchedule":
        if not 1 <= self.k <= MAX_K or not self.k <= self.k_max <= MAX_K:
            raise BillionError(f"k must be between 1 and {MAX_K} (got k={self.k}, k_max={self.k_max}): "
                               "drafts longer than that are almost never accepted in full.")
        return self

    def next(self, k: int, drafted: int, accepted: int) -> int:
        if not self.dynamic or drafted == 0:
            return k
        return min(k + 1, self.k_max) if accepted == drafted else max(k - 1, 1)


def prefill(model, prompt_ids: list[int], cache: DynamicCache, device: torch.device) -> None:
    """Cache all prompt tokens but the last: the first verify reads that one and predicts from it."""
    if len(prompt_ids) > 1:
        forward_logits(model, prompt_ids[:-1], cache, device, keep=1)


def verify(model, last: int, drafted: Sequence[int], cache: DynamicCache,
           device: torch.device) -> torch.Tensor:
    """Target logits after `last` and after each drafted token, (len(drafted) + 1, vocab), one forward.

    They stay on the model's device: greedy verification moves only k + 1 argmax ids to the host.
    """
    return forward_logits(model, [last, *drafted], cache, device).float()


def penalized(logits: torch.Tensor, context: list[int], drafted: Sequence[int],
              settings: SamplingSettings) -> torch.Tensor:
    """The verified rows as plain decoding would see them: repetition penalty over all ids before each."""
    if settings.repetition_penalty == 1.0:
        return logits
    base = torch.tensor(context + list(drafted), dtype=torch.long)
    return torch.stack([penalize_repeats(row, base[:len(context) + i], settings.repetition_penalty)
                        for i, row in enumerate(logits)])


def accept_greedy(logits: torch.Tensor, drafted: Sequence[int]) -> tuple[int, int]:
    """Greedy verification: keep drafts while they equal the target's argmax; then its argmax.

    The same result as `accept` on one-hot distributions, without building them.
    """
    best = logits.argmax(-1).tolist()
    kept = 0
    while kept < len(drafted) and drafted[kept] == best[kept]:
        kept += 1
    return kept, best[kept]


def accept(p: torch.Tensor, q: torch.Tensor, drafted: Sequence[int],
           generator: torch.Generator | None) -> tuple[int, int]:
    """The speculative sampling rule: (how many drafted tokens to keep, the token that follows them).

    p: target probabilities (m + 1, vocab); q: the draft's (m, vocab) for m drafted tokens.
    Keep draft x with probability min(1, p(x) / q(x)); at the first rejection draw from
    normalise(max(0, p - q)); when all are kept, draw a bonus token from p's last row.
    """
    m = len(drafted)
    if m:
        rows = torch.arange(m)
        ids = torch.tensor(list(drafted), dtype=torch.long)
        keep = (p[rows, ids] / q[rows, ids]).clamp(max=1.0)
        rejected = (torch.rand(m, generator=generator) >= keep).nonzero().flatten()
        if len(rejected):
            i = int(rejected[0])
            residual = (p[i] - q[i]).clamp(min=0.0)
            total = residual.sum()
            # total is 0 only if p == q up to rounding, where a rejection has probability ~0 anyway.
            residual = residual / total if total > 0 else p[i]
            return i, int(sample(residual, generator))
    return m, int(sample(p[m], generator))


def rollback(cache: DynamicCache, tokens_to_remove: int) -> None:
    """Drop the rejected drafts' keys and values (crop(0) still trims sliding-window layers)."""
    cache.crop(-tokens_to_remove)


def judge(logits: torch.Tensor, ids: list[int], proposal: Draft, drafted: tuple[int, ...],
          settings: SamplingSettings, generator: torch.Generator) -> tuple[int, int]:
    """(drafted tokens kept, the token after them) from the target's verified logits."""
    if settings.repetition_penalty != 1.0 or not settings.greedy:
        logits = logits.cpu()  # the penalty and the sampling rule run on the host
    logits = penalized(logits, ids, drafted, settings)
    if settings.greedy:
        return accept_greedy(logits, drafted)
    p = probabilities(logits, settings)
    return accept(p, proposal.q_rows(p.shape[-1])[:len(drafted)], drafted, generator)


def run_round(index: int, model, cache: DynamicCache, draft: DraftSource, ids: list[int], k: int,
              settings: SamplingSettings, generator: torch.Generator, started: float) -> Round:
    """Draft up to k tokens, verify them in one target forward, accept, and roll both caches back."""
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    proposal = draft.propose(ids, k, settings, generator) if k > 0 else Draft(())
    drafted = proposal.tokens[:k]
    t1 = time.perf_counter()
    logits = verify(model, ids[-1], drafted, cache, device)
    n_accepted, token = judge(logits, ids, proposal, drafted, settings, generator)
    rollback(cache, len(drafted) - n_accepted)
    t2 = time.perf_counter()
    draft.rollback(len(ids) + n_accepted)
    observe = getattr(draft, "observe", None)
    if observe is not None:
        observe(len(drafted), n_accepted, t2 - t1)
    t3 = time.perf_counter()
    emitted = (*drafted[:n_accepted], token)
    kinds = token_kinds(len(drafted), n_accepted, len(emitted))
    return Round(index, tuple(drafted), n_accepted, emitted, kinds, draft_s=(t1 - t0) + (t3 - t2),
                 target_s=t2 - t1, time_s=t3 - started)


class _Answer:
    """The output as rounds add to it: ends at EOS (also inside a draft), a stop string or max tokens."""

    def __init__(self, tokenizer, eos_ids: frozenset[int], stops: tuple[str, ...], max_new_tokens: int):
        self.detok = Detokenizer(tokenizer) if tokenizer is not None else None
        self.eos_ids, self.stops, self.max_new_tokens = eos_ids, stops, max_new_tokens
        self.tokens: list[EmittedToken] = []
        self.text = ""
        self.finish: str | None = None

    def add(self, rnd: Round) -> str:
        """Take the round's tokens up to any end; returns the text they added."""
        before = len(self.text)
        for token_id, kind in zip(rnd.emitted, rnd.kinds):
            if token_id in self.eos_ids:
                self.finish = "eos"
                break
            piece = self.detok.add(token_id) if self.detok else ""
            self.tokens.append(EmittedToken(token_id, piece, kind, rnd.index, rnd.time_s))
            self.text += piece
            cut = min((self.text.find(s) for s in self.stops if s in self.text), default=-1)
            if cut >= 0:
                self.text, self.finish = self.text[:cut], "stop"
                break
        if self.finish is None and len(self.tokens) >= self.max_new_tokens:
            self.finish = "length"
        return self.text[before:]


def speculative_stream(model, prompt_ids: Sequence[int], draft: DraftSource, settings: SamplingSettings,
                       schedule: KSchedule = KSchedule(), *, tokenizer=None,
                       eos_ids: frozenset[int] = frozenset(), stops: Sequence[str] = (),
                       context_length: int | None = None,
                       cancel: threading.Event | None = None) -> Iterator[SpeculativeUpdate]:
    """Decode after prompt_ids in draft-and-verify rounds; yields after each round, and the last update
    holds the result. tokenizer is only needed for text; eos_ids end the answer."""
    settings.validate()
    schedule.validate()
    prompt = [int(t) for t in prompt_ids]
    if not prompt:
        raise BillionError("The prompt is empty: give at least one token.")
    context_length = context_length or getattr(model.config, "max_position_embeddings", None) or 1 << 30
    if len(prompt) >= context_length:
        raise BillionError(f"The prompt ({len(prompt)} tokens) fills the model's context of "
                           f"{context_length} tokens: shorten it.")
    started = time.perf_counter()
    generator = make_generator(settings.seed)
    stops = tuple(s for s in (*settings.stop, *stops) if s)
    answer = _Answer(tokenizer, eos_ids, stops, settings.max_new_tokens)
    ids, rounds, k = list(prompt), [], schedule.k
    # Grad mode is per thread: never yield inside inference_mode, or the caller inherits it.
    with torch.inference_mode():
        cache = new_cache(model.config)
        cache.activate_past_recording()  # sliding-window layers must be able to roll back
        prefill(model, prompt, cache, next(model.parameters()).device)
        draft.start(prompt)
        attach = getattr(draft, "attach", None)
        if attach is not None:
            attach(cache)
    prefill_s = time.perf_counter() - started
    while answer.finish is None:
        room = min(settings.max_new_tokens - len(answer.tokens), context_length - len(ids) + 1)
        if room <= 0:
            answer.finish = "length"
            break
        # A round emits up to k + 1 tokens: never draft what could not be kept.
        with torch.inference_mode():
            rnd = run_round(len(rounds), model, cache, draft, ids, min(k, room - 1), settings,
                            generator, started)
        rounds.append(rnd)
        new_text = answer.add(rnd)
        ids.extend(rnd.emitted)
        k = schedule.next(k, len(rnd.drafted), rnd.accepted)
        if answer.finish is None and cancel is not None and cancel.is_set():
            answer.finish = "cancelled"
        yield SpeculativeUpdate(answer.text, new_text, len(answer.tokens), rnd)
    total = time.perf_counter() - started
    result = _result(draft.name, answer, rounds, len(prompt), prefill_s, total)
    yield SpeculativeUpdate(answer.text, "", len(answer.tokens), rounds[-1] if rounds else None, result)


def _result(draft_name: str, answer: _Answer, rounds: list[Round], prompt_tokens: int, prefill_s: float,
            total: float) -> SpeculativeResult:
    tokens = answer.tokens
    first_round = [t for t in tokens if t.round == 0]
    span = tokens[-1].time_s - tokens[0].time_s if tokens else 0.0
    decode_rate = (len(tokens) - len(first_round)) / span if span > 0 else 0.0
    return SpeculativeResult(
        draft=draft_name, text=answer.text, token_ids=tuple(t.id for t in tokens), tokens=tuple(tokens),
        rounds=tuple(rounds), prompt_tokens=prompt_tokens, prefill_s=prefill_s,
        ttft_s=rounds[0].time_s if rounds else total, decode_tokens_per_s=decode_rate, total_s=total,
        finish_reason=answer.finish or "length", stats=summarize(rounds, len(tokens)))


def speculative_generate(model, prompt_ids: Sequence[int], draft: DraftSource, settings: SamplingSettings,
                         schedule: KSchedule = KSchedule(), **kwargs) -> SpeculativeResult:
    """speculative_stream run to the end; same arguments."""
    update = None
    for update in speculative_stream(model, prompt_ids, draft, settings, schedule, **kwargs):
        pass
    assert update is not None and update.result is not None
    return update.result
