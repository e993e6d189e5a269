"""Model drafts for speculative decoding: a smaller model with the target's tokenizer, or the
target's first layers (self-speculation by early exit).

Prompt lookup lives in `billion.spec.lookup`, the target quantized in `billion.spec.quant_draft`,
a model with another tokenizer in `billion.spec.cross`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from billion.core.errors import BillionError
from billion.core.kv_cache import new_cache
from billion.core.sampling import SamplingSettings, penalize_repeats, probabilities, sample
from billion.spec.source import Draft, fit_vocab, forward_logits


class ModelDraft:
    """A causal LM with its own KV cache drafts token by token (sampling with the run's settings)."""

    def __init__(self, model, target_vocab_size: int, name: str):
        self.model = model
        self.vocab_size = target_vocab_size
        self.name = name
        self.device = next(model.parameters()).device
        self.cache = new_cache()
        #: the ids whose keys and values the cache holds: committed ids, then maybe drafted ones
        self.seen: list[int] = []

    def start(self, prompt_ids: list[int]) -> None:
        self.cache = new_cache(self.model.config)
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
            return Draft(())
        logits = self._feed(context[len(self.seen):])
        seen = torch.tensor(context) if settings.repetition_penalty != 1.0 else None
        for step in range(k):
            logits = fit_vocab(logits, self.vocab_size)
            if seen is not None:
                logits = penalize_repeats(logits, torch.cat([seen, torch.tensor(tokens, dtype=torch.long)]),
                                          settings.repetition_penalty)
            if settings.greedy:  # deterministic: no q rows needed
                tokens.append(int(logits.argmax(-1)))
            else:
                rows.append(probabilities(logits, settings))
                tokens.append(int(sample(rows[-1], generator)))
            if step < k - 1:
                logits = self._feed([tokens[-1]])
        return Draft(tuple(tokens), torch.stack(rows) if rows else None)

    def rollback(self, valid: int) -> None:
        extra = len(self.seen) - valid
        if extra > 0:
            del self.seen[valid:]
        # crop(0) still trims sliding-window layers back to their window.
        self.cache.crop(-max(extra, 0))


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


def same_tokenizer(target_tokenizer, draft_tokenizer) -> bool:
    """Whether draft token ids mean the same to the target (else the draft goes through text)."""
    return (target_tokenizer.get_vocab() == draft_tokenizer.get_vocab()
            and target_tokenizer.eos_token == draft_tokenizer.eos_token)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameters_per_token(model: nn.Module) -> int:
    """Weights one token's forward multiplies by: all but the input embedding (a lookup), with the
    output head counted even when it is tied to that embedding."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == embedding.data_ptr()
    return parameter_count(model) - embedding.numel() + (embedding.numel() if tied else 0)
