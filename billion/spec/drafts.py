"""Draft sources for speculative decoding: a smaller model, prompt lookup, or the target's first layers.

Every source proposes up to k tokens with the distribution q each was drawn from, and forgets what
the target rejected. The acceptance rule in `billion.spec.decoding` needs nothing else from it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from transformers import DynamicCache

from billion.core.errors import BillionError
from billion.core.generation import forward
from billion.core.sampling import SamplingSettings, penalize_repeats, probabilities, sample


@dataclass(frozen=True)
class Draft:
    """Proposed tokens and, row by row, the distribution q each one was drawn from."""

    tokens: tuple[int, ...]
    #: (len(tokens), vocab) float32 probabilities; one-hot rows for deterministic sources
    q: torch.Tensor


class DraftSource(Protocol):
    """What speculative decoding asks of a draft source."""

    #: shown in results and tables, e.g. "prompt lookup", "self:8", "smollm2-135m"
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


class ModelDraft:
    """A causal LM with its own KV cache drafts token by token (sampling with the run's settings)."""

    def __init__(self, model, target_vocab_size: int, name: str):
        self.model = model
        self.vocab_size = target_vocab_size
        self.name = name
        self.device = next(model.parameters()).device
        self.cache = DynamicCache()
        #: the ids whose keys and values the cache holds: committed ids, then maybe drafted ones
        self.seen: list[int] = []

    def start(self, prompt_ids: list[int]) -> None:
        self.cache = DynamicCache(config=self.model.config)
        self.cache.activate_past_recording()  # sliding-window layers must be able to roll back
        self.seen = []
        if len(prompt_ids) > 1:
            self._feed(prompt_ids[:-1])

    def _feed(self, ids: list[int]) -> torch.Tensor:
        logits = forward_logits(self.model, ids, self.cache, self.device, keep=1)
        self.seen.extend(ids)
        return logits[-1].float().cpu()

    def propose(self, context: list[int], k: int, settings: SamplingSettings,
                generator: torch.Generator | None) -> Draft:
        tokens: list[int] = []
        rows: list[torch.Tensor] = []
        if k <= 0:
            return Draft((), torch.zeros(0, self.vocab_size))
        logits = self._feed(context[len(self.seen):])
        seen = torch.tensor(context) if settings.repetition_penalty != 1.0 else None
        for step in range(k):
            logits = fit_vocab(logits, self.vocab_size)
            if seen is not None:
                logits = penalize_repeats(logits, torch.cat([seen, torch.tensor(tokens, dtype=torch.long)]),
                                          settings.repetition_penalty)
            q = probabilities(logits, settings)
            token = int(sample(q, generator))
            tokens.append(token)
            rows.append(q)
            if step < k - 1:
                logits = self._feed([token])
        q_rows = torch.stack(rows) if rows else torch.zeros(0, self.vocab_size)
        return Draft(tuple(tokens), q_rows)

    def rollback(self, valid: int) -> None:
        extra = len(self.seen) - valid
        if extra > 0:
            del self.seen[valid:]
        # crop(0) still trims sliding-window layers back to their window.
        self.cache.crop(-max(extra, 0))


class PromptLookupDraft:
    """Copy what followed the latest earlier occurrence of the context's last n-gram (no model).

    Grounded prompts (summarise, repeat, edit, answer from a text) make the answer copy spans of
    the prompt, so the continuation of a matching n-gram is often exactly what the target says.
    """

    def __init__(self, vocab_size: int, max_ngram: int = 3, min_ngram: int = 1):
        if not 1 <= min_ngram <= max_ngram:
            raise BillionError(f"Prompt lookup n-gram sizes must satisfy 1 <= min <= max "
                               f"(got {min_ngram}, {max_ngram}).")
        self.vocab_size = vocab_size
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.name = "prompt lookup"

    def start(self, prompt_ids: list[int]) -> None:
        pass

    def propose(self, context: list[int], k: int, settings: SamplingSettings,
                generator: torch.Generator | None) -> Draft:
        tokens = lookup_continuation(context, k, self.max_ngram, self.min_ngram)
        return Draft(tokens, one_hot_rows(tokens, self.vocab_size))

    def rollback(self, valid: int) -> None:
        pass


def lookup_continuation(context: list[int], k: int, max_ngram: int = 3,
                        min_ngram: int = 1) -> tuple[int, ...]:
    """Up to k ids that followed the most recent earlier match of the longest matching suffix n-gram."""
    if k <= 0:
        return ()
    ids = torch.tensor(context, dtype=torch.long)
    for n in range(min(max_ngram, len(context) - 1), min_ngram - 1, -1):
        # Windows starting before len - n: the suffix itself is not a match.
        windows = ids[:-1].unfold(0, n, 1)
        hits = (windows == ids[-n:]).all(dim=1).nonzero().flatten()
        if len(hits):
            start = int(hits[-1]) + n
            return tuple(context[start:start + k])
    return ()


def truncated_model(model: nn.Module, layers: int) -> nn.Module:
    """The target's first `layers` decoder layers, its final norm and LM head, sharing its weights.

    No copy of any weight: the result is a shallow view of `model` with a shorter layer list and a
    config saying so, so it can own a KV cache with only those layers.
    """
    prefix = getattr(model, "base_model_prefix", "")
    body = getattr(model, prefix, None) if prefix else None
    stack = getattr(body, "layers", None)
    if not isinstance(stack, nn.ModuleList):
        raise BillionError(f"Self-speculation needs a decoder with a `layers` list; "
                           f"{type(model).__name__} has none: use prompt lookup or a draft model.")
    total = len(stack)
    if not 1 <= layers < total:
        raise BillionError(f"self:N needs 1 <= N < {total} (the target's layer count); got {layers}.")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = layers
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types)[:layers]
    short_body = _shallow_module_copy(body)
    short_body.layers = nn.ModuleList(list(stack)[:layers])
    short_body.config = config
    short = _shallow_module_copy(model)
    setattr(short, model.base_model_prefix, short_body)
    short.config = config
    return short


def _shallow_module_copy(module: nn.Module) -> nn.Module:
    clone = copy.copy(module)
    # copy.copy shares the submodule dict; give the clone its own so replacing a child is local.
    clone._modules = dict(module._modules)
    return clone


def self_draft(model, layers: int, vocab_size: int) -> ModelDraft:
    return ModelDraft(truncated_model(model, layers), vocab_size, name=f"self:{layers}")


def check_same_tokenizer(target_tokenizer, draft_tokenizer, target_name: str, draft_name: str) -> None:
    """Refuse a draft whose tokens mean something else to the target: its guesses would be garbage."""
    same = (target_tokenizer.get_vocab() == draft_tokenizer.get_vocab()
            and target_tokenizer.eos_token == draft_tokenizer.eos_token)
    if not same:
        raise BillionError(f"{draft_name} does not share {target_name}'s tokenizer, so its tokens cannot "
                           "be verified: pick a draft from the same family (see `python -m billion "
                           "models`), or use --draft prompt-lookup or --draft self:N.")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
