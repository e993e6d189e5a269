"""Why greedy plain and speculative outputs differ: numerics of a (k+1)-token verify, or a bug.

Verifying k+1 tokens in one forward adds up the same products in another order than a 1-token
step does, so the target's logits differ in their last bits (more at bf16 than at fp32). Where two
tokens are nearly tied, that can flip the greedy choice; from there the outputs part ways while
both are the target's greedy output for their own arithmetic. At the first differing position
both runs are replayed exactly (same calls, same cache) to read the target's logits there: if each
run's token is within the precision's rounding of the top in the other run, and the two runs'
logits differ by no more than that rounding, it is numerics; anything else is a real difference.
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
#: explains: fp32 keeps ~7 significant digits, 16-bit formats 2-3. billion's int8 kernel quantizes
#: activations per call with one range for all rows, so a row moves with the rows beside it:
#: on SmolLM2-135M, 7-17% of the logit scale between a 1-token step and a verify forward
#: (docs/benchmarks/speculative.md)
RELATIVE_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}
SIXTEEN_BIT_TOLERANCE = 5e-2
QUANTIZED_TOLERANCE = 0.25
#: agreeing positions before the parting one whose logits are compared too (the run's own noise)
WINDOW = 8


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
    #: a near-tie flipped by a logit difference within the precision's rounding
    numerics: bool
    #: largest |difference| between the two runs' logits at the agreeing positions just before:
    #: how far apart the two ways of computing are anyway in this run
    agreeing_difference: float = 0.0

    @property
    def margin(self) -> float:
        """The wider of the two runs' top-2 margins: how close to a tie the flip was."""
        return max(self.plain_margin, self.speculative_margin)


def tolerance(model_or_dtype) -> float:
    """Relative logit difference that rounding explains for this model (or dtype)."""
    if isinstance(model_or_dtype, torch.dtype):
        return RELATIVE_TOLERANCE.get(model_or_dtype, SIXTEEN_BIT_TOLERANCE)
    if getattr(model_or_dtype, "billion_quant", None) is not None:
        return QUANTIZED_TOLERANCE
    return tolerance(next(model_or_dtype.parameters()).dtype)


def _penalize(logits: torch.Tensor, ids: Sequence[int], penalty: float) -> torch.Tensor:
    return penalize_repeats(logits, torch.tensor(list(ids), dtype=torch.long), penalty)


@torch.inference_mode()
def plain_rows(model, prompt: Sequence[int], tokens: Sequence[int], positions: range) -> dict[int, torch.Tensor]:
    """The logits plain decoding chose each output token in `positions` from: prefill, then one
    token at a time, exactly as billion.core.generation decodes."""
    device = next(model.parameters()).device
    cache = new_cache()
    logits = plain_prefill(model, torch.tensor([list(prompt)], device=device), cache)
    rows = {}
    for i in range(positions.stop):
        if i in positions:
            rows[i] = logits.float().cpu()
        if i < positions.stop - 1:
            logits = decode_one_token(model, tokens[i], cache, device)
    return rows


@torch.inference_mode()
def speculative_rows(model, prompt: Sequence[int], rounds: Sequence[Round],
                     positions: range) -> dict[int, torch.Tensor]:
    """The verify rows speculative decoding chose each output token in `positions` from, by
    replaying its rounds (fewer if the run ended before)."""
    device = next(model.parameters()).device
    cache = new_cache(model.config)
    cache.activate_past_recording()
    ids = list(prompt)
    prefill(model, ids, cache, device)
    rows, done = {}, 0
    for rnd in rounds:
        if done >= positions.stop:
            break
        logits = verify(model, ids[-1], rnd.drafted, cache, device)
        rows.update({done + j: logits[j].cpu() for j in range(len(rnd.emitted)) if done + j in positions})
        rollback(cache, len(rnd.drafted) - rnd.accepted)
        ids.extend(rnd.emitted)
        done += len(rnd.emitted)
    return rows


def judge_divergence(position: int, plain: torch.Tensor, speculative: torch.Tensor,
                     expected: tuple[int | None, int | None], relative_tolerance: float,
                     agreeing_difference: float = 0.0) -> Divergence:
    """Compare the two runs' logits at one position (after any repetition penalty)."""
    a, b = int(plain.argmax()), int(speculative.argmax())
    reproduced = all(want is None or want == got for want, got in zip(expected, (a, b)))
    difference = float((plain - speculative).abs().max())
    scale = float(torch.maximum(plain.abs().max(), speculative.abs().max()))
    plain_margin, spec_margin = float(plain[a] - plain[b]), float(speculative[b] - speculative[a])
    band = relative_tolerance * max(scale, 1.0)
    # Each run's choice is within rounding of the top in the other run, and the runs differ by rounding.
    near_tie = a != b and plain_margin <= band and spec_margin <= band
    return Divergence(
        position=position, plain_token=a, speculative_token=b, plain_margin=plain_margin,
        speculative_margin=spec_margin, logit_difference=difference, logit_scale=scale, reproduced=reproduced,
        numerics=reproduced and near_tie and difference <= band, agreeing_difference=agreeing_difference)


def diagnose(model, prompt: Sequence[int], plain_tokens: Sequence[int], spec_tokens: Sequence[int],
             rounds: Sequence[Round], position: int, repetition_penalty: float = 1.0) -> Divergence | None:
    """Replay both runs to `position` (their first difference) and judge the flip; None if the
    speculative run has no round that reached it (cancelled)."""
    window = range(max(0, position - WINDOW), position + 1)
    plain = plain_rows(model, prompt, plain_tokens, window)
    speculative = speculative_rows(model, prompt, rounds, window)
    if position not in speculative:
        return None
    if repetition_penalty != 1.0:
        for i in window:
            before = [*prompt, *plain_tokens[:i]]
            plain[i] = _penalize(plain[i], before, repetition_penalty)
            speculative[i] = _penalize(speculative[i], before, repetition_penalty)
    agreeing = max((float((plain[i] - speculative[i]).abs().max()) for i in window if i < position), default=0.0)
    expected = (plain_tokens[position] if position < len(plain_tokens) else None,
                spec_tokens[position] if position < len(spec_tokens) else None)
    return judge_divergence(position, plain[position], speculative[position], expected, tolerance(model),
                            agreeing)
