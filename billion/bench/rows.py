"""Engine results as store rows: the reported metric with its interval and extras for a
multiple-choice task, pass@k for HumanEval, timings and memory for the speed task."""

from __future__ import annotations

import math
from typing import Any

from billion.bench.humaneval import HumanEvalResult
from billion.bench.isolated import KIND as ISOLATED
from billion.bench.mc import TaskResult
from billion.bench.random_weights import LABEL as RANDOM_LABEL
from billion.bench.speed import SpeedResult
from billion.core.noise import load_note, spread_note
from billion.core.stats import Estimate

LIMITED_NOTE = "limited: not comparable to full runs"


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _estimate_dict(estimate: Estimate) -> dict[str, Any]:
    return {"mean": _finite(estimate.mean), "stderr": _finite(estimate.stderr), "n": estimate.n}


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


MEMORY_NOTES = {
    ISOLATED: "this model alone (a child process): weights + peak working memory",
    "server_rss_high_water": "the server's whole RSS (every loaded model): not this model's own",
    "cuda_max_allocated": "CUDA max allocated over the timed runs",
}


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
            noisy = spread_note([spread.low, spread.median, spread.high], f"{metric} runs")
            rows.append({"metric": metric, "score": spread.median, "stderr": None, "n": spread.n,
                         "settings": common,
                         "extra": {"low": spread.low, "high": spread.high,
                                   "note": f"{random}median of {spread.n} runs, range "
                                           f"{spread.low:.3g} to {spread.high:.3g}",
                                   **({"warning": noisy} if noisy else {})}})
    busy = load_note()  # shown with the run's status, stored with its figures
    if busy and rows:
        rows[0]["extra"]["warning"] = busy
    rows.append({"metric": "peak_memory_bytes", "score": float(result.peak_memory_bytes),
                 "stderr": None, "n": None, "settings": common,
                 "extra": {"note": random + MEMORY_NOTES.get(result.memory_kind,
                                                             f"{result.memory_kind} over the timed runs")}})
    rows.append({"metric": "weight_bytes", "score": float(result.weight_bytes), "stderr": None,
                 "n": None, "settings": common, "extra": {"note": f"{random}parameters and buffers"}})
    return rows
