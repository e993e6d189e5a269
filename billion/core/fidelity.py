"""How closely a quantized model follows its fp32 self: next-token agreement and KL divergence.

The offline multiple-choice suite scores both offline models near chance, so its 95% intervals are
wide enough to pass a precision that changes answers (SmolLM2-135M at int4 answers "L'Étoile" to
"What is the capital of France?"). Teacher-forced agreement with fp32 on the same text is the
measure llama.cpp's perplexity tool reports for its quantizations ("same top p", KL divergence):
every token of the text is a comparison, so a few thousand tokens separate int8 from int4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK_TOKENS = 512


@dataclass(frozen=True)
class Fidelity:
    """A model against its reference over the same tokens."""

    #: share of positions where both models' most likely next token is the same
    top1_agreement: float
    #: mean KL(reference || model) of the next-token distributions, in nats
    mean_kl: float
    tokens: int


def chunks(ids: torch.Tensor, size: int = CHUNK_TOKENS) -> list[torch.Tensor]:
    """Token ids (1-D) cut into independent windows, each a forward of its own."""
    return [ids[start:start + size] for start in range(0, len(ids), size)]


@torch.inference_mode()
def log_probs(model, window: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities (positions x vocabulary) for one window, in fp32."""
    logits = model(input_ids=window[None].to(model.device)).logits[0]
    return torch.log_softmax(logits.float().cpu(), dim=-1)


def compare(reference: torch.Tensor, other: torch.Tensor) -> tuple[int, float]:
    """Positions agreeing on the top token, and the summed KL(reference || other)."""
    agree = int((reference.argmax(-1) == other.argmax(-1)).sum())
    kl = float((reference.exp() * (reference - other)).sum(-1).sum())
    return agree, kl


def measure(reference_model, models: dict[str, object], ids: torch.Tensor,
            window: int = CHUNK_TOKENS) -> dict[str, Fidelity]:
    """Each of `models` against `reference_model` over `ids` (1-D), teacher-forced, window by window
    (one reference pass for all of them; only one window's distributions are held at a time)."""
    totals = {name: (0, 0.0) for name in models}
    count = 0
    for part in chunks(ids, window):
        reference = log_probs(reference_model, part)
        for name, model in models.items():
            agree, kl = compare(reference, log_probs(model, part))
            totals[name] = (totals[name][0] + agree, totals[name][1] + kl)
        count += len(part)
    if not count:
        raise ValueError("no tokens to compare")
    return {name: Fidelity(agree / count, kl / count, count) for name, (agree, kl) in totals.items()}
