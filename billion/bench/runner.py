"""The benchmark runner: models x tasks, with progress per item, every score stored in the project store.

A run loads each model once (through the app's billion.core.loading.ModelCache), runs its tasks in order and stores
each finished task's scores as soon as it ends, so a later failure loses nothing. A task that fails
(an unreachable dataset, a prompt longer than the context, a model that will not load) is reported
in the progress stream and the run goes on. A cancelled task is reported, not stored: a partial
score would stand in the leaderboard as the latest result.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import torch

from billion.bench.humaneval import HumanEvalResult, greedy_generate_fn, iter_humaneval
from billion.bench.mc import TaskResult, iter_score_task
from billion.bench.random_weights import LABEL as RANDOM_LABEL, random_model
from billion.bench.speed import SpeedResult, iter_speed_loaded
from billion.bench.tasks import DEFAULT_SEED, TASKS, get_task
from billion.core.errors import BillionError
from billion.core.loading import LoadedModel, LoadOptions, ModelCache
from billion.core.registry import DEFAULT_MODEL
from billion.core.stats import Estimate
from billion.bench.endpoint_tasks import endpoint_task_steps
from billion.endpoints.config import EndpointModel, find_endpoint, is_endpoint_name
from billion.store.store import Store

log = logging.getLogger(__name__)

HUMANEVAL = "humaneval"
SPEED = "speed"
#: every task name a request may use (multiple-choice names and their aliases resolve via get_task)
TASK_CHOICES: tuple[str, ...] = tuple(t.name for t in TASKS) + (HUMANEVAL, SPEED)
LIMITED_NOTE = "limited: not comparable to full runs"
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class BenchRequest:
    """What to run. The UI, the CLI and the tests all build one of these; its defaults are the only ones."""

    #: registry aliases, hub ids or local model folders
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    #: names from TASK_CHOICES (aliases such as "offline-mc" allowed)
    tasks: tuple[str, ...] = ("billion-mc",)
    #: items (or HumanEval problems) per task; None runs the full task
    limit: int | None = None
    dtype: str = "auto"
    quantization: str = "none"
    #: item sampling and few-shot seed of the multiple-choice tasks
    seed: int = DEFAULT_SEED
    #: speed: prompt lengths in tokens, new tokens per run, warm-up and timed runs
    prompt_lengths: tuple[int, ...] = (128, 512)
    new_tokens: int = 64
    warmup: int = 1
    repeats: int = 3
    #: HumanEval: the most tokens generated per problem
    humaneval_max_new_tokens: int = 512
    #: speed only: the model's architecture with random weights (billion.bench.random_weights),
    #: for hub models that are not downloaded; every row says so
    random_weights: bool = False

    def validated(self) -> "BenchRequest":
        """The request with task names resolved; a BillionError names what is wrong."""
        if not self.models:
            raise BillionError("No model chosen: pick at least one model to benchmark.")
        if not self.tasks:
            raise BillionError(f"No task chosen: pick at least one of {', '.join(TASK_CHOICES)}.")
        if self.limit is not None and self.limit < 1:
            raise BillionError(f"limit must be at least 1 item (got {self.limit}); leave it empty "
                               "for the full task.")
        tasks = tuple(dict.fromkeys(canonical_task(t) for t in self.tasks))
        if self.random_weights and tasks != (SPEED,):
            raise BillionError("Random weights answer noise, so they measure speed only: run the "
                               "speed task alone (--speed-only).")
        return BenchRequest(**{**self.__dict__, "tasks": tasks})


@dataclass(frozen=True)
class StoredScore:
    """One stored row of the bench_results table, as the runner wrote it."""

    id: int
    model: str
    task: str
    metric: str
    score: float
    stderr: float | None
    n: int | None
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def limited(self) -> bool:
        return bool(self.settings.get("limited"))


@dataclass(frozen=True)
class TaskOutcome:
    """How one task went for one model: its stored scores, or why there are none."""

    model: str
    task: str
    scores: tuple[StoredScore, ...] = ()
    #: why the task produced no scores (None when it succeeded)
    error: str | None = None
    cancelled: bool = False
    elapsed_s: float = 0.0
    #: what a person should know about stored scores (e.g. items that timed out and count as failed)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


@dataclass(frozen=True)
class RunProgress:
    """One step of a run. `result` is set when a task ends (stored, failed or cancelled)."""

    model: str
    task: str
    #: items done / total within the current task
    done: int
    total: int
    message: str
    result: TaskOutcome | None = None
    #: tasks finished / all (model, task) pairs of the run
    step: int = 0
    steps: int = 0


def canonical_task(name: str) -> str:
    key = name.strip().lower()
    if key in (HUMANEVAL, SPEED):
        return key
    try:
        return get_task(key).name
    except BillionError:
        raise BillionError(f"Unknown task {name!r}: choose from {', '.join(TASK_CHOICES)} "
                           "(offline-mc is an alias of billion-mc).") from None


def estimate_seconds(request: BenchRequest) -> int:
    """A generous guess of a run's duration on a GPU (for a ZeroGPU time slot)."""
    per_task = {HUMANEVAL: 3.0 * (request.limit or 164), SPEED: 20.0 * len(request.prompt_lengths)}
    mc = 0.3 * (request.limit or 1000)
    tasks = sum(per_task.get(canonical_task(t), mc) for t in request.tasks)
    return int(30 + len(request.models) * (20 + tasks))


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


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _estimate_dict(estimate: Estimate) -> dict[str, Any]:
    return {"mean": _finite(estimate.mean), "stderr": _finite(estimate.stderr), "n": estimate.n}


# -- turning engine results into store rows ------------------------------------------------------

def mc_rows(result: TaskResult, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's reported metric, with both metrics, per-group scores and the interval as extras."""
    est = result.estimate
    return [{
        "metric": result.metric, "score": est.mean, "stderr": _finite(est.stderr), "n": result.n,
        "settings": {**settings, "n_shot": result.n_shot, "limited": result.limited},
        "extra": {"ci_low": _finite(est.ci_low), "ci_high": _finite(est.ci_high),
                  "chance": result.chance, "display_name": result.display_name,
                  "acc": _estimate_dict(result.acc), "acc_norm": _estimate_dict(result.acc_norm),
                  "by_group": {g: _estimate_dict(e) for g, e in result.by_group},
                  "n_available": result.n_available, "elapsed_s": result.elapsed_s,
                  "note": LIMITED_NOTE if result.limited else ""},
    }]


def humaneval_rows(result: HumanEvalResult, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """pass@k for each k the samples allow (pass@1 with greedy decoding)."""
    rows = []
    common = {**settings, "n_shot": 0, "limited": result.limited, "n_samples": result.n_samples,
              "decoding": "greedy", **{k: v for k, v in result.settings.items() if k != "limit"}}
    passed = [p.task_id for p in result.per_problem if p.correct]
    timed_out = [p.task_id for p in result.per_problem if any(o.status == "timeout" for o in p.outcomes)]
    warning = (f"{len(timed_out)} of {result.n_problems} problems ran past the "
               f"{result.settings.get('timeout_s', 0):g} s sandbox limit and count as failed: "
               f"{', '.join(timed_out[:10])}" if timed_out else "")
    for k, est in sorted(result.pass_at_k.items()):
        rows.append({
            "metric": f"pass@{k}", "score": est.mean, "stderr": _finite(est.stderr), "n": est.n,
            "settings": common,
            "extra": {"ci_low": _finite(est.ci_low), "ci_high": _finite(est.ci_high),
                      "chance": result.chance, "display_name": "HumanEval",
                      "passed": passed, "timed_out": timed_out, "warning": warning,
                      "n_available": 164, "elapsed_s": result.seconds,
                      "note": LIMITED_NOTE if result.limited else ""},
        })
    return rows


def speed_rows(result: SpeedResult, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """ttft and decode tokens/s per prompt length (median, range in extra), peak memory, weight bytes."""
    common = {**settings, "limit": None, "limited": False,
              "new_tokens": result.timings[0].new_tokens if result.timings else None,
              "warmup": result.warmup, "repeats": result.repeats,
              "torch_threads": result.torch_threads, "memory_kind": result.memory_kind,
              "prompt_lengths": [t.prompt_tokens for t in result.timings]}
    rows = []
    random = f"{RANDOM_LABEL}; " if settings.get("random_weights") else ""
    for timing in result.timings:
        for metric, spread in ((f"ttft_s@{timing.prompt_tokens}", timing.ttft_s),
                               (f"decode_tok_s@{timing.prompt_tokens}", timing.decode_tokens_per_s)):
            rows.append({"metric": metric, "score": spread.median, "stderr": None, "n": spread.n,
                         "settings": common,
                         "extra": {"low": spread.low, "high": spread.high,
                                   "note": f"{random}median of {spread.n} runs"}})
    rows.append({"metric": "peak_memory_bytes", "score": float(result.peak_memory_bytes),
                 "stderr": None, "n": None, "settings": common,
                 "extra": {"note": f"{random}{result.memory_kind} over the timed runs"}})
    rows.append({"metric": "weight_bytes", "score": float(result.weight_bytes), "stderr": None,
                 "n": None, "settings": common, "extra": {"note": f"{random}parameters and buffers"}})
    return rows


def model_name(loaded: Any) -> str:
    """A loaded model's alias, or an endpoint model's `endpoint:<alias>`."""
    return loaded.name if isinstance(loaded, EndpointModel) else loaded.spec.alias


def store_rows(store: Store, loaded: Any, task: str,
               rows: Sequence[dict[str, Any]]) -> tuple[StoredScore, ...]:
    stored = []
    for row in rows:
        row_id = store.add_bench_result(model=model_name(loaded),
                                        revision=getattr(loaded, "revision", "") or None,
                                        task=task, **row)
        stored.append(StoredScore(id=row_id, model=model_name(loaded), task=task, **row))
    return tuple(stored)


# -- running one task ----------------------------------------------------------------------------

#: (done, total, message, rows to store: set on the last step unless cancelled)
Step = tuple[int, int, str, Optional[list[dict[str, Any]]]]


def _mc_steps(loaded: LoadedModel, task: str, request: BenchRequest,
              cancel: threading.Event | None) -> Iterator[Step]:
    for p in iter_score_task(loaded.model, loaded.tokenizer, get_task(task), request.limit,
                             request.seed, cancel):
        rows = None
        if p.result is not None and not p.result.cancelled:
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
            rows = speed_rows(p.result, base_settings(request, loaded, SPEED))
        yield p.done, p.total, f"{p.done}/{p.total} timed runs", rows


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
            if is_endpoint_name(model):
                loaded = find_endpoint(model, endpoints)
            elif request.random_weights:
                loaded = random_model(model, options)
            else:
                loaded = models.load(model, options)
        except Exception as exc:  # one model that will not load must not stop the others
            if not isinstance(exc, BillionError):
                log.exception("loading %s failed", model)
            message = f"could not load {model}: {describe_error(exc)}"
            for task in request.tasks:
                step += 1
                yield RunProgress(model, task, 0, 0, message, TaskOutcome(model, task, error=message),
                                  step, steps)
            continue
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
                outcome = TaskOutcome(model, task, scores, elapsed_s=time.perf_counter() - started,
                                      notes=notes)
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
