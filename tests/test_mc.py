"""The multiple-choice scorer against log-likelihoods computed by hand on a tiny real model."""

from __future__ import annotations

import threading

import pytest
import torch

from billion.bench import mc
from billion.bench.tasks import McData, McItem, McTask, build_prompt, get_task, load_offline_suite

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work on a shared 2-core CPU (conftest.py)


def cloze_task(item: McItem, n_shot: int = 0, fewshot: tuple[McItem, ...] = ()) -> McTask:
    data = McData(items=(item,), fewshot=fewshot)
    return McTask(name="hand", display_name="hand", source="test", n_shot=n_shot, metric="acc_norm",
                  choice_format="text", chance=0.25, loader=lambda: data,
                  query_template="Question: {question}\nAnswer:")


def hand_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """Summed log-probability of the continuation, one plain forward pass over the whole sequence."""
    ctx = tokenizer.encode(context, add_special_tokens=False)
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    cont = whole[len(ctx):]
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits[0]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    return sum(float(logprobs[len(ctx) - 1 + j, token]) for j, token in enumerate(cont))


def argmax(values) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def test_hand_computed_loglikelihood_and_decisions(llama, tokenizer):
    # A near-uniform random model gives each token about -log(vocab), so the long answer loses on
    # the summed log-prob (acc) but wins per character (acc_norm).
    choices = ("x", "Paris. The capital of Italy is Rome.", "fox", "dog")
    item = McItem(id="q1", question="The capital of France is", choices=choices, answer=1)
    task = cloze_task(item)
    context = "Question: The capital of France is\nAnswer:"
    by_hand = [hand_logprob(llama, tokenizer, context, " " + c) for c in choices]
    pred = argmax(by_hand)
    pred_norm = argmax([lp / len(c) for lp, c in zip(by_hand, choices)])
    assert pred != pred_norm, "the constructed case must separate acc from acc_norm"

    result = mc.score_task(llama, tokenizer, task)
    score = result.items[0]
    assert score.logprobs == pytest.approx(by_hand, abs=1e-4)
    assert (score.pred, score.pred_norm) == (pred, pred_norm)
    assert score.acc_correct == (pred == 1) and score.acc_norm_correct == (pred_norm == 1)
    assert result.acc.mean == float(pred == 1) and result.acc_norm.mean == float(pred_norm == 1)
    assert result.metric == "acc_norm" and result.estimate.mean == result.acc_norm.mean == float(pred_norm == 1)
    assert score.choice_lengths == tuple(len(c) for c in choices)


def test_trailing_space_moves_to_the_continuation(tokenizer):
    ctx, cont = mc.encode_pair(tokenizer, "The capital of France is ", "Paris")
    assert ctx == tokenizer.encode("The capital of France is", add_special_tokens=False)
    whole = tokenizer.encode("The capital of France is Paris", add_special_tokens=False)
    assert ctx + cont == whole
    assert mc.encode_pair(tokenizer, "The capital of France is", " Paris") == (ctx, cont)


def test_empty_context_scores_after_the_prefix_token(tokenizer):
    ctx, cont = mc.encode_pair(tokenizer, "", "hello there")
    assert ctx == [tokenizer.bos_token_id]
    assert cont == tokenizer.encode("hello there", add_special_tokens=False)


def cached_tokenizer(alias: str):
    """The tokenizer of a compared model's tiny stand-in in the offline hub cache (real class)."""
    from transformers import AutoTokenizer

    from billion.core.hub_cache import complete_snapshot
    from billion.core.registry import resolve

    spec = resolve(alias)
    return AutoTokenizer.from_pretrained(complete_snapshot(spec.hub_id, spec.source.revision or "main"))


@pytest.mark.parametrize("alias, adds_bos", [("tinyllama", True), ("llama3.2-1b", True),
                                             ("stablelm", False), ("pythia-1b", False)])
def test_bos_follows_the_tokenizer_default_as_lm_eval_0_4_13(offline_hub, alias, adds_bos):
    tok = cached_tokenizer(alias)
    ctx, cont = mc.encode_pair(tok, "The capital of France is ", "Paris")
    assert (ctx[0] == tok.bos_token_id) == adds_bos
    assert ctx == tok.encode("The capital of France is")  # the tokenizer's default special tokens
    whole = tok.encode("The capital of France is Paris")
    assert cont == whole[len(ctx):] and tok.bos_token_id not in cont


@pytest.mark.parametrize("alias", ["tinyllama", "llama3.2-1b"])
def test_a_context_that_starts_with_bos_gets_no_second_one(offline_hub, alias):
    tok = cached_tokenizer(alias)
    ctx, _ = mc.encode_pair(tok, f"{tok.bos_token}Question: hello?", " there")
    assert ctx[0] == tok.bos_token_id and ctx.count(tok.bos_token_id) == 1


def test_an_empty_context_starts_with_bos_unless_the_continuation_does(offline_hub):
    tok = cached_tokenizer("tinyllama")
    assert mc.encode_pair(tok, "", "hello there") == ([tok.bos_token_id],
                                                       tok.encode("hello there", add_special_tokens=False))
    ctx, cont = mc.encode_pair(tok, "", f"{tok.bos_token}hello there")
    assert ctx == [tok.bos_token_id] and tok.bos_token_id not in cont


@pytest.mark.parametrize("task_name", ["billion-mc", "billion-mc-cloze"])
@pytest.mark.parametrize("arch", ["llama", "neox"])
def test_shared_cache_path_equals_full_passes(request, tokenizer, task_name, arch):
    model = request.getfixturevalue(arch)
    task, data = get_task(task_name), load_offline_suite()
    for item in mc.select_items(data.items, 2, seed=7):
        prompt = build_prompt(task, data, item)
        ctx, conts = mc.encode_choices(tokenizer, prompt.context, prompt.continuations)
        shared = mc.continuation_logprobs(model, ctx, conts)
        full = mc.continuation_logprobs_full(model, ctx, conts)
        assert shared == pytest.approx(full, abs=1e-4)
    if task_name == "billion-mc-cloze":
        assert any(len(c) > 1 for c in conts), "cloze choices exercise the batched continuation pass"


def test_shared_path_handles_continuations_of_different_lengths(llama, tokenizer):
    ctx = tokenizer.encode("def add(a, b):\n", add_special_tokens=False)
    conts = [tokenizer.encode(t, add_special_tokens=False)
             for t in ("    return a + b\n", " x", "    return", "The quick brown fox jumps over the lazy dog")]
    assert len({len(c) for c in conts}) == 4
    assert mc.continuation_logprobs(llama, ctx, conts) == pytest.approx(
        mc.continuation_logprobs_full(llama, ctx, conts), abs=1e-4)


def test_context_truncation_keeps_the_tail():
    ctx = list(range(100))
    assert mc.truncate_context(ctx, [[1, 2, 3]], max_length=50) == ctx[-48:]
    assert mc.truncate_context(ctx, [[1]], max_length=500) == ctx


def test_decide_breaks_ties_toward_the_first_choice():
    assert mc.decide([-1.0, -1.0, -3.0], [1, 1, 1]) == (0, 0)
    assert mc.decide([-2.0, -3.0], [1, 3]) == (0, 1)


def test_limit_sampling_is_seeded_and_marks_the_result(llama, tokenizer):
    items = load_offline_suite().items
    first, again = mc.select_items(items, 10, seed=3), mc.select_items(items, 10, seed=3)
    assert first == again and len(set(first)) == 10
    assert mc.select_items(items, 10, seed=4) != first
    assert [items.index(i) for i in first] == sorted(items.index(i) for i in first)
    assert mc.select_items(items, None) == items and mc.select_items(items, 10_000) == items

    result = mc.score_task(llama, tokenizer, get_task("billion-mc"), limit=3, seed=3)
    assert result.limited and result.n == 3 and result.n_available == len(items)
    assert [s.item_id for s in result.items] == [i.id for i in mc.select_items(items, 3, seed=3)]
    assert "not comparable" in result.note
    assert result.chance == pytest.approx(0.25)


def test_progress_per_item_and_cancel(llama, tokenizer):
    cancel = threading.Event()
    updates = []
    for update in mc.iter_score_task(llama, tokenizer, get_task("billion-mc"), limit=5, cancel=cancel):
        updates.append(update)
        if update.done == 2 and update.item is not None:
            cancel.set()
    assert [u.done for u in updates] == [0, 1, 2, 2]
    assert all(u.total == 5 for u in updates)
    result = updates[-1].result
    assert result is not None and result.cancelled and result.limited and result.n == 2
    assert "cancelled" in result.note


def test_full_suite_result_carries_interval_and_groups(llama, tokenizer):
    data = load_offline_suite()
    small = McData(items=data.items[:3] + data.items[-3:], fewshot=data.fewshot)
    result = mc.score_task(llama, tokenizer, get_task("billion-mc"), data=small)
    assert not result.limited and result.n == 6
    values = [float(s.acc_correct) for s in result.items]
    assert result.estimate.mean == pytest.approx(sum(values) / 6)
    assert result.estimate.ci_low <= result.estimate.mean <= result.estimate.ci_high
    assert [g for g, _ in result.by_group] == sorted({i.group for i in small.items})
