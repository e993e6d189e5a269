"""Prompt lookup: the incremental n-gram index finds what a full rescan finds, the adaptive choice
learns from accepted drafts, and the output stays the target's greedy output."""

from __future__ import annotations

import random

import pytest
import torch

from billion.core.sampling import SamplingSettings
from billion.spec.decoding import KSchedule, speculative_generate
from billion.spec.lookup import AcceptanceModel, NGramIndex, PromptLookupDraft
from tiny_models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")
GREEDY = SamplingSettings(temperature=0)


def rescan(ids: list[int], n: int) -> int | None:
    """End of the latest earlier occurrence of ids' last n tokens, by scanning everything."""
    suffix = ids[-n:]
    for end in range(len(ids) - 2, n - 2, -1):
        if ids[end - n + 1:end + 1] == suffix:
            return end
    return None


def test_incremental_index_finds_what_a_rescan_finds():
    rng = random.Random(0)
    ids: list[int] = []
    index = NGramIndex(1, 4)
    for _ in range(400):
        ids.append(rng.randrange(6))  # a small alphabet: many repeats
        index.extend(ids)
        for n in range(1, 5):
            assert index.match(ids, n) == (rescan(ids, n) if len(ids) > n else None)
    assert index.indexed == len(ids) - 1  # each position was indexed once, never rescanned


def test_index_starts_over_on_a_new_list():
    index = NGramIndex(1, 2)
    index.extend([1, 2, 3, 1, 2])
    assert index.match([1, 2, 3, 1, 2], 2) == 1
    index.extend([7, 8])
    assert index.indexed == 1 and index.match([7, 8, 7], 1) == 0


def test_fixed_lookup_drafts_the_longest_match_continuation():
    draft = PromptLookupDraft(100, max_ngram=3, adaptive=False)
    context = [5, 6, 7, 8, 9, 10, 11, 1, 6, 7, 8]
    draft.start(context)
    assert draft.propose(context, 3, GREEDY, None).tokens == (9, 10, 11)
    assert draft.propose([1, 2, 3], 3, GREEDY, None).tokens == ()  # nothing repeats


def test_adaptive_lookup_drafts_more_after_acceptances_and_less_after_rejections():
    context = list(range(10, 40)) + list(range(10, 14))  # the prompt's span is being repeated
    trusting, doubting = PromptLookupDraft(100), PromptLookupDraft(100)
    for draft in (trusting, doubting):
        draft.start(context)
    first = len(trusting.propose(context, 16, GREEDY, None).tokens)
    for _ in range(20):
        trusting.propose(context, 16, GREEDY, None)
        trusting.observe(8, 8, 0.01)  # every drafted token accepted
        doubting.propose(context, 16, GREEDY, None)
        doubting.observe(8, 0, 0.01)  # every first token rejected
    assert len(trusting.propose(context, 16, GREEDY, None).tokens) > first
    assert len(doubting.propose(context, 16, GREEDY, None).tokens) < first


def test_acceptance_model_counts_only_judged_tokens():
    model = AcceptanceModel(prior=0.5, prior_copying=0.9, weight=2)
    model.record(3, False, drafted=5, accepted=2)  # 2 accepted, then 1 rejection; 2 never judged
    assert model.alpha(3, False) == pytest.approx((2 + 1) / (3 + 2))
    assert model.alpha(2, False) == 0.5 and model.alpha(3, True) == 0.9
    model.record(1, True, drafted=4, accepted=4)  # while copying, every match size shares one count
    assert model.alpha(4, True) == pytest.approx((4 + 1.8) / (4 + 2))


def test_an_edited_copy_resumes_where_it_left_off():
    """After a correction, the occurrence just past the copy position beats the latest one."""
    source = [50, 51, 52, 53, 9, 54, 55, 56]  # a text with a '9' inside it...
    context = source + [70, 9] + [60, 61, 9]  # ...then other text with '9's, the latest just now
    draft = PromptLookupDraft(100)
    draft.start(context)
    draft.pointer = 4  # the answer was copying the source up to position 4
    assert draft.propose(context, 3, GREEDY, None).tokens[:3] == (54, 55, 56)
    # With no copy going on (or none near), the latest occurrence.
    assert draft.index.match(context, 1) == 9 and draft.index.match(context, 1, after=3) == 4


@pytest.mark.parametrize("adaptive", [True, False])
def test_lookup_output_is_the_target_greedy_output(tokenizer, adaptive):
    model = tiny_llama(len(tokenizer), seed=0, layers=2)
    prompt = tokenizer("0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 0 1 2 3")["input_ids"]
    reference = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=40,
                               pad_token_id=0)[0, len(prompt):].tolist()
    settings = SamplingSettings(temperature=0, max_new_tokens=40)
    result = speculative_generate(model, prompt, PromptLookupDraft(len(tokenizer), adaptive=adaptive),
                                  settings, KSchedule(8))
    assert list(result.token_ids) == reference
