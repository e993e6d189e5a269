"""What a round costs: Leviathan et al.'s speedup model, the measured cost of a (k+1)-token verify
forward against a 1-token step, and the choice of how many tokens to draft that follows from both.

On a GPU one forward of k+1 tokens costs about one forward of a single token (the paper's
assumption). On a CPU the extra tokens cost real time, and how much depends on the precision and
the matmul library, so it is measured, never assumed.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import torch

from billion.core.generation import forward
from billion.core.kv_cache import new_cache


def expected_tokens_per_round(alpha: float, k: float) -> float:
    """Tokens a round adds when each of k drafted tokens is accepted with probability alpha."""
    if alpha >= 1.0:
        return k + 1
    return (1 - alpha ** (k + 1)) / (1 - alpha)


def predicted_speedup(alpha: float, k: float, cost_ratio: float, verify_cost: float = 1.0) -> float:
    """Leviathan et al.'s walltime improvement, expected tokens per round / (k c + 1); verify_cost
    replaces the 1 by the measured cost of the (k+1)-token forward in 1-token steps."""
    return expected_tokens_per_round(alpha, k) / (k * cost_ratio + verify_cost)


def break_even_alpha(k: float, cost_ratio: float, verify_cost: float) -> float | None:
    """The per-token acceptance at which drafting k tokens just pays (None: not even at 100%)."""
    if predicted_speedup(1.0, k, cost_ratio, verify_cost) <= 1.0:
        return None
    low, high = 0.0, 1.0
    for _ in range(40):  # bisection: the speedup grows with alpha
        mid = (low + high) / 2
        low, high = (mid, high) if predicted_speedup(mid, k, cost_ratio, verify_cost) < 1.0 else (low, mid)
    return high


def expected_tokens(accept_chances: Sequence[float]) -> list[float]:
    """Expected tokens a round adds when drafting the first m of these tokens, for m = 0, 1, ...

    accept_chances[i]: the chance that drafted token i is accepted once all before it were.
    """
    totals, reach, total = [1.0], 1.0, 1.0
    for chance in accept_chances:
        reach *= chance
        total += reach
        totals.append(total)
    return totals


class VerifyCost:
    """The target's forward time as a line in the number of tokens it reads, fitted online.

    Each round reports (tokens in the verify forward, seconds). Until rounds of different sizes have
    been seen the slope comes from a prior (each extra token costing `prior_slope` of a 1-token
    step), so the first rounds of a run already get a sensible k.
    """

    def __init__(self, prior_slope: float = 0.1, memory: int = 64):
        self.prior_slope = prior_slope
        self.points: deque[tuple[int, float]] = deque(maxlen=memory)

    def observe(self, tokens: int, seconds: float) -> None:
        if tokens >= 1 and seconds > 0:
            self.points.append((tokens, seconds))

    def _fit(self) -> tuple[float, float] | None:
        """(seconds of a 1-token forward, extra seconds per further token), or None before any data."""
        if not self.points:
            return None
        # Prior pseudo-points on the line through the data's own scale, so one size alone is enough.
        base = statistics.median(t / (1 + self.prior_slope * (m - 1)) for m, t in self.points)
        prior = [(1, base), (9, base * (1 + 8 * self.prior_slope))] * 2
        pts = [*self.points, *prior]
        mean_m = sum(m for m, _ in pts) / len(pts)
        mean_t = sum(t for _, t in pts) / len(pts)
        b = sum((m - mean_m) * (t - mean_t) for m, t in pts) / sum((m - mean_m) ** 2 for m, _ in pts)
        one = mean_t + b * (1 - mean_m)
        return (one, b) if one > 0 else (base, base * self.prior_slope)

    def one_step_s(self) -> float | None:
        fit = self._fit()
        return fit[0] if fit else None

    def slope(self) -> float:
        """Extra time of each token beyond the first, in 1-token steps."""
        fit = self._fit()
        return min(max(fit[1] / fit[0], 0.0), 4.0) if fit else self.prior_slope

    def ratio(self, tokens: int) -> float:
        """Time of a forward over `tokens` tokens in 1-token steps."""
        return 1.0 + self.slope() * (tokens - 1)


def best_draft_length(accept_chances: Sequence[float], cost: VerifyCost,
                      draft_step_cost: float = 0.0) -> tuple[int, float]:
    """How many of the candidate tokens to draft: (m, expected tokens per unit of time) at the best m.

    draft_step_cost: the time of drafting one token, in target 1-token steps (0 for prompt lookup).
    """
    totals = expected_tokens(accept_chances)
    rates = [total / (cost.ratio(m + 1) + m * draft_step_cost) for m, total in enumerate(totals)]
    best = max(range(len(rates)), key=lambda m: (rates[m], -m))
    return best, rates[best]


@dataclass(frozen=True)
class ForwardCost:
    tokens: int
    #: median seconds of one forward reading `tokens` new tokens on a warm cache
    seconds: float
    #: seconds over the 1-token step's seconds (c of the (tokens-1)-token round)
    ratio: float


def measure_forward_costs(model, sizes: Sequence[int] = (1, 2, 3, 5, 9, 11, 17), context: int = 256,
                          repeats: int = 7, seed: int = 0) -> tuple[ForwardCost, ...]:
    """Median time of a forward over each number of new tokens after `context` cached tokens.

    Sizes are interleaved within each repeat (alternate runs), so a busy machine slows them alike.
    """
    device = next(model.parameters()).device
    vocab = int(model.get_input_embeddings().num_embeddings)
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (1, context), generator=gen).to(device)
    times: dict[int, list[float]] = {size: [] for size in sizes}
    with torch.inference_mode():
        cache = new_cache(model.config)
        forward(model, prompt, cache, keep=1)
        for repeat in range(repeats + 1):
            for size in sizes:
                ids = torch.randint(0, vocab, (1, size), generator=gen).to(device)
                started = time.perf_counter()
                forward(model, ids, cache)
                if repeat:  # the first pass warms up
                    times[size].append(time.perf_counter() - started)
                cache.crop(-size)
    one = statistics.median(times[min(sizes)])
    return tuple(ForwardCost(size, statistics.median(times[size]), statistics.median(times[size]) / one)
                 for size in sizes)
