"""Why greedy plain and speculative outputs differ: numerics of a (k+1)-token verify, or a bug.

Verifying k+1 tokens in one forward adds up the same products in another order than a 1-token
step does, so the target's logits differ in their last bits (more at bf16 than at fp32). Where two
tokens are nearly tied, that can flip the greedy choice; from there the outputs part ways while
both are the target's greedy output for their own arithmetic. At the first differing position
both runs are replayed exactly (same calls, same cache) to read the target's logits there: a flip
between the two top tokens by a logit difference within the precision's rounding is numerics;
anything else is a real difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from billion.core.generation import decode_one_token, prefill as plain_prefill
from billion.core.kv_cache import new_cache
from billion.core.sampling import penalize_repeats
from billion.spec.decoding import Round, prefill, rollback, verify

#: largest logit difference between the two runs, relative to the logits' scale, that rounding
#: explains: fp32 keeps ~7 significant digits, 16-bit formats 2-3
RELATIVE_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}
SIXTEEN_BIT_TOLERANCE = 5e-2


@dataclass(frozen=True)
class Divergence:
    """The target's logits at the first position where greedy plain and speculative outputs differ."""

    position: int
    plain_token: int
    speculative_token: int
    #: plain's logit of its own token minus its logit of speculative's token (>= 0)
    plain_margin: float
    #: speculative's logit of its own token minus its logit of plain's token (>= 0)
    speculative_margin: float
    #: largest |difference| between the two runs' logits at this position
    logit_difference: float
    #: largest |logit| at this position, the scale that difference is judged against
    logit_scale: float
    #: the replays chose the tokens both runs chose (else nothing here can be trusted)
    reproduced: bool
    #: a flip between the two top tokens by a difference within the precision's rounding
    numerics: bool

    @property
    def margin(self) -> float:
        """The wider of the two runs' top-2 margins: how close to a tie the flip was."""
        return max(self.plain_margin, self.speculative_margin)


def tolerance(dtype: torch.dtype) -> float:
    return RELATIVE_TOLERANCE.get(dtype, SIXTEEN_BIT_TOLERANCE)


def _penalize(logits: torch.Tensor, ids: Sequence[int], penalty: float) -> torch.Tensor:
    return penalize_repeats(logits, torch.tensor(list(ids), dtype=torch.long), penalty)


@torch.inference_mode()
def plain_logits_at(model, prompt: Sequence[int], tokens: Sequence[int], position: int) -> torch.Tensor:
    """The logits plain decoding chose token `position` from: prefill, then one token at a time."""
    device = next(model.parameters()).device
    cache = new_cache()
    logits = plain_prefill(model, torch.tensor([list(prompt)], device=device), cache)
    for token in tokens[:position]:
        logits = decode_one_token(model, token, cache, device)
    return logits.float().cpu()


@torch.inference_mode()
def speculative_logits_at(model, prompt: Sequence[int], rounds: Sequence[Round],
                          position: int) -> torch.Tensor | None:
    """The verify row speculative decoding chose output token `position` from, by replaying its rounds."""
    device = next(model.parameters()).device
    cache = new_cache(model.config)
    cache.activate_past_recording()
    ids = list(prompt)
    prefill(model, ids, cache, device)
    done = 0
    for rnd in rounds:
        logits = verify(model, ids[-1], rnd.drafted, cache, device)
        if position < done + len(rnd.emitted):
            return logits[position - done]
        rollback(cache, len(rnd.drafted) - rnd.accepted)
        ids.extend(rnd.emitted)
        done += len(rnd.emitted)
    return None


def judge_divergence(position: int, plain: torch.Tensor, speculative: torch.Tensor,
                     expected: tuple[int | None, int | None], dtype: torch.dtype) -> Divergence:
    """Compare the two runs' logits at one position (after any repetition penalty)."""
    a, b = int(plain.argmax()), int(speculative.argmax())
    reproduced = all(want is None or want == got for want, got in zip(expected, (a, b)))
    difference = float((plain - speculative).abs().max())
    scale = float(torch.maximum(plain.abs().max(), speculative.abs().max()))
    top_plain = plain.topk(2).indices.tolist()
    top_spec = speculative.topk(2).indices.tolist()
    swapped = a != b and set(top_plain) == set(top_spec) == {a, b}
    return Divergence(
        position=position, plain_token=a, speculative_token=b,
        plain_margin=float(plain[a] - plain[b]), speculative_margin=float(speculative[b] - speculative[a]),
        logit_difference=difference, logit_scale=scale, reproduced=reproduced,
        numerics=reproduced and swapped and difference <= tolerance(dtype) * max(scale, 1.0))


def diagnose(model, prompt: Sequence[int], plain_tokens: Sequence[int], spec_tokens: Sequence[int],
             rounds: Sequence[Round], position: int, repetition_penalty: float = 1.0) -> Divergence | None:
    """Replay both runs to `position` (their first difference) and judge the flip; None if the
    speculative run has no round that reached it (cancelled)."""
    plain = plain_logits_at(model, prompt, plain_tokens, position)
    speculative = speculative_logits_at(model, prompt, rounds, position)
    if speculative is None:
        return None
    if repetition_penalty != 1.0:
        before = [*prompt, *plain_tokens[:position]]
        plain, speculative = (_penalize(plain, before, repetition_penalty),
                              _penalize(speculative, before, repetition_penalty))
    expected = (plain_tokens[position] if position < len(plain_tokens) else None,
                spec_tokens[position] if position < len(spec_tokens) else None)
    dtype = next(model.parameters()).dtype
    return judge_divergence(position, plain, speculative, expected, dtype)
