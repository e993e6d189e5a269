"""Multiple-choice scoring as lm-evaluation-harness (0.4.13) defines it.

Each choice's score is the summed log-probability of its continuation tokens given the context.
`acc` takes the argmax of those sums; `acc_norm` the argmax after dividing each by the choice's
length in characters. The context is shared by all choices of an item, so it runs once and its
KV cache is expanded across one batched pass over the continuations.
"""

from __future__ import annotations

import inspect
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Protocol, Sequence

import torch

from billion.bench.tasks import DEFAULT_SEED, McData, McItem, McPrompt, McTask, build_prompt
from billion.core.stats import Estimate, estimate_mean

Method = Literal["shared", "full"]
#: the harness's fallback when neither config nor tokenizer says how long a sequence may be
DEFAULT_MAX_LENGTH = 2048


class Cancel(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class ItemScore:
    """One scored item."""

    item_id: str
    group: str
    #: summed log-probability of each choice's continuation
    logprobs: tuple[float, ...]
    #: characters per choice: the acc_norm divisor
    choice_lengths: tuple[int, ...]
    answer: int
    pred: int
    pred_norm: int
    acc_correct: bool
    acc_norm_correct: bool
    context_tokens: int


@dataclass(frozen=True)
class TaskResult:
    """A task's score over the items scored, with its interval and chance level."""

    task: str
    display_name: str
    #: the metric `estimate` is for ("acc" or "acc_norm")
    metric: str
    estimate: Estimate
    n: int
    #: mean of 1/len(choices) over the items scored
    chance: float
    #: True when fewer items than the full split were scored: not comparable to full runs
    limited: bool
    n_shot: int
    acc: Estimate
    acc_norm: Estimate
    n_available: int
    seed: int
    cancelled: bool
    elapsed_s: float
    #: the reported metric per group (MMLU subject, suite category), sorted by group
    by_group: tuple[tuple[str, Estimate], ...]
    items: tuple[ItemScore, ...]

    @property
    def items_per_s(self) -> float:
        return self.n / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    @property
    def note(self) -> str:
        if self.cancelled:
            return f"cancelled after {self.n} of {self.n_available} items; not comparable to full runs"
        if self.limited:
            return f"limited to {self.n} of {self.n_available} items (seed {self.seed}); not comparable to full runs"
        return ""


@dataclass(frozen=True)
class Progress:
    """One step of a scoring run: the first has done=0, the last carries the result."""

    task: str
    done: int
    total: int
    item: ItemScore | None = None
    result: TaskResult | None = None


# -- tokenization --------------------------------------------------------------------------------

def prefix_token_id(tokenizer) -> int:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def tok_encode(tokenizer, text: str, add_special_tokens: bool | None = None) -> list[int]:
    """lm-evaluation-harness 0.4.13's HFLM.tok_encode (add_bos_token unset): None follows the
    tokenizer's own default (Llama, TinyLlama and Gemma tokenizers add a BOS; GPT-NeoX and GPT-2
    style ones add nothing), except that a text already starting with the BOS gets no second one."""
    kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
    if add_special_tokens is None and text.startswith(tokenizer.decode(prefix_token_id(tokenizer))):
        kwargs["add_special_tokens"] = False
    return list(tokenizer.encode(text, **kwargs))


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """The harness's split (TemplateLM.loglikelihood and _encode_pair in lm-eval 0.4.13).

    An empty context becomes the prefix token (BOS, else EOS) unless the continuation already starts
    with it. Otherwise trailing spaces of the context move to the continuation, and the
    continuation's tokens are the tail of encode(context + continuation) after encode(context).
    """
    if not context:
        continuation_ids = tok_encode(tokenizer, continuation, add_special_tokens=False)
        prefix = prefix_token_id(tokenizer)
        if continuation_ids and continuation_ids[0] == prefix:
            return continuation_ids[:1], continuation_ids[1:]
        return [prefix], continuation_ids
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tok_encode(tokenizer, context + continuation)
    context_ids = tok_encode(tokenizer, context)
    return context_ids, whole[len(context_ids):]


def encode_choices(tokenizer, context: str, continuations: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """One context encoding (it does not depend on the continuation) and each continuation's tokens."""
    pairs = [encode_pair(tokenizer, context, c) for c in continuations]
    return pairs[0][0], [cont for _, cont in pairs]


def max_length_of(model, tokenizer) -> int:
    configs = (model.config, getattr(model.config, "text_config", None))
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        for config in configs:
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else DEFAULT_MAX_LENGTH


def truncate_context(context_ids: list[int], continuations: Sequence[list[int]], max_length: int) -> list[int]:
    """Keep the context's tail so the longest choice still fits (the harness truncates from the left)."""
    room = max_length + 1 - max(len(c) for c in continuations)
    return context_ids[-room:] if len(context_ids) > room else context_ids


# -- log-likelihoods -----------------------------------------------------------------------------

def _forward_kwargs(model) -> dict:
    # Only the last position's logits are needed from the context pass; skipping the rest saves
    # a (tokens x vocabulary) matrix.
    accepts = "logits_to_keep" in inspect.signature(model.forward).parameters
    return {"logits_to_keep": 1} if accepts else {}


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def continuation_logprobs(model, context_ids: list[int], continuations: Sequence[list[int]]) -> list[float]:
    """Summed log-probability of each continuation: context once, then one batched pass on its cache."""
    device = _device(model)
    out = model(input_ids=torch.tensor([context_ids], device=device), use_cache=True, **_forward_kwargs(model))
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    totals = [float(first[cont[0]]) if cont else 0.0 for cont in continuations]
    longer = [i for i, cont in enumerate(continuations) if len(cont) > 1]
    if not longer:
        return totals
    # Inputs are each continuation but its last token, right-padded: causal attention keeps the
    # padding (always after the real tokens) out of every position that is read.
    width = max(len(continuations[i]) - 1 for i in longer)
    rows = [continuations[i][:-1] + [continuations[i][-1]] * (width - len(continuations[i]) + 1) for i in longer]
    cache = out.cache
    cache.batch_repeat_interleave(len(longer))
    logits = model(input_ids=torch.tensor(rows, device=device), cache=cache, use_cache=True).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    for row, i in enumerate(longer):
        targets = torch.tensor(continuations[i][1:], device=device)
        picked = logprobs[row, torch.arange(len(targets), device=device), targets]
        totals[i] += float(picked.sum())
    return totals


@torch.inference_mode()
def continuation_logprobs_full(model, context_ids: list[int], continuations: Sequence[list[int]]) -> list[float]:
    """The reference path: one full forward pass of context + continuation per choice."""
    device = _device(model)
    totals = []
    for cont in continuations:
        if not cont:
            totals.append(0.0)
            continue
        ids = torch.tensor([(context_ids + cont)[:-1]], device=device)
        logits = model(input_ids=ids).logits[0, -len(cont):]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        totals.append(float(logprobs[torch.arange(len(cont), device=device), torch.tensor(cont, device=device)].sum()))
    return totals


def decide(logprobs: Sequence[float], choice_lengths: Sequence[int]) -> tuple[int, int]:
    """(acc prediction, acc_norm prediction); ties go to the first choice, as with numpy's argmax."""
    pred = max(range(len(logprobs)), key=lambda i: (logprobs[i], -i))
    normed = [lp / length for lp, length in zip(logprobs, choice_lengths)]
    pred_norm = max(range(len(normed)), key=lambda i: (normed[i], -i))
    return pred, pred_norm


def score_prompt(model, tokenizer, prompt: McPrompt, item: McItem, max_length: int | None = None,
                 method: Method = "shared") -> ItemScore:
    context_ids, continuations = encode_choices(tokenizer, prompt.context, prompt.continuations)
    context_ids = truncate_context(context_ids, continuations, max_length or max_length_of(model, tokenizer))
    scorer = continuation_logprobs if method == "shared" else continuation_logprobs_full
    logprobs = tuple(scorer(model, context_ids, continuations))
    lengths = tuple(len(text) for text in prompt.choice_texts)
    pred, pred_norm = decide(logprobs, lengths)
    return ItemScore(item_id=item.id, group=item.group, logprobs=logprobs, choice_lengths=lengths,
                     answer=prompt.answer, pred=pred, pred_norm=pred_norm, acc_correct=pred == prompt.answer,
                     acc_norm_correct=pred_norm == prompt.answer, context_tokens=len(context_ids))


# -- tasks ---------------------------------------------------------------------------------------

def select_items(items: Sequence[McItem], limit: int | None, seed: int = DEFAULT_SEED) -> tuple[McItem, ...]:
    """All items, or a seeded sample of `limit` of them kept in split order."""
    if limit is None or limit >= len(items):
        return tuple(items)
    picked = sorted(random.Random(seed).sample(range(len(items)), max(limit, 0)))
    return tuple(items[i] for i in picked)


def _metric_estimate(scores: Sequence[ItemScore], metric: str) -> Estimate:
    return estimate_mean([float(s.acc_correct if metric == "acc" else s.acc_norm_correct) for s in scores])


def summarize(task: McTask, scores: Sequence[ItemScore], n_available: int, seed: int, cancelled: bool,
              elapsed_s: float) -> TaskResult:
    groups = sorted({s.group for s in scores})
    by_group = tuple((g, _metric_estimate([s for s in scores if s.group == g], task.metric)) for g in groups)
    chance = (sum(1 / len(s.logprobs) for s in scores) / len(scores)) if scores else task.chance
    estimate = _metric_estimate(scores, task.metric)
    return TaskResult(task=task.name, display_name=task.display_name, metric=task.metric, estimate=estimate,
                      n=len(scores), chance=chance, limited=cancelled or len(scores) < n_available,
                      n_shot=task.n_shot, acc=_metric_estimate(scores, "acc"),
                      acc_norm=_metric_estimate(scores, "acc_norm"), n_available=n_available, seed=seed,
                      cancelled=cancelled, elapsed_s=elapsed_s, by_group=by_group, items=tuple(scores))


def _is_cancelled(cancel: Cancel | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if hasattr(cancel, "is_set") else bool(cancel())


def iter_score_task(model, tokenizer, task: McTask, limit: int | None = None, seed: int = DEFAULT_SEED,
                    cancel: Cancel | Callable[[], bool] | None = None, method: Method = "shared",
                    data: McData | None = None) -> Iterator[Progress]:
    """Score a task item by item; the last Progress carries the TaskResult.

    `cancel` (a threading.Event or a callable) stops the run between items; the result then covers
    the items scored so far and says so.
    """
    data = data or task.loader()
    items = select_items(data.items, limit, seed)
    max_length = max_length_of(model, tokenizer)
    model.eval()
    scores: list[ItemScore] = []
    start = time.perf_counter()
    yield Progress(task.name, 0, len(items))
    cancelled = False
    for item in items:
        if _is_cancelled(cancel):
            cancelled = True
            break
        prompt = build_prompt(task, data, item, seed)
        scores.append(score_prompt(model, tokenizer, prompt, item, max_length, method))
        yield Progress(task.name, len(scores), len(items), item=scores[-1])
    result = summarize(task, scores, len(data.items), seed, cancelled, time.perf_counter() - start)
    yield Progress(task.name, len(scores), len(items), result=result)


def score_task(model, tokenizer, task: McTask, limit: int | None = None, seed: int = DEFAULT_SEED,
               cancel: Cancel | Callable[[], bool] | None = None, method: Method = "shared",
               data: McData | None = None) -> TaskResult:
    """Score a task to the end and return its result."""
    last = None
    for last in iter_score_task(model, tokenizer, task, limit, seed, cancel, method, data):
        pass
    assert last is not None and last.result is not None
    return last.result

