"""One benchmark task on one loaded model, as steps: (done, total, message, rows to store).

Multiple choice (billion.bench.mc), HumanEval in its sandbox (billion.bench.humaneval) and speed
(billion.bench.speed); an endpoint model's tasks run over its API (billion.bench.endpoint_tasks).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any, Iterator, Optional

import torch

from billion.bench.endpoint_tasks import endpoint_task_steps
from billion.bench.humaneval import greedy_generate_fn, iter_humaneval
from billion.bench.isolated import KIND as ISOLATED, isolated_memory
from billion.bench.mc import iter_score_task
from billion.bench.request import HUMANEVAL, SPEED, BenchRequest
from billion.bench.rows import humaneval_rows, mc_rows, speed_rows
from billion.bench.speed import SpeedResult, iter_speed_loaded
from billion.bench.tasks import get_task
from billion.core.loading import LoadedModel, LoadOptions
from billion.endpoints.config import EndpointModel

log = logging.getLogger(__name__)

_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def dtype_name(dtype: torch.dtype) -> str:
    return _DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def base_settings(request: BenchRequest, loaded: LoadedModel, task: str) -> dict[str, Any]:
    """Settings every stored score carries; the leaderboard keys rows on dtype and quantization."""
    settings = {"task": task, "limit": request.limit, "seed": request.seed,
                "dtype": dtype_name(loaded.dtype), "dtype_requested": request.dtype,
                "quantization": loaded.quantization, "device": loaded.device.type,
                "precision_label": loaded.precision_label}
    if request.random_weights:
        settings["random_weights"] = True
    return settings



#: (done, total, message, rows to store: set on the last step unless cancelled)
Step = tuple[int, int, str, Optional[list[dict[str, Any]]]]


def _mc_steps(loaded: LoadedModel, task: str, request: BenchRequest,
              cancel: threading.Event | None) -> Iterator[Step]:
    for p in iter_score_task(loaded.model, loaded.tokenizer, get_task(task), request.limit,
                             request.seed, cancel):
        rows = None
        # a cancelled task keeps the items it scored, stored as a limited ("quick") run
        if p.result is not None and p.result.n > 0:
            rows = mc_rows(p.result, base_settings(request, loaded, task))
        yield p.done, p.total, f"{p.done}/{p.total} items", rows


def _humaneval_steps(loaded: LoadedModel, request: BenchRequest,
                     cancel: threading.Event | None) -> Iterator[Step]:
    generate = greedy_generate_fn(loaded, request.humaneval_max_new_tokens, cancel)
    total = min(request.limit or 164, 164)
    yield 0, total, f"0/{total} problems", None
    for p in iter_humaneval(generate, request.limit, 1, cancel):
        rows = None
        if p.result is not None and not p.result.cancelled:
            rows = humaneval_rows(p.result, base_settings(request, loaded, HUMANEVAL))
        yield p.done, p.total, f"{p.done}/{p.total} problems", rows


def _speed_steps(loaded: LoadedModel, request: BenchRequest,
                 cancel: threading.Event | None) -> Iterator[Step]:
    for p in iter_speed_loaded(loaded, prompt_lengths=request.prompt_lengths,
                               new_tokens=request.new_tokens, warmup=request.warmup,
                               repeats=request.repeats, cancel=cancel):
        rows = None
        if p.result is not None and not p.result.cancelled:
            result = with_isolated_memory(p.result, loaded, request)
            rows = speed_rows(result, base_settings(request, loaded, SPEED))
        yield p.done, p.total, f"{p.done}/{p.total} timed runs", rows


def with_isolated_memory(result: SpeedResult, loaded: LoadedModel, request: BenchRequest) -> SpeedResult:
    """On CPU the server's RSS holds every loaded model: measure this one alone in a child process
    (billion.bench.isolated). If the child cannot run, the in-process figure stays, labelled so."""
    if str(loaded.device) != "cpu":
        return result  # CUDA's allocator counts tensors, not the process
    options = LoadOptions(dtype=request.dtype, quantization=request.quantization,  # type: ignore[arg-type]
                          adapter=loaded.adapter)
    try:
        alone = isolated_memory(loaded.spec.alias, options, random_weights=request.random_weights,
                                prompt_tokens=max(request.prompt_lengths),
                                new_tokens=min(request.new_tokens, 16))
    except Exception as exc:  # a measurement aid: the timings stand without it
        log.warning("isolated memory of %s failed: %s", loaded.spec.alias, exc)
        return replace(result, memory_kind="server_rss_high_water")
    return replace(result, peak_memory_bytes=alone.peak_bytes, memory_kind=ISOLATED)


def task_steps(loaded: LoadedModel, task: str, request: BenchRequest,
               cancel: threading.Event | None) -> Iterator[Step]:
    """(done, total, message, rows) per item; rows on the last step, None if cancelled."""
    if isinstance(loaded, EndpointModel):  # over the API: billion.bench.endpoint_tasks
        return endpoint_task_steps(loaded, task, request, cancel)
    if task == HUMANEVAL:
        return _humaneval_steps(loaded, request, cancel)
    if task == SPEED:
        return _speed_steps(loaded, request, cancel)
    return _mc_steps(loaded, task, request, cancel)
