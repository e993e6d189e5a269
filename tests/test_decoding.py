"""Speculative decoding is lossless: greedy output equals the target's, sampling follows its distribution."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings, probabilities
from billion.spec.cost import expected_tokens_per_round, predicted_speedup
from billion.spec.decoding import KSchedule, accept, speculative_generate, speculative_stream
from billion.spec.drafts import ModelDraft, self_draft
from billion.spec.lookup import PromptLookupDraft
from billion.spec.source import Draft, one_hot_rows
from tiny_models import tiny_llama, tiny_neox

GREEDY = SamplingSettings(temperature=0, max_new_tokens=24)
EOS = 2  # <|im_end|> in the test tokenizer


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def target(tokenizer):
    return tiny_llama(len(tokenizer), seed=0, layers=4)


@pytest.fixture(scope="module")
def prompt(tokenizer) -> list[int]:
    return tokenizer("The capital of France is Paris. The capital of Italy is")["input_ids"]


def greedy_reference(model, prompt: list[int], max_new_tokens: int, eos: int | None = None) -> list[int]:
    """The target's own greedy decoding, EOS excluded."""
    out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=max_new_tokens,
                         eos_token_id=eos, pad_token_id=0)[0, len(prompt):].tolist()
    return out[:out.index(eos)] if eos is not None and eos in out else out


class ScriptedDraft:
    """Proposes the next tokens of a fixed script (shifted by `offset` to make every guess wrong)."""

    def __init__(self, script: list[int], prompt_len: int, vocab: int, offset: int = 0):
        self.script, self.prompt_len, self.vocab, self.offset = script, prompt_len, vocab, offset
        self.name = "scripted"

    def start(self, prompt_ids):
        pass

    def propose(self, context, k, settings, generator):
        done = len(context) - self.prompt_len
        tokens = tuple((t + self.offset) % self.vocab for t in self.script[done:done + k])
        return Draft(tokens, one_hot_rows(tokens, self.vocab))

    def rollback(self, valid):
        pass


def drafts(kind: str, target, tokenizer):
    vocab = len(tokenizer)
    return {
        "other llama": lambda: ModelDraft(tiny_llama(vocab, seed=1, layers=1), vocab, "other"),
        "neox": lambda: ModelDraft(tiny_neox(vocab, seed=2, layers=1), vocab, "neox"),
        "target itself": lambda: ModelDraft(target, vocab, "itself"),
        "prompt lookup": lambda: PromptLookupDraft(vocab),
        "self:1": lambda: self_draft(target, 1, vocab),
        "self:3": lambda: self_draft(target, 3, vocab),
    }[kind]()


@pytest.mark.parametrize("kind", ["other llama", "neox", "target itself", "prompt lookup", "self:1",
                                  "self:3"])
@pytest.mark.parametrize("schedule", [KSchedule(1), KSchedule(4), KSchedule(2, dynamic=True, k_max=6)])
def test_greedy_output_equals_target_greedy(kind, schedule, target, tokenizer, prompt):
    reference = greedy_reference(target, prompt, GREEDY.max_new_tokens)
    result = speculative_generate(target, prompt, drafts(kind, target, tokenizer), GREEDY, schedule,
                                  tokenizer=tokenizer)
    assert list(result.token_ids) == reference
    assert result.text == tokenizer.decode(reference, skip_special_tokens=True)
    assert result.finish_reason == "length"


@pytest.mark.parametrize("kind", ["other llama", "prompt lookup"])
def test_greedy_with_repetition_penalty_equals_target_greedy(kind, target, tokenizer, prompt):
    settings = SamplingSettings(temperature=0, max_new_tokens=24, repetition_penalty=1.3)
    out = target.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24, repetition_penalty=1.3,
                          eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    result = speculative_generate(target, prompt, drafts(kind, target, tokenizer), settings, KSchedule(3))
    assert list(result.token_ids) == out
    assert out != greedy_reference(target, prompt, 24)  # the penalty did change the answer


def test_draft_equal_to_target_is_always_accepted(target, tokenizer, prompt):
    result = speculative_generate(target, prompt, drafts("target itself", target, tokenizer),
                                  SamplingSettings(temperature=0, max_new_tokens=21), KSchedule(4))
    assert result.stats.acceptance_rate == 1.0
    assert result.stats.tokens_per_target_forward > 4  # 5 per round, the last round is shorter
    assert all(r.kinds[-1] == "bonus" for r in result.rounds)


def test_scripted_drafts_that_always_and_never_agree(target, tokenizer, prompt):
    vocab = len(tokenizer)
    reference = greedy_reference(target, prompt, GREEDY.max_new_tokens)
    right = speculative_generate(target, prompt, ScriptedDraft(reference, len(prompt), vocab), GREEDY,
                                 KSchedule(3))
    wrong = speculative_generate(target, prompt, ScriptedDraft(reference, len(prompt), vocab, offset=1),
                                 GREEDY, KSchedule(3))
    assert list(right.token_ids) == list(wrong.token_ids) == reference
    assert right.stats.acceptance_rate == 1.0 and right.stats.rounds == 6  # 24 tokens, 4 per round
    assert wrong.stats.acceptance_rate == 0.0 and wrong.stats.tokens_per_target_forward == 1.0
    assert all(r.kinds == ("correction",) and r.rejected == r.drafted for r in wrong.rounds[:-1])
    assert [len(r.drafted) for r in wrong.rounds[-4:]] == [3, 2, 1, 0]  # never drafts past the budget


def test_provenance_accounts_for_every_token(target, tokenizer, prompt):
    result = speculative_generate(target, prompt, drafts("prompt lookup", target, tokenizer), GREEDY,
                                  KSchedule(4), tokenizer=tokenizer)
    assert sum(len(r.emitted) for r in result.rounds) == len(result.token_ids)
    for r in result.rounds:
        assert r.emitted[:r.accepted] == r.drafted[:r.accepted]
        assert r.rejected == r.drafted[r.accepted:]
        assert r.kinds.count("accepted") == r.accepted
    assert [t.kind for t in result.tokens] == [kind for r in result.rounds for kind in r.kinds]
    assert "".join(t.text for t in result.tokens) == result.text
    times = result.token_times
    assert list(times) == sorted(times) and result.ttft_s == times[0]
    assert result.stats.accepted == sum(r.accepted for r in result.rounds)


def test_eos_inside_a_draft_ends_the_answer(target, tokenizer, prompt):
    reference = greedy_reference(target, prompt, 24)
    stop = reference[5]  # pretend this token is EOS: it lies inside a fully accepted draft
    expected = greedy_reference(target, prompt, 24, eos=stop)
    result = speculative_generate(target, prompt, drafts("target itself", target, tokenizer), GREEDY,
                                  KSchedule(8), eos_ids=frozenset({stop}))
    assert list(result.token_ids) == expected == reference[:reference.index(stop)]
    assert result.finish_reason == "eos"
    assert stop in result.rounds[-1].drafted


def test_max_new_tokens_reached_mid_draft(target, tokenizer, prompt):
    settings = SamplingSettings(temperature=0, max_new_tokens=5)
    result = speculative_generate(target, prompt, drafts("target itself", target, tokenizer), settings,
                                  KSchedule(8))
    assert list(result.token_ids) == greedy_reference(target, prompt, 5)
    assert [len(r.drafted) for r in result.rounds] == [4]  # never drafts what it could not keep


def test_empty_prompt_lookup_match_falls_back_to_plain_steps(target, tokenizer):
    prompt = list(range(10, 20))  # no token repeats, so nothing to look up at first
    reference = greedy_reference(target, prompt, 12)
    result = speculative_generate(target, prompt, PromptLookupDraft(len(tokenizer)),
                                  SamplingSettings(temperature=0, max_new_tokens=12), KSchedule(4))
    assert list(result.token_ids) == reference
    assert result.rounds[0].drafted == () and result.rounds[0].kinds == ("bonus",)


def test_sliding_window_caches_roll_back():
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
                              layer_types=["sliding_attention", "full_attention"],
                              max_position_embeddings=128)
    model = Gemma3ForCausalLM(config).eval()
    prompt = torch.randint(3, 64, (12,), generator=torch.Generator().manual_seed(0)).tolist()
    reference = greedy_reference(model, prompt, 20)
    for draft in (PromptLookupDraft(64), self_draft(model, 1, 64)):
        settings = SamplingSettings(temperature=0, max_new_tokens=20)
        result = speculative_generate(model, prompt, draft, settings, KSchedule(3))
        assert list(result.token_ids) == reference


def test_stream_yields_each_round_and_can_be_cancelled(target, tokenizer, prompt):
    updates = list(speculative_stream(target, prompt, PromptLookupDraft(len(tokenizer)), GREEDY, KSchedule(3),
                                      tokenizer=tokenizer))
    result = updates[-1].result
    assert result is not None and all(u.result is None for u in updates[:-1])
    assert "".join(u.new_text for u in updates) == result.text
    cancel = threading.Event()
    cancel.set()
    cancelled = speculative_generate(target, prompt, PromptLookupDraft(len(tokenizer)), GREEDY, KSchedule(3),
                                     cancel=cancel)
    assert cancelled.finish_reason == "cancelled" and len(cancelled.rounds) == 1


def test_stop_string_cuts_the_text(target, tokenizer, prompt):
    full = speculative_generate(target, prompt, PromptLookupDraft(len(tokenizer)), GREEDY, KSchedule(3),
                                tokenizer=tokenizer)
    stop = full.text[6:9]
    cut = speculative_generate(target, prompt, PromptLookupDraft(len(tokenizer)), GREEDY, KSchedule(3),
                               tokenizer=tokenizer, stops=(stop,))
    assert cut.finish_reason == "stop" and cut.text == full.text[:full.text.index(stop)]


@pytest.mark.parametrize("bad", [KSchedule(0), KSchedule(17), KSchedule(4, k_max=40)])
def test_bad_k_is_refused(bad, target, tokenizer, prompt):
    with pytest.raises(BillionError, match="k must be"):
        speculative_generate(target, prompt, PromptLookupDraft(len(tokenizer)), GREEDY, bad)


def test_empty_or_overlong_prompt_is_refused(target, tokenizer):
    with pytest.raises(BillionError, match="empty"):
        speculative_generate(target, [], PromptLookupDraft(len(tokenizer)), GREEDY)
    with pytest.raises(BillionError, match="context"):
        speculative_generate(target, [5] * 600, PromptLookupDraft(len(tokenizer)), GREEDY)


# --- sampling is exact -------------------------------------------------------------------------

def first_token_counts(rule, p: torch.Tensor, q: torch.Tensor, trials: int, seed: int = 0) -> torch.Tensor:
    """How often each token comes first when one draft token x ~ q goes through `rule`."""
    generator = torch.Generator().manual_seed(seed)
    drafts_x = torch.multinomial(q, trials, replacement=True, generator=generator).tolist()
    counts = torch.zeros(p.shape[-1])
    for x in drafts_x:
        accepted, token = rule(torch.stack([p, p]), q[None], [x], generator)
        counts[x if accepted else token] += 1
    return counts


def always_accept(p, q, drafted, generator):
    return len(drafted), int(torch.multinomial(p[-1], 1, generator=generator))


def fits(counts: torch.Tensor, expected_probs: torch.Tensor) -> bool:
    """Chi-square goodness of fit at the 1e-4 level; cells expecting under 5 counts are pooled."""
    if (counts[expected_probs == 0] > 0).any():
        return False
    expected = expected_probs / expected_probs.sum() * counts.sum()
    small = expected < 5
    observed = torch.cat([counts[~small], counts[small].sum()[None]])
    expected = torch.cat([expected[~small], expected[small].sum()[None]])
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    statistic = ((observed.double() - expected.double()) ** 2 / expected.double()).sum()
    # chi-square survival function with len - 1 degrees of freedom: Q(dof / 2, statistic / 2)
    dof = torch.tensor((len(observed) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(dof, statistic / 2)) > 1e-4


@pytest.mark.parametrize("settings", [SamplingSettings(temperature=1.0, top_p=1.0),
                                      SamplingSettings(temperature=0.7, top_p=0.8)])
def test_accept_rule_samples_the_target_distribution(settings):
    gen = torch.Generator().manual_seed(1)
    # Two different 8-token distributions, as a target and a draft model would give.
    p = probabilities(torch.randn(8, generator=gen) * 2, settings)
    q = probabilities(torch.randn(8, generator=gen) * 2, settings)
    assert 0.5 * (p - q).abs().sum() > 0.2  # far enough apart that a wrong rule shows
    assert fits(first_token_counts(accept, p, q, 6000), p)
    assert not fits(first_token_counts(always_accept, p, q, 6000), p)


def test_speculative_generation_samples_the_target_distribution():
    """Two-token answers through whole draft-and-verify runs (caches, rounds) follow the target."""
    vocab, prompt = 6, [1, 4, 2]
    target = tiny_llama(vocab, seed=0, layers=1, hidden=32)
    draft_model = tiny_llama(vocab, seed=3, layers=1, hidden=32)
    with torch.no_grad():  # random init gives near-uniform outputs; sharpen them so p and q differ
        target.lm_head.weight.mul_(15)
        draft_model.lm_head.weight.mul_(15)
    settings = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=2)
    exact_target = joint_two_tokens(target, prompt, settings)
    exact_draft = joint_two_tokens(draft_model, prompt, settings)
    assert 0.5 * (exact_target - exact_draft).abs().sum() > 0.2
    counts = torch.zeros(vocab * vocab)
    for seed in range(1000):
        run = speculative_generate(target, prompt, ModelDraft(draft_model, vocab, "draft"),
                                   SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=2, seed=seed),
                                   KSchedule(2))
        counts[run.token_ids[0] * vocab + run.token_ids[1]] += 1
    assert fits(counts, exact_target)
    assert not fits(counts, exact_draft)


def joint_two_tokens(model, prompt: list[int], settings: SamplingSettings) -> torch.Tensor:
    with torch.no_grad():
        first = probabilities(model(torch.tensor([prompt])).logits[0, -1], settings)
        contexts = torch.tensor([prompt + [x] for x in range(len(first))])
        second = probabilities(model(contexts).logits[:, -1], settings)
    return (first[:, None] * second).flatten()


def test_leviathan_formula():
    assert expected_tokens_per_round(1.0, 4) == 5
    assert expected_tokens_per_round(0.5, 2) == pytest.approx(1.75)
    assert expected_tokens_per_round(0.0, 4) == 1
    assert predicted_speedup(0.5, 2, 0.25) == pytest.approx(1.75 / 1.5)


# --- the real offline model --------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2(models):
    try:
        return models.load("smollm2-135m")
    except BillionError as exc:  # the package that ships its GGUF is not installed
        pytest.skip(str(exc))


@pytest.mark.parametrize("draft_name", ["prompt-lookup", pytest.param("self:10", marks=pytest.mark.slow)])
def test_smollm2_greedy_output_equals_its_own_greedy(smollm2, draft_name):
    from billion.core.generation import chat_input_ids, stop_token_ids
    from billion.spec.race import EXAMPLE_PROMPTS, build_draft, parse_draft

    prompt = chat_input_ids(smollm2, [{"role": "user", "content": EXAMPLE_PROMPTS[0][1]}])[0].tolist()
    eos = stop_token_ids(smollm2)
    settings = SamplingSettings(temperature=0, max_new_tokens=40)
    draft = build_draft(smollm2, parse_draft(draft_name)).source
    result = speculative_generate(smollm2.model, prompt, draft, settings, KSchedule(4),
                                  tokenizer=smollm2.tokenizer, eos_ids=eos)
    out = smollm2.model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=40,
                                 eos_token_id=sorted(eos), pad_token_id=smollm2.tokenizer.pad_token_id)
    reference = [t for t in out[0, len(prompt):].tolist() if t not in eos]
    assert list(result.token_ids) == reference
    assert result.stats.accepted > 0
