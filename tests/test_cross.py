"""Drafts through text (universal assisted generation): a draft model with another tokenizer proposes
text that the target re-tokenizes; the output stays the target's own."""

from __future__ import annotations

import pytest
import torch

from billion.core.sampling import SamplingSettings
from billion.spec.cross import TextDraft, common_prefix
from billion.spec.decoding import KSchedule, speculative_generate
from tiny_models import build_tokenizer, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")
GREEDY = SamplingSettings(temperature=0, max_new_tokens=30)


@pytest.fixture(scope="module")
def other_tokenizer():
    return build_tokenizer(vocab_size=300)


@pytest.fixture(scope="module")
def target(tokenizer):
    return tiny_llama(len(tokenizer), seed=0, layers=2)


@pytest.fixture(scope="module")
def prompt(tokenizer) -> list[int]:
    return tokenizer("The capital of France is Paris. The capital of Italy is")["input_ids"]


def reference(model, prompt: list[int], n: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=n, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2 and common_prefix([], [1]) == 0


def test_draft_with_another_tokenizer_is_lossless(target, tokenizer, other_tokenizer, prompt):
    assert tokenizer.get_vocab() != other_tokenizer.get_vocab()
    draft = TextDraft(tiny_llama(len(other_tokenizer), seed=3, layers=1), other_tokenizer, tokenizer,
                      len(tokenizer), "other (via text)")
    result = speculative_generate(target, prompt, draft, GREEDY, KSchedule(4), tokenizer=tokenizer)
    assert list(result.token_ids) == reference(target, prompt, 30)
    assert result.stats.drafted > 0


def test_the_text_path_loses_nothing_when_the_draft_is_the_target():
    """SmolLM2 drafting for itself through decode -> encode: its drafts are its own greedy text, so
    nearly all are accepted (random tiny models emit broken UTF-8 bytes, hence a real model here)."""
    from billion.core.errors import BillionError
    from billion.core.generation import chat_input_ids
    from billion.core.loading import load_fresh
    try:
        smollm2 = load_fresh("smollm2-135m")
    except BillionError as exc:
        pytest.skip(str(exc))
    prompt = chat_input_ids(smollm2, [{"role": "user", "content": "Name three colours."}])[0].tolist()
    draft = TextDraft(smollm2.model, smollm2.tokenizer, smollm2.tokenizer, len(smollm2.tokenizer),
                      "itself (via text)")
    settings = SamplingSettings(temperature=0, max_new_tokens=24)
    result = speculative_generate(smollm2.model, prompt, draft, settings, KSchedule(4))
    assert list(result.token_ids) == reference(smollm2.model, prompt, 24)
    assert result.stats.acceptance_rate > 0.9


def test_text_converts_to_the_target_tokens_that_spell_it(tokenizer, other_tokenizer):
    draft = TextDraft(tiny_llama(len(other_tokenizer), seed=3, layers=1), other_tokenizer, tokenizer,
                      len(tokenizer), "other")
    context = tokenizer("The capital of France")["input_ids"]
    ids = draft.to_target(context, " is Paris. The cat")
    assert tokenizer.decode(context + ids) == "The capital of France is Paris. The cat"


def test_the_draft_cache_keeps_only_what_is_still_true(target, tokenizer, other_tokenizer, prompt):
    model = tiny_llama(len(other_tokenizer), seed=3, layers=1)
    draft = TextDraft(model, other_tokenizer, tokenizer, len(tokenizer), "other")
    draft.start(prompt)
    draft.propose(prompt, 5, GREEDY, None)  # its cache now holds 5 drafted tokens past the prompt
    context = prompt + tokenizer(" Rome.")["input_ids"]  # the target said something else
    ids = draft.draft_ids(context)
    with torch.inference_mode():
        synced = draft._sync(ids)
        fresh = model(torch.tensor([ids])).logits[0, -1]
    assert draft.seen == ids
    assert torch.allclose(synced, fresh, atol=1e-5)


def test_proposals_are_deterministic_so_sampling_stays_exact(target, tokenizer, other_tokenizer, prompt):
    draft = TextDraft(tiny_llama(len(other_tokenizer), seed=3, layers=1), other_tokenizer, tokenizer,
                      len(tokenizer), "other")
    draft.start(prompt)
    sampling = SamplingSettings(temperature=0.8, seed=1, max_new_tokens=12)
    first = draft.propose(prompt, 4, sampling, torch.Generator().manual_seed(0))
    again = draft.propose(prompt, 4, sampling, torch.Generator().manual_seed(1))
    # A fixed function of the context (one-hot q): the acceptance rule then samples the target exactly.
    assert first.q is None and first.tokens == again.tokens
    result = speculative_generate(target, prompt, draft, sampling, KSchedule(3))
    assert 0 < len(result.token_ids) <= 12
