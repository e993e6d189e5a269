"""`bench`: run benchmarks on models, print one table, store every score; `--show` prints the leaderboard."""

from __future__ import annotations

import argparse
import sys

import torch

from billion.bench.leaderboard import KINDS, MEASURED, build_leaderboard, filter_leaderboard, run_results_frame
from billion.bench.runner import TASK_CHOICES, BenchRequest, RunProgress, TaskOutcome, iter_run
from billion.context import AppContext
from billion.core.registry import all_models
from billion.core.table import format_table
from billion.endpoints.config import configured_endpoints

DEFAULT = BenchRequest()
SHOW_COLUMNS = ["model", "benchmark", "metric", "score", "unit", "± stderr", "95% CI", "n",
                "chance", "dtype", "quantization", "date", "source", "note"]


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run benchmarks and store the scores; --show the leaderboard")
    parser.add_argument("--model", default=",".join(DEFAULT.models),
                        help="alias, hub id, folder or .gguf; several separated by commas")
    parser.add_argument("--tasks", default=",".join(DEFAULT.tasks),
                        help=f"comma-separated, from: {', '.join(TASK_CHOICES)} (offline-mc = billion-mc)")
    parser.add_argument("--limit", type=int, default=DEFAULT.limit,
                        help="items (HumanEval problems) per task; such runs are not comparable to full runs")
    parser.add_argument("--dtype", default=DEFAULT.dtype, choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--quantization", default=DEFAULT.quantization, choices=["none", "int8", "int4"])
    parser.add_argument("--seed", type=int, default=DEFAULT.seed, help="item sample and few-shot seed")
    lengths = ",".join(map(str, DEFAULT.prompt_lengths))
    parser.add_argument("--prompt-lengths", type=_ints, default=DEFAULT.prompt_lengths,
                        help=f"speed: prompt lengths in tokens (default {lengths})")
    parser.add_argument("--new-tokens", type=int, default=DEFAULT.new_tokens,
                        help="speed: tokens generated per run")
    parser.add_argument("--repeats", type=int, default=DEFAULT.repeats,
                        help="speed: timed runs per prompt length")
    parser.add_argument("--speed-only", action="store_true", help="run the speed task only")
    parser.add_argument("--random-weights", action="store_true",
                        help="speed only: the model's exact architecture with random weights, for hub "
                             "models that are not downloaded (rows say 'random weights: speed only')")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--show", action="store_true", help="print the stored leaderboard and exit")
    parser.add_argument("--published", action="store_true", help="with --show: add published scores")
    parser.add_argument("--db", default=None, help="store file (default: env BILLION_DB or the data dir)")
    parser.set_defaults(func=run)


def request_from(args: argparse.Namespace) -> BenchRequest:
    tasks = ("speed",) if args.speed_only or args.random_weights else _csv(args.tasks)
    return BenchRequest(models=_csv(args.model), tasks=tasks, limit=args.limit,
                        dtype=args.dtype, quantization=args.quantization, seed=args.seed,
                        prompt_lengths=tuple(args.prompt_lengths), new_tokens=args.new_tokens,
                        repeats=args.repeats, random_weights=args.random_weights).validated()


def results_table(outcomes: list[TaskOutcome]) -> str:
    frame = run_results_frame(outcomes)
    return format_table(list(frame.columns), frame.values.tolist())


def run_header(request: BenchRequest, outcomes: list[TaskOutcome]) -> str:
    settings = next((s.settings for o in outcomes for s in o.scores), {})
    dtype = settings.get("dtype", request.dtype)
    device = settings.get("device", "?")
    return (f"{', '.join(request.models)}: {dtype} on {device}, quantization {request.quantization}, "
            f"limit {request.limit or 'none (full tasks)'}, seed {request.seed}, "
            f"{torch.get_num_threads()} torch threads")


def _report(progress: RunProgress) -> None:
    label = f"[{progress.step}/{progress.steps}] {progress.model}"
    if sys.stderr.isatty() and progress.result is None:
        print(f"\r{label}: {progress.message}\033[K", end="", file=sys.stderr, flush=True)
    elif progress.result is not None or not progress.task:
        print(f"\r{label}: {progress.message}", file=sys.stderr, flush=True)


def show(args: argparse.Namespace, ctx: AppContext) -> int:
    results = ctx.store.bench_results_frame()
    board = build_leaderboard(results, all_models())
    board = filter_leaderboard(board, kinds=KINDS if args.published else (MEASURED,))
    if board.empty:
        print("No stored results yet: run `python -m billion bench --model smollm2-135m`.")
        return 0
    rows = board[SHOW_COLUMNS].fillna("").values.tolist()
    print(format_table(SHOW_COLUMNS, rows))
    return 0


def run(args: argparse.Namespace, ctx: AppContext) -> int:
    if args.show:
        return show(args, ctx)
    if args.threads:
        torch.set_num_threads(args.threads)
    request = request_from(args)
    outcomes = []
    for progress in iter_run(request, store=ctx.store, models=ctx.models,
                             endpoints=configured_endpoints(ctx.settings.models_file)):
        _report(progress)
        if progress.result is not None:
            outcomes.append(progress.result)
    print(run_header(request, outcomes))
    print(results_table(outcomes))
    stored = sum(len(o.scores) for o in outcomes)
    print(f"{stored} scores stored in {ctx.store.path}.")
    return 0 if all(o.ok for o in outcomes) else 1
