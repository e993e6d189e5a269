"""The benchmark runner: models x tasks, with progress per item, every score stored in the project store.

A run loads each model once (through the app's billion.core.loading.ModelCache), runs its tasks in order and stores
each finished task's scores as soon as it ends, so a later failure loses nothing. A task that fails
(an unreachable dataset, a prompt longer than the context, a model that will not load) is reported
in the progress stream and the run goes on. A cancelled task is reported, not stored: a partial
score would stand in the leaderboard as the latest result. The request and result types live in
billion.bench.request, one task's steps in billion.bench.steps.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import torch

from billion.bench.random_weights import random_model
from billion.bench.request import (HUMANEVAL, SPEED, TASK_CHOICES, BenchRequest, RunProgress,  # noqa: F401
                                   StoredScore, TaskOutcome, canonical_task, estimate_seconds)
from billion.bench.steps import base_settings, dtype_name, task_steps, with_isolated_memory  # noqa: F401
from billion.core.errors import BillionError
from billion.core.loading import LoadedModel, LoadOptions, ModelCache
from billion.endpoints.config import EndpointModel, find_endpoint, is_endpoint_name
from billion.store.store import Store

log = logging.getLogger(__name__)


def model_name(loaded: Any) -> str:
    """A loaded model's alias (with `+lora:<label>` for an adapter from the trainer, as the arena
    names it), or an endpoint model's `endpoint:<alias>`."""
    if isinstance(loaded, EndpointModel):
        return loaded.name
    label = getattr(loaded, "bench_name", None)
    return label or loaded.spec.alias


def adapter_contestant(model: str, store: Store) -> Any:
    """The registered trainer adapter named `model` ("<alias>+lora:<label>"), or None."""
    if "+lora:" not in model:
        return None
    from billion.arena.contestants import registered_contestants
    found = [c for c in registered_contestants(store) if c.name == model]
    if not found:
        raise BillionError(f"No adapter named {model!r} is registered: use 'Send to Arena' in the "
                           "LoRA trainer tab first.")
    return found[-1]


def _load_model(model: str, request: BenchRequest, options: LoadOptions, store: Store,
                models: ModelCache, endpoints: Sequence[EndpointModel]) -> tuple[Any, Callable[[], None]]:
    """The model and what ends its use: a cached model is leased for all of its tasks, so a load
    by another session cannot evict it mid-run."""
    if is_endpoint_name(model):
        return find_endpoint(model, endpoints), _held_elsewhere
    if request.random_weights:
        return random_model(model, options), _held_elsewhere
    contestant = adapter_contestant(model, store)
    if contestant is None:
        loaded, lease = models.acquire(model, options)
        return loaded, lease.release
    loaded, lease = models.acquire(contestant.alias, replace(options, adapter=contestant.adapter))
    return AdapterModel(**vars(loaded), bench_name=contestant.name), lease.release


def _held_elsewhere() -> None:
    """Nothing to release: an endpoint's server holds its weights, random weights live in the run."""


@dataclass
class AdapterModel(LoadedModel):
    """A base model with a trainer adapter on top, stored under the adapter's arena name."""

    bench_name: str = ""


def store_rows(store: Store, loaded: Any, task: str,
               rows: Sequence[dict[str, Any]]) -> tuple[StoredScore, ...]:
    stored = []
    for row in rows:
        row_id = store.add_bench_result(model=model_name(loaded),
                                        revision=getattr(loaded, "revision", "") or None,
                                        task=task, **row)
        stored.append(StoredScore(id=row_id, model=model_name(loaded), task=task, **row))
    return tuple(stored)



def describe_error(exc: BaseException) -> str:
    if isinstance(exc, BillionError):
        return str(exc)
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return "out of memory: pick a smaller model, int8/int4, or a lower limit"
    return f"{type(exc).__name__}: {exc}"


# -- the run -------------------------------------------------------------------------------------

def _is_set(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


def iter_run(request: BenchRequest, cancel: threading.Event | None = None, *, store: Store,
             models: ModelCache, endpoints: Sequence[EndpointModel] = ()) -> Iterator[RunProgress]:
    """Run every task on every model; one RunProgress per item, one with `result` per task.
    `endpoint:<alias>` models are looked up in `endpoints` and run over their API.

    Stops between items once `cancel` is set; tasks finished before that stay stored.
    """
    request = request.validated()
    steps = len(request.models) * len(request.tasks)
    step = 0
    options = LoadOptions(dtype=request.dtype, quantization=request.quantization)  # type: ignore[arg-type]
    for model in request.models:
        yield RunProgress(model, "", 0, 0, f"loading {model}", step=step, steps=steps)
        try:
            loaded, release = _load_model(model, request, options, store, models, endpoints)
        except Exception as exc:  # one model that will not load must not stop the others
            if not isinstance(exc, BillionError):
                log.exception("loading %s failed", model)
            message = f"could not load {model}: {describe_error(exc)}"
            for task in request.tasks:
                step += 1
                yield RunProgress(model, task, 0, 0, message, TaskOutcome(model, task, error=message),
                                  step, steps)
            continue
        try:
            for task in request.tasks:
                if _is_set(cancel):
                    yield RunProgress(model, task, 0, 0, "cancelled", step=step, steps=steps)
                    return
                outcome = None
                for progress in _run_task(loaded, task, request, cancel, store):
                    if progress.result is not None:
                        outcome = progress.result
                        step += 1
                    yield RunProgress(model, task, progress.done, progress.total, progress.message,
                                      progress.result, step, steps)
                if outcome is not None and outcome.cancelled:
                    return
        finally:
            release()  # a cancelled or closed run ends the lease too


def _run_task(loaded: LoadedModel, task: str, request: BenchRequest, cancel: threading.Event | None,
              store: Store) -> Iterator[RunProgress]:
    model = model_name(loaded)
    started = time.perf_counter()
    done = total = 0
    try:
        for done, total, message, rows in task_steps(loaded, task, request, cancel):
            if rows is not None:
                scores = store_rows(store, loaded, task, rows)
                notes = tuple(dict.fromkeys(r["extra"]["warning"] for r in rows if r["extra"].get("warning")))
                cut = _is_set(cancel) and done < total
                if cut:
                    notes += (f"cancelled after {done} of {total} items: those are stored as a quick "
                              "(limited) run, apart from full runs",)
                outcome = TaskOutcome(model, task, scores, elapsed_s=time.perf_counter() - started,
                                      notes=notes, cancelled=cut)
                yield RunProgress(model, task, done, total, f"{task}: stored {len(scores)} scores",
                                  outcome)
                return
            yield RunProgress(model, task, done, total, f"{task}: {message}")
    except Exception as exc:  # reported, and the run goes on with the next task
        if not isinstance(exc, BillionError):
            log.exception("%s on %s failed", task, model)
        error = f"{task} failed on {model}: {describe_error(exc)}"
        yield RunProgress(model, task, done, total, error,
                          TaskOutcome(model, task, error=error, elapsed_s=time.perf_counter() - started))
        return
    message = f"{task} cancelled after {done} of {total}; nothing stored"
    yield RunProgress(model, task, done, total, message,
                      TaskOutcome(model, task, cancelled=True, elapsed_s=time.perf_counter() - started))


def run_bench(request: BenchRequest, cancel: threading.Event | None = None, *, store: Store,
              models: ModelCache, endpoints: Sequence[EndpointModel] = (),
              on_progress: Callable[[RunProgress], None] | None = None) -> tuple[TaskOutcome, ...]:
    """Run to the end; returns every task's outcome in order."""
    outcomes = []
    for progress in iter_run(request, cancel, store=store, models=models, endpoints=endpoints):
        if on_progress is not None:
            on_progress(progress)
        if progress.result is not None:
            outcomes.append(progress.result)
    return tuple(outcomes)
