"""Hugging Face's own assisted generation with the same target, draft source, k and settings."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from billion.core.generation import stop_token_ids
from billion.core.loading import LoadedModel
from billion.core.sampling import SamplingSettings
from billion.spec.decoding import KSchedule
from billion.spec.source import DraftSource


@dataclass(frozen=True)
class ReferenceRun:
    """Hugging Face's assisted generation on the same target, settings and prompt."""

    method: str
    text: str
    token_ids: tuple[int, ...]
    total_s: float
    #: output tokens per second of the whole call (HF reports no first-token time)
    tokens_per_s: float
    #: time of the same call stopped after one token (HF's prefill and first round), measured apart
    first_token_s: float = 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first over the time after the first token, with that time estimated as
        the whole call minus the separately measured one-token call (0 when not measured)."""
        span = self.total_s - self.first_token_s
        return (len(self.token_ids) - 1) / span if self.first_token_s and span > 0 else 0.0


def assistant_kwargs(kind: str, source: DraftSource, schedule: KSchedule,
                     target: LoadedModel, layers: int = 0) -> tuple[dict, str]:
    """generate() arguments that give HF the same draft source as ours, and a label for them."""
    if kind == "prompt_lookup":
        return {"prompt_lookup_num_tokens": schedule.k}, f"prompt_lookup_num_tokens={schedule.k}"
    kwargs: dict = {"num_assistant_tokens": schedule.k, "assistant_confidence_threshold": 0.0,
                    "num_assistant_tokens_schedule": "heuristic" if schedule.dynamic else "constant"}
    if kind == "self":
        return {**kwargs, "assistant_early_exit": layers}, f"assistant_early_exit={layers}"
    model = getattr(source, "model")
    if kind == "quant":
        return {**kwargs, "assistant_model": model}, f"assistant_model={source.name} (its own cache)"
    if kind == "text":
        return ({**kwargs, "assistant_model": model, "tokenizer": target.tokenizer,
                 "assistant_tokenizer": getattr(source, "draft_tokenizer")},
                f"assistant_model={source.name}, assistant_tokenizer (universal assisted generation)")
    return {**kwargs, "assistant_model": model}, f"assistant_model={source.name}"


def hf_assisted(target: LoadedModel, kind: str, source: DraftSource, schedule: KSchedule,
                settings: SamplingSettings, input_ids: torch.Tensor, layers: int = 0,
                first_token: bool = True) -> ReferenceRun:
    """transformers' own assisted generation with the same draft source and k (fixed schedule).

    first_token: also time the same call cut to one new token, so its decode rate can be compared
    with ours (HF's generate reports no first-token time).
    """
    kwargs: dict = {"max_new_tokens": settings.max_new_tokens, "do_sample": not settings.greedy,
                    "eos_token_id": sorted(stop_token_ids(target)),
                    "pad_token_id": target.tokenizer.pad_token_id,
                    "repetition_penalty": settings.repetition_penalty}
    if not settings.greedy:
        # top_k=0 switches transformers' top-k off, as in billion.core.sampling (None would mean its default 50).
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
    assisted, method = assistant_kwargs(kind, source, schedule, target, layers)
    kwargs.update(assisted)
    out, total = _timed_generate(target, input_ids, kwargs, settings.seed)
    first = _timed_generate(target, input_ids, {**kwargs, "max_new_tokens": 1}, settings.seed)[1] \
        if first_token else 0.0
    new = out[0, input_ids.shape[1]:].tolist()
    eos = stop_token_ids(target)
    ids = tuple(new[:next((i for i, t in enumerate(new) if t in eos), len(new))])
    return ReferenceRun(method, target.tokenizer.decode(ids, skip_special_tokens=True), ids, total,
                        len(ids) / total if total > 0 else 0.0, first)


def _timed_generate(target: LoadedModel, input_ids: torch.Tensor, kwargs: dict,
                    seed: int | None) -> tuple[torch.Tensor, float]:
    if seed is not None:
        torch.manual_seed(seed)
    started = time.perf_counter()
    with torch.inference_mode():
        out = target.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    return out, time.perf_counter() - started
