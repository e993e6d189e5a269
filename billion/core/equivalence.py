"""Does billion's decode loop give HF `generate`'s greedy tokens at the same precision?

Both run on the same loaded model (quantized layers included), so only the loops differ. Where
they part, the report says at which token and by what margin the model's top two logits stood
there: a tiny margin means float noise between two equally likely tokens, not a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from billion.core.generation import stream_ids
from billion.core.loading import LoadedModel
from billion.core.sampling import SamplingSettings


@dataclass(frozen=True)
class GreedyComparison:
    ours: tuple[int, ...]
    reference: tuple[int, ...]
    #: index of the first new token that differs (None: identical)
    first_divergence: int | None
    #: top-1 minus top-2 logit at that step, from one full forward over prompt + common prefix
    margin: float | None

    @property
    def same(self) -> bool:
        return self.first_divergence is None

    def describe(self) -> str:
        if self.same:
            return f"identical ({len(self.ours)} tokens)"
        return (f"first differs at token {self.first_divergence} of {len(self.ours)} "
                f"(top-2 logit margin there {self.margin:.3g})")


def ours_greedy(loaded: LoadedModel, input_ids: torch.Tensor, new_tokens: int) -> tuple[int, ...]:
    settings = SamplingSettings(temperature=0, max_new_tokens=new_tokens, ignore_eos=True)
    update = None
    for update in stream_ids(loaded, input_ids, settings):
        pass
    assert update is not None and update.result is not None
    return update.result.token_ids


@torch.inference_mode()
def hf_greedy(model, input_ids: torch.Tensor, new_tokens: int) -> tuple[int, ...]:
    out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, top_p=None, top_k=None,
                         temperature=None, pad_token_id=0)
    return tuple(int(t) for t in out[0, input_ids.shape[1]:])


@torch.inference_mode()
def top2_margin(model, ids: torch.Tensor) -> float:
    logits = model(input_ids=ids, use_cache=False).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def compare_greedy(loaded: LoadedModel, input_ids: torch.Tensor, new_tokens: int) -> GreedyComparison:
    """Greedy tokens of our loop and of HF generate on the same model, and where they part."""
    ours = ours_greedy(loaded, input_ids, new_tokens)
    reference = hf_greedy(loaded.model, input_ids, new_tokens)
    first = next((i for i, (a, b) in enumerate(zip(ours, reference)) if a != b), None)
    if first is None and len(ours) != len(reference):
        first = min(len(ours), len(reference))
    margin = None
    if first is not None:
        prefix = torch.tensor([list(ours[:first])], dtype=input_ids.dtype, device=input_ids.device)
        margin = top2_margin(loaded.model, torch.cat([input_ids, prefix], dim=1))
    return GreedyComparison(ours, reference, first, margin)
