"""Sampling settings and the logits -> next-token step shared by plain and speculative decoding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from billion.core.errors import BillionError


@dataclass(frozen=True)
class SamplingSettings:
    """How to pick tokens. temperature 0 means greedy."""

    #: 0 = greedy (argmax); otherwise logits are divided by it
    temperature: float = 0.7
    #: nucleus sampling: keep the smallest set of tokens whose probability sums to top_p
    top_p: float = 0.95
    #: keep only the k most likely tokens; 0 = off
    top_k: int = 0
    #: > 1 discourages tokens already in the prompt or answer (CTRL-style, as transformers does)
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    #: None = a fresh random seed per call
    seed: int | None = None
    #: generation ends when the text contains one of these (the stop string is cut off)
    stop: tuple[str, ...] = ()
    #: keep generating past end-of-sequence (benchmarks measure a fixed length this way)
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def validate(self) -> "SamplingSettings":
        if self.max_new_tokens <= 0:
            raise BillionError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens}).")
        if self.temperature < 0:
            raise BillionError(f"temperature must be 0 (greedy) or more (got {self.temperature}).")
        if not 0 < self.top_p <= 1:
            raise BillionError(f"top_p must be in (0, 1] (got {self.top_p}).")
        if self.top_k < 0:
            raise BillionError(f"top_k must be 0 (off) or more (got {self.top_k}).")
        if self.repetition_penalty <= 0:
            raise BillionError(f"repetition_penalty must be positive (got {self.repetition_penalty}).")
        return self


def sampling_from(values: Mapping[str, Any], base: SamplingSettings = SamplingSettings()) -> SamplingSettings:
    """Checked settings from form or command-line values: `base` with every field named in values.

    Other keys are ignored, so a whole argparse namespace (`vars(args)`) or a form's values can be
    passed. Numbers may arrive as floats (Gradio sliders); a seed of None, "" or -1 means random.
    """
    changes: dict[str, Any] = {}
    for f in fields(SamplingSettings):
        if f.name not in values:
            continue
        value = values[f.name]
        try:
            if f.name == "seed":
                changes["seed"] = None if value in (None, "", -1) else int(value)
            elif f.name == "stop":
                changes["stop"] = tuple(value or ())
            else:
                changes[f.name] = type(getattr(base, f.name))(value)
        except (TypeError, ValueError):
            raise BillionError(f"{f.name} must be a number (got {value!r}).") from None
    return replace(base, **changes).validate()


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL repetition penalty over the ids in `seen` (same rule as transformers)."""
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    logits = logits.clone()
    picked = logits.gather(-1, seen)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return logits.scatter(-1, seen, picked)


def probabilities(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Next-token distribution after temperature, top-k and top-p, as float32 probabilities.

    Works on (..., vocab). Greedy settings give a one-hot distribution on the argmax, so the
    speculative acceptance rule needs no special case for greedy.
    """
    logits = logits.float()
    if settings.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / settings.temperature
    if settings.top_k > 0 and settings.top_k < logits.shape[-1]:
        kth = torch.topk(logits, settings.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop a token when the mass before it already reaches top_p; the top token always stays.
        drop = (sorted_probs.cumsum(-1) - sorted_probs) >= settings.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token id per row of probs (shape (..., vocab) -> (...))."""
    flat = probs.reshape(-1, probs.shape[-1])
    ids = torch.multinomial(flat, 1, generator=generator).squeeze(-1)
    return ids.reshape(probs.shape[:-1])


def next_token(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None,
               seen: torch.Tensor | None = None) -> int:
    """Pick the next token from the last position's logits (shape (vocab,))."""
    if seen is not None:
        logits = penalize_repeats(logits, seen, settings.repetition_penalty)
    if settings.greedy:
        return int(logits.argmax(-1))
    return int(sample(probabilities(logits, settings), generator))


def make_generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen
