"""HumanEval: the real problems, checks in the sandbox, pass@k, progress and cancel."""

from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from billion.bench.humaneval import (STOP_SEQUENCES, check_completion, generation_prompt, greedy_generate_fn,
                                     iter_humaneval, load_problems, reference_completion, run_humaneval,
                                     truncate_at_stop)
from billion.bench.sandbox import SandboxLimits
from billion.core.errors import BillionError
from billion.core.stats import pass_at_k

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work on a shared 2-core CPU (conftest.py)

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox uses Linux resource limits")


@pytest.fixture(scope="module")
def problems():
    return load_problems()


@pytest.fixture(scope="module")
def canonical(problems):
    """A generate_fn that answers every problem with its reference solution."""
    answers = {generation_prompt(p): reference_completion(p) for p in problems}
    return lambda prompt, stop: answers[prompt]


WRONG = "\n    return None\n"


def codex_pass_at_k(n: int, c: int, k: int) -> float:
    """The numpy estimator as printed in Chen et al. (2021), figure 3."""
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


def test_all_164_problems_load_in_order(problems):
    assert len(problems) == 164
    assert [p.task_id for p in problems] == [f"HumanEval/{i}" for i in range(164)]
    assert all(p.prompt and p.test and p.entry_point and p.canonical_solution for p in problems)
    assert all(f"def {p.entry_point}" in p.prompt for p in problems)


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (10, 3, 1, 0.3), (5, 0, 1, 0.0), (5, 0, 3, 0.0), (5, 5, 1, 1.0), (5, 5, 5, 1.0),
    (1, 1, 1, 1.0), (1, 0, 1, 0.0), (4, 1, 2, 0.5), (10, 2, 10, 1.0),
])
def test_pass_at_k_known_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_matches_the_codex_formula_and_the_definition():
    for n in (1, 2, 5, 10, 20, 200):
        for c in range(0, n + 1, max(1, n // 7)):
            for k in (1, 2, 5, 10, 100):
                if k > n:
                    continue
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(codex_pass_at_k(n, c, k), abs=1e-12)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_truncate_at_the_first_stop_sequence():
    text = "    return a + b\n\n\ndef other():\n    pass\nif x:\n"
    assert truncate_at_stop(text) == "    return a + b\n\n"
    assert truncate_at_stop("    x = 1\n# comment\nprint(x)") == "    x = 1"
    assert truncate_at_stop("    return 1\n") == "    return 1\n"
    assert set(STOP_SEQUENCES) == {"\nclass", "\ndef", "\n#", "\nif", "\nprint"}


@linux_only
def test_canonical_solutions_pass_and_wrong_ones_fail(problems):
    for problem in problems[:3]:
        assert check_completion(problem, reference_completion(problem)).passed
        assert check_completion(problem, WRONG).status == "failed"
        assert check_completion(problem, "\n    return (\n").status == "failed"  # a syntax error


def test_the_model_continues_the_prompt_without_trailing_whitespace(problems):
    for problem in problems:
        prompt = generation_prompt(problem)
        assert prompt == prompt.rstrip() and problem.prompt.startswith(prompt)
        assert prompt + reference_completion(problem) == problem.prompt + problem.canonical_solution


@linux_only
@pytest.mark.slow
def test_every_canonical_solution_passes_in_the_sandbox(problems):
    failures = [p.task_id for p in problems if not check_completion(p, reference_completion(p)).passed]
    assert failures == []


@linux_only
def test_progress_then_result_with_intervals(problems, canonical):
    wrong = {generation_prompt(problems[1])}
    generate = lambda prompt, stop: WRONG if prompt in wrong else canonical(prompt, stop)
    updates = list(iter_humaneval(generate, limit=4))
    assert [u.done for u in updates] == [1, 2, 3, 4]
    assert all(u.total == 4 for u in updates)
    assert all(u.result is None for u in updates[:-1])
    result = updates[-1].result
    assert result.n_problems == 4 and result.limited and not result.cancelled
    assert [p.correct for p in result.per_problem] == [1, 0, 1, 1]
    assert result.pass_at_1.mean == pytest.approx(0.75)
    assert result.pass_at_1.stderr == pytest.approx(np.std([1, 0, 1, 1], ddof=1) / 2)
    assert result.pass_at_1.ci_low < 0.75 < result.pass_at_1.ci_high
    assert set(result.pass_at_k) == {1}


@linux_only
def test_pass_at_k_over_several_samples(problems, canonical):
    calls = {"n": 0}

    def every_third_right(prompt, stop):
        calls["n"] += 1
        return canonical(prompt, stop) if calls["n"] % 3 == 0 else WRONG

    result = run_humaneval(every_third_right, limit=2, n_samples=3)
    assert [p.n for p in result.per_problem] == [3, 3]
    assert [p.correct for p in result.per_problem] == [1, 1]
    assert result.pass_at_1.mean == pytest.approx(1 / 3)
    assert result.n_samples == 3


@linux_only
def test_misbehaving_completions_fail_and_the_run_goes_on(problems, canonical, tmp_path):
    outside = str(tmp_path / "escape.txt")
    bad = ["\n    while True:\n        pass\n",
           "\n    import os\n    while True:\n        os.fork()\n",
           f"\n    open({outside!r}, 'w').write('x')\n",
           "\n    import os\n    os._exit(0)\n"]
    per_prompt = {generation_prompt(p): bad[i] for i, p in enumerate(problems[:4])}
    generate = lambda prompt, stop: per_prompt.get(prompt) or canonical(prompt, stop)
    result = run_humaneval(generate, limit=5, limits=SandboxLimits(seconds=2.0))
    statuses = [p.outcomes[0].status for p in result.per_problem]
    assert statuses == ["timeout", "failed", "failed", "failed", "passed"]
    assert result.pass_at_1.mean == pytest.approx(0.2)
    assert not os.path.exists(outside)


@linux_only
def test_cancel_stops_after_the_current_problem(canonical):
    cancel = threading.Event()
    updates = []
    for update in iter_humaneval(canonical, limit=10, cancel=cancel):
        updates.append(update)
        cancel.set()
    result = updates[-1].result
    assert result.cancelled and result.n_problems == 1 and result.pass_at_1.mean == 1.0


def test_bad_arguments_are_refused(canonical):
    with pytest.raises(BillionError):
        run_humaneval(canonical, n_samples=0)
    with pytest.raises(BillionError):
        run_humaneval(canonical, limit=0)


@linux_only
def test_greedy_generation_with_a_tiny_model(tiny_dir, models):
    loaded = models.load(str(tiny_dir))
    generate = greedy_generate_fn(loaded, max_new_tokens=24)
    prompt = generation_prompt(load_problems()[0])
    first = generate(prompt, STOP_SEQUENCES)
    assert first == generate(prompt, STOP_SEQUENCES)  # greedy is deterministic
    assert not any(stop in first for stop in STOP_SEQUENCES)
    # The same text as transformers' greedy generate, leading whitespace included, cut at a stop.
    from billion.core.generation import stop_token_ids
    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
    reference = loaded.model.generate(ids, attention_mask=ids.new_ones(ids.shape), do_sample=False,
                                      max_new_tokens=24, eos_token_id=sorted(stop_token_ids(loaded)))
    expected = loaded.tokenizer.decode(reference[0, ids.shape[1]:], skip_special_tokens=True)
    assert first == truncate_at_stop(expected)
    result = run_humaneval(generate, limit=1)
    assert result.n_problems == 1 and result.per_problem[0].completions == (first,)
    assert result.per_problem[0].generation_seconds > 0


def test_completion_keeps_its_leading_newline(tokenizer):
    """The completion after the docstring starts with a newline; it must reach the program intact."""
    import torch
    from tiny_models import tiny_llama

    from billion.core.loading import LoadedModel
    from billion.core.registry import local_spec

    model = tiny_llama(len(tokenizer))
    newline = tokenizer.convert_tokens_to_ids("Ċ")  # byte-level BPE spelling of "\n"
    head = torch.nn.Linear(model.config.hidden_size, len(tokenizer), bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[newline] = 1.0
    model.lm_head = head
    loaded = LoadedModel(spec=local_spec(Path("always-newline")), model=model, tokenizer=tokenizer,
                         device=torch.device("cpu"), dtype=torch.float32, quantization="none",
                         weight_bytes=0, load_seconds=0.0)
    assert greedy_generate_fn(loaded, max_new_tokens=5)("def f():\n    pass", STOP_SEQUENCES) == "\n" * 5
