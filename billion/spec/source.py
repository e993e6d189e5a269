"""What every draft source gives speculative decoding: proposed tokens and the distribution q of each.

A source proposes up to k tokens, forgets what the target rejected, and may learn from each round.
The acceptance rule in `billion.spec.decoding` needs nothing else from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import DynamicCache

from billion.core.generation import forward
from billion.core.sampling import SamplingSettings


@dataclass(frozen=True)
class Draft:
    """Proposed tokens and, row by row, the distribution q each one was drawn from."""

    tokens: tuple[int, ...]
    #: (len(tokens), vocab) float32 probabilities; None for a deterministic proposal (one-hot rows,
    #: built only if sampling needs them)
    q: torch.Tensor | None = None

    def q_rows(self, vocab_size: int) -> torch.Tensor:
        return self.q if self.q is not None else one_hot_rows(self.tokens, vocab_size)


class DraftSource(Protocol):
    """What speculative decoding asks of a draft source.

    Optional, looked up with getattr: `observe(drafted, accepted, target_s)` hears how each round
    went (adaptive sources learn from it); `attach(cache)` hands a source that drafts on the
    target's own KV cache that cache after the prefill.
    """

    #: shown in results and tables, e.g. "prompt lookup", "self:8", "quant:int8", "smollm2-135m"
    name: str

    def start(self, prompt_ids: list[int]) -> None:
        """Forget the last generation and read the prompt (the prefill)."""

    def propose(self, context: list[int], k: int, settings: SamplingSettings,
                generator: torch.Generator | None) -> Draft:
        """Up to k tokens that might follow context (all committed ids: prompt + output)."""

    def rollback(self, valid: int) -> None:
        """Only the first `valid` ids of the committed context are still true; drop the rest."""


def one_hot_rows(tokens: tuple[int, ...], vocab_size: int) -> torch.Tensor:
    q = torch.zeros(len(tokens), vocab_size)
    if tokens:
        q[torch.arange(len(tokens)), torch.tensor(tokens)] = 1.0
    return q


def fit_vocab(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Draft logits on the target's vocabulary: padded rows differ between sizes of one family."""
    size = logits.shape[-1]
    if size == vocab_size:
        return logits
    if size > vocab_size:
        return logits[..., :vocab_size]
    pad = logits.new_full((*logits.shape[:-1], vocab_size - size), float("-inf"))
    return torch.cat([logits, pad], dim=-1)


def forward_logits(model, ids: list[int], cache: DynamicCache, device: torch.device,
                   keep: int = 0) -> torch.Tensor:
    """Run ids through the model on its cache: logits (len(ids), vocab), or of the last `keep` only."""
    return forward(model, torch.tensor([ids], device=device), cache, keep)[0]
