"""Sampling settings and the logits -> next-token step shared by plain and speculative decoding."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from billion.core.errors import BillionError

#: the hottest sampling accepted: logits / 10 is already close to uniform
MAX_TEMPERATURE = 10.0
MAX_TOP_K = 1_000_000
#: a penalty of 10 already forbids every repeat; beyond it only overflows
MAX_REPETITION_PENALTY = 10.0
#: torch.Generator.manual_seed takes 64-bit seeds; 2**63 - 1 is safe on every backend
MAX_SEED = 2**63 - 1
#: the engine's own ceiling; each app's limits (billion.core.limits) are lower
MAX_NEW_TOKENS = 1_000_000


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
        """The settings when every field is a finite number in its range; a BillionError naming the
        field otherwise (NaN compares false with everything, so each check is written to fail on it)."""
        for name in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BillionError(f"{name} must be a finite number (got {value!r}).")
        for name in ("top_k", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise BillionError(f"{name} must be a whole number (got {value!r}).")
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise BillionError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS} "
                               f"(got {self.max_new_tokens}).")
        if not 0 <= self.temperature <= MAX_TEMPERATURE:
            raise BillionError(f"temperature must be between 0 (greedy) and {MAX_TEMPERATURE:g} "
                               f"(got {self.temperature}).")
        if not 0 < self.top_p <= 1:
            raise BillionError(f"top_p must be in (0, 1] (got {self.top_p}).")
        if not 0 <= self.top_k <= MAX_TOP_K:
            raise BillionError(f"top_k must be 0 (off) or up to {MAX_TOP_K} (got {self.top_k}).")
        if not 0 < self.repetition_penalty <= MAX_REPETITION_PENALTY:
            raise BillionError(f"repetition_penalty must be above 0 and at most "
                               f"{MAX_REPETITION_PENALTY:g} (got {self.repetition_penalty}).")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise BillionError(f"seed must be a whole number from 0 to {MAX_SEED}, or -1 for a "
                               f"random one (got {self.seed!r}).")
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
                changes["seed"] = None if value in (None, "", -1) else _whole(value)
            elif f.name == "stop":
                changes["stop"] = tuple(value or ())
            elif isinstance(getattr(base, f.name), bool):
                changes[f.name] = bool(value)
            elif isinstance(getattr(base, f.name), int):
                changes[f.name] = _whole(value)
            else:
                changes[f.name] = float(value)
        except (TypeError, ValueError, OverflowError):
            raise BillionError(f"{f.name} must be a number (got {value!r}).") from None
    return replace(base, **changes).validate()


def _whole(value: Any) -> int:
    """An int from a form value: 3, 3.0 or "3"; NaN, inf and 3.5 raise (ValueError, OverflowError)."""
    if isinstance(value, str):
        value = float(value) if any(c in value for c in ".eE") else int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return int(value)


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
