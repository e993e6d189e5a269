"""Multiple choice over an endpoint that returns prompt log-probabilities (vLLM's /v1/completions
with `echo` and `logprobs`, as lm-evaluation-harness's local-completions model asks for them).

Each choice is the prompt context + continuation; its score is the sum of the log-probabilities of
the tokens that start inside the continuation (found by character offset, so no local tokenizer is
needed). Prompts, item sampling, decisions and the summary are the local scorer's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from billion.endpoints.client import client_for, explain
from billion.endpoints.config import EndpointModel


def continuation_logprob(endpoint: EndpointModel, context: str, continuation: str) -> float:
    """log P(continuation | context) from the server's echoed prompt log-probabilities."""
    text = context + continuation
    failure = None
    try:
        reply = client_for(endpoint).completions.create(
            model=endpoint.model, prompt=text, max_tokens=1, temperature=0, echo=True, logprobs=1)
        logprobs = reply.choices[0].logprobs
        pairs = list(zip(logprobs.text_offset, logprobs.token_logprobs))
    except Exception as exc:  # explained outside the except block: nothing chained to it
        failure = explain(exc, endpoint)
    if failure is not None:
        raise failure
    # Tokens past the prompt are the one generated token: not part of the score.
    return float(sum(v for offset, v in pairs if len(context) <= offset < len(text) and v is not None))


def endpoint_mc_steps(endpoint: EndpointModel, task_name: str, request: Any,
                      cancel: threading.Event | None) -> Iterator[tuple]:
    """(done, total, message, rows) per item; rows on the last step unless cancelled."""
    from billion.bench.mc import ItemScore, decide, select_items, summarize
    from billion.bench.runner import mc_rows
    from billion.bench.tasks import build_prompt, get_task
    from billion.bench.endpoint_tasks import endpoint_settings

    task = get_task(task_name)
    data = task.loader()
    items = select_items(data.items, request.limit, request.seed)
    started, scores = time.perf_counter(), []
    yield 0, len(items), f"0/{len(items)} items", None
    for item in items:
        if cancel is not None and cancel.is_set():
            return
        prompt = build_prompt(task, data, item, request.seed)
        logprobs = tuple(continuation_logprob(endpoint, prompt.context, c) for c in prompt.continuations)
        lengths = tuple(len(text) for text in prompt.choice_texts)
        pred, pred_norm = decide(logprobs, lengths)
        scores.append(ItemScore(item_id=item.id, group=item.group, logprobs=logprobs,
                                choice_lengths=lengths, answer=prompt.answer, pred=pred,
                                pred_norm=pred_norm, acc_correct=pred == prompt.answer,
                                acc_norm_correct=pred_norm == prompt.answer, context_tokens=0))
        if len(scores) < len(items):
            yield len(scores), len(items), f"{len(scores)}/{len(items)} items", None
    result = summarize(task, scores, len(data.items), request.seed, False, time.perf_counter() - started)
    rows = mc_rows(result, endpoint_settings(request, endpoint, task.name))
    yield len(scores), len(items), f"{len(scores)}/{len(items)} items", rows
