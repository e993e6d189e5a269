"""What a benchmark run is asked to do and what it gives back: the request every caller fills
(the UI, the CLI, the tests) and the typed progress, outcomes and stored scores of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billion.bench.tasks import DEFAULT_SEED, TASKS, get_task
from billion.core.errors import BillionError
from billion.core.registry import DEFAULT_MODEL

HUMANEVAL = "humaneval"
SPEED = "speed"
#: every task name a request may use (multiple-choice names and their aliases resolve via get_task)
TASK_CHOICES: tuple[str, ...] = tuple(t.name for t in TASKS) + (HUMANEVAL, SPEED)


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
