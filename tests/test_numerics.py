"""Where greedy plain and speculative outputs part: replays read the target's logits there, and a
near-tie flipped by rounding is told apart from a real difference."""

from __future__ import annotations

import copy

import pytest
import torch

from billion.core.generation import decode_one_token, prefill as plain_prefill
from billion.core.kv_cache import new_cache
from billion.core.sampling import SamplingSettings
from billion.spec.decoding import KSchedule, speculative_generate
from billion.spec.lookup import PromptLookupDraft
from billion.spec.numerics import (QUANTIZED_TOLERANCE, diagnose, judge_divergence, plain_rows,
                                   speculative_rows, tolerance)
from tiny_models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def target(tokenizer):
    return tiny_llama(len(tokenizer), seed=0, layers=2)


@pytest.fixture(scope="module")
def prompt(tokenizer) -> list[int]:
    return tokenizer("0 1 2 3 4 5 6 7 8 9 0 1 2 3")["input_ids"]


def plain_greedy(model, prompt: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        cache = new_cache()
        logits = plain_prefill(model, torch.tensor([prompt]), cache)
        out = []
        for _ in range(n):
            out.append(int(logits.argmax()))
            logits = decode_one_token(model, out[-1], cache, torch.device("cpu"))
    return out


def logits_with(top: dict[int, float], size: int = 8) -> torch.Tensor:
    row = torch.full((size,), -5.0)
    for token, value in top.items():
        row[token] = value
    return row


def test_a_near_tie_flipped_by_rounding_is_numerics():
    plain = logits_with({3: 10.0, 5: 9.99999})
    spec = logits_with({3: 9.99998, 5: 10.0})
    verdict = judge_divergence(7, plain, spec, (3, 5), tolerance(torch.float32))
    assert verdict.numerics and verdict.reproduced
    assert (verdict.plain_token, verdict.speculative_token) == (3, 5)
    assert verdict.plain_margin == pytest.approx(1e-5, abs=1e-6) and verdict.margin < 1e-4


def test_a_large_difference_or_a_token_far_from_the_top_is_not_numerics():
    plain = logits_with({3: 10.0, 5: 9.0})
    far = judge_divergence(1, plain, logits_with({3: 8.0, 5: 10.0}), (3, 5), tolerance(torch.float32))
    assert not far.numerics and far.logit_difference == pytest.approx(2.0)
    third = judge_divergence(1, plain, logits_with({3: 9.9999, 6: 10.0, 5: 9.99995}), (3, 6),
                             tolerance(torch.float32))
    assert not third.numerics
    # A 0.3 logit difference on a scale of 10 is rounding at bf16, not at fp32.
    loose = (logits_with({3: 10.0, 5: 9.9}), logits_with({3: 9.8, 5: 10.0}))
    assert judge_divergence(1, *loose, (3, 5), tolerance(torch.bfloat16)).numerics
    assert not judge_divergence(1, *loose, (3, 5), tolerance(torch.float32)).numerics
    assert tolerance(torch.float32) < tolerance(torch.bfloat16) < QUANTIZED_TOLERANCE


def test_a_replay_that_does_not_reproduce_the_runs_excuses_nothing():
    plain, spec = logits_with({3: 10.0, 5: 9.99999}), logits_with({3: 9.99998, 5: 10.0})
    verdict = judge_divergence(2, plain, spec, (4, 5), tolerance(torch.float32))
    assert not verdict.reproduced and not verdict.numerics


def test_replays_reproduce_both_runs_token_by_token(target, tokenizer, prompt):
    settings = SamplingSettings(temperature=0, max_new_tokens=20)
    spec = speculative_generate(target, prompt, PromptLookupDraft(len(tokenizer)), settings, KSchedule(4))
    plain = plain_greedy(target, prompt, 20)
    assert list(spec.token_ids) == plain
    plain_logits = plain_rows(target, prompt, plain, range(0, 20))
    spec_logits = speculative_rows(target, prompt, spec.rounds, range(0, 20))
    assert [int(plain_logits[i].argmax()) for i in range(20)] == plain
    assert [int(spec_logits[i].argmax()) for i in range(20)] == plain
    assert speculative_rows(target, prompt, spec.rounds, range(18, 22)).keys() == {18, 19}  # run ended


def test_outputs_from_another_model_are_a_real_difference(target, tokenizer, prompt):
    """A speculative run whose verifier was not the target (a bug) must not pass as numerics."""
    other = copy.deepcopy(target)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.5 * p.std())
    settings = SamplingSettings(temperature=0, max_new_tokens=20)
    wrong = speculative_generate(other, prompt, PromptLookupDraft(len(tokenizer)), settings, KSchedule(4))
    plain = plain_greedy(target, prompt, 20)
    position = next(i for i, (a, b) in enumerate(zip(plain, wrong.token_ids)) if a != b)
    verdict = diagnose(target, prompt, plain, wrong.token_ids, wrong.rounds, position)
    assert verdict is not None and verdict.position == position
    # Replayed with the true target, the wrong run's token is not what the target computes there.
    assert verdict.plain_token == plain[position] and not verdict.reproduced and not verdict.numerics


def test_quantized_models_get_the_wider_tolerance(target):
    assert tolerance(target) == tolerance(torch.float32)
    quantized = copy.copy(target)
    quantized.billion_quant = "int8"  # what billion.core.quant.quantize_model marks
    assert tolerance(quantized) == QUANTIZED_TOLERANCE
