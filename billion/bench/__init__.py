"""Benchmarks: multiple-choice scoring, HumanEval in a sandbox, speed and memory, and the leaderboard."""

from billion.core.exports import public_api

__all__, __getattr__, __dir__ = public_api(__name__, {
    "billion.bench.runner": ("BenchRequest", "RunProgress", "TaskOutcome", "iter_run", "run_bench"),
    "billion.bench.leaderboard": ("build_leaderboard", "filter_leaderboard"),
    "billion.bench.tasks": ("get_task",),
})
