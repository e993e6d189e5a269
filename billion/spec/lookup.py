"""Prompt lookup: copy what followed an earlier occurrence of the context's last n-gram (no model).

Grounded prompts (summarise, repeat, edit, answer from a text) make the answer copy spans of the
prompt, so the continuation of a matching n-gram is often exactly what the target says. The
n-grams live in an index updated with each new token, so a round never rescans the context.

Each round picks, among the matches of every n-gram size, the candidate and the number of its
tokens to draft that promise the most tokens per unit of verify time: from how often drafts were
accepted so far after a match of that size (while copying a span, or not) and from the measured
cost of verifying more tokens (`billion.spec.cost.VerifyCost`). Any draft is verified by the
target, so the choice changes speed only, never the output.
"""

from __future__ import annotations

import bisect
from typing import Sequence

import torch

from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings
from billion.spec.cost import VerifyCost, best_draft_length
from billion.spec.source import Draft

#: how far past the copy position an occurrence may end and still count as the copy resuming
WINDOW = 24

class NGramIndex:
    """Where each n-gram (min_n <= n <= max_n) of a growing token list ended, in order.

    Adding a token costs O(max_n); a lookup is one dict access (and a bisection when asked for the
    occurrence nearest a position). The last position is never indexed before it is looked up, so
    the suffix never matches itself.
    """

    def __init__(self, min_n: int, max_n: int):
        self.min_n, self.max_n = min_n, max_n
        self.reset()

    def reset(self) -> None:
        self.ends: dict[tuple[int, ...], list[int]] = {}
        self.indexed = 0

    def extend(self, ids: Sequence[int]) -> None:
        """Index the n-grams ending at every position of ids but the last (ids only ever grows)."""
        if len(ids) - 1 < self.indexed:  # a different, shorter list: start over
            self.reset()
        for end in range(self.indexed, len(ids) - 1):
            for n in range(self.min_n, min(self.max_n, end + 1) + 1):
                self.ends.setdefault(tuple(ids[end - n + 1:end + 1]), []).append(end)
        self.indexed = max(self.indexed, len(ids) - 1)

    def match(self, ids: Sequence[int], n: int, after: int | None = None) -> int | None:
        """End position of an earlier occurrence of ids' last n tokens: the first one ending at or
        after `after` (within WINDOW of it) if there is one, else the latest; None if none."""
        if len(ids) <= n:
            return None
        ends = self.ends.get(tuple(ids[-n:]))
        if not ends:
            return None
        if after is not None:
            i = bisect.bisect_left(ends, after)
            if i < len(ends) and ends[i] <= after + WINDOW:
                return ends[i]
        return ends[-1]


class AcceptanceModel:
    """Per-token acceptance of drafts, learned per situation: the n-gram size of the match, and
    whether the last round kept all its drafts (the answer is copying a span) or not.

    Each situation's rate is accepted / (accepted + rejections), with a prior (`prior` for a fresh
    match, `prior_copying` while copying) worth `weight` judged tokens; tokens after a rejection
    were never judged, so they do not count.
    """

    def __init__(self, prior: float = 0.6, prior_copying: float = 0.9, weight: float = 4.0):
        self.prior, self.prior_copying, self.weight = prior, prior_copying, weight
        self.counts: dict[tuple[int, bool], list[int]] = {}

    @staticmethod
    def key(n: int, copying: bool) -> tuple[int, bool]:
        # While a span is being copied, the match size says little more: one shared count.
        return (0 if copying else n, copying)

    def alpha(self, n: int, copying: bool) -> float:
        accepted, rejected = self.counts.get(self.key(n, copying), (0, 0))
        prior = self.prior_copying if copying else self.prior
        return (accepted + prior * self.weight) / (accepted + rejected + self.weight)

    def record(self, n: int, copying: bool, drafted: int, accepted: int) -> None:
        counts = self.counts.setdefault(self.key(n, copying), [0, 0])
        counts[0] += accepted
        counts[1] += accepted < drafted


class PromptLookupDraft:
    """Drafts by copying from the context; adaptive=False drafts the longest match's k next tokens
    every round (Saxena's prompt lookup decoding, as transformers does)."""

    deterministic = True

    def __init__(self, vocab_size: int, max_ngram: int = 4, min_ngram: int = 1, adaptive: bool = True):
        if not 1 <= min_ngram <= max_ngram:
            raise BillionError(f"Prompt lookup n-gram sizes must satisfy 1 <= min <= max "
                               f"(got {min_ngram}, {max_ngram}).")
        self.vocab_size = vocab_size
        self.max_ngram, self.min_ngram = max_ngram, min_ngram
        self.adaptive = adaptive
        self.name = "prompt lookup"
        self.index = NGramIndex(min_ngram, max_ngram)
        # Kept across generations: what one run learned about this target helps the next.
        self.acceptance = AcceptanceModel()
        self.cost = VerifyCost()
        self.copying = False  # the last round kept every token it drafted
        #: where the copied span goes on: the source position after the last accepted drafted token
        self.pointer: int | None = None
        self._last: tuple[int, int] | None = None  # (n-gram size, end of its match) of the last proposal

    def start(self, prompt_ids: list[int]) -> None:
        self.index.reset()
        self.copying, self.pointer, self._last = False, None, None

    def candidates(self, context: list[int], k: int) -> list[tuple[int, int, list[int]]]:
        """(n, where the match ends, the k tokens after it) for each n with a match, longest first.

        Where an answer copies a text with edits, the copy resumes near where it left off: so the
        occurrence at or just after that point wins over the latest one.
        """
        self.index.extend(context)
        found = []
        for n in range(min(self.max_ngram, len(context) - 1), self.min_ngram - 1, -1):
            after = self.pointer - 1 if self.pointer is not None and self.adaptive else None
            end = self.index.match(context, n, after)
            if end is not None:
                found.append((n, end, context[end + 1:end + 1 + k]))
        return found

    def propose(self, context: list[int], k: int, settings: SamplingSettings,
                generator: torch.Generator | None) -> Draft:
        found = self.candidates(context, k) if k > 0 else []
        chosen: tuple[int, int, list[int]] = (0, 0, [])
        if found and not self.adaptive:
            chosen = found[0]
        elif found:
            best_rate = 1.0 / self.cost.ratio(1)  # a round that drafts nothing
            for n, end, tokens in found:
                alpha = self.acceptance.alpha(n, self.copying)
                m, rate = best_draft_length([alpha] * len(tokens), self.cost)
                if m and rate > best_rate:
                    chosen, best_rate = (n, end, tokens[:m]), rate
        n, end, tokens = chosen
        self._last = (n, end) if tokens else None
        return Draft(tuple(tokens))

    def observe(self, drafted: int, accepted: int, target_s: float) -> None:
        """What the round made of the last proposal, and how long its verify forward took."""
        self.cost.observe(drafted + 1, target_s)
        if self._last is not None and drafted:
            n, end = self._last
            self.acceptance.record(n, self.copying, drafted, accepted)
            self.pointer = end + 1 + accepted
        self.copying = bool(drafted) and accepted == drafted
        self._last = None

    def rollback(self, valid: int) -> None:
        pass
