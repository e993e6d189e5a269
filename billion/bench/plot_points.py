"""Plot data for the Leaderboard: measured and published accuracy against size, decode speed
against memory, from a board built by billion.bench.leaderboard.build_leaderboard."""

from __future__ import annotations

import math

import pandas as pd

from billion.bench.leaderboard import (MEASURED, MMLU_LIKE_PREFIX, PLOTTED_TASKS, PUBLISHED, _number,
                                       variant_label)


def score_points(board: pd.DataFrame) -> pd.DataFrame:
    """Measured multiple-choice accuracy and published MMLU-like scores against parameter count.

    Columns: label, params, score, low, high (percent; NaN where no interval), kind, benchmark,
    quantization, chance.
    """
    sized = board[(board["params (M)"].astype(float) > 0) & ~board["_limited"].astype(bool)]
    measured = sized[(sized["kind"] == MEASURED) & sized["benchmark"].isin(PLOTTED_TASKS)
                     & sized["_metric_key"].isin(["acc", "acc_norm"])]
    published = sized[(sized["kind"] == PUBLISHED)
                      & sized["benchmark"].str.lower().str.startswith(MMLU_LIKE_PREFIX)]
    rows = []
    for _, r in measured.iterrows():
        low, high = (_number(v) for v in r["_ci"])
        rows.append({"label": variant_label(r["model"], r["quantization"]), "params": r["params (M)"],
                     "score": r["score"], "low": math.nan if low is None else 100 * low,
                     "high": math.nan if high is None else 100 * high, "kind": MEASURED,
                     "benchmark": r["benchmark"], "quantization": r["quantization"],
                     "chance": r["chance"]})
    # Registry entries that share a checkpoint (hub and package copies) share its published scores.
    published = published.drop_duplicates(["params (M)", "benchmark", "score"])
    for _, r in published.iterrows():
        rows.append({"label": r["model"], "params": r["params (M)"], "score": r["score"],
                     "low": math.nan, "high": math.nan, "kind": PUBLISHED,
                     "benchmark": r["benchmark"], "quantization": "", "chance": 25.0})
    return pd.DataFrame(rows, columns=["label", "params", "score", "low", "high", "kind",
                                       "benchmark", "quantization", "chance"])


def speed_points(board: pd.DataFrame) -> pd.DataFrame:
    """Decode tokens/s (at each variant's shortest measured prompt) against peak memory in MiB."""
    measured = board[board["kind"] == MEASURED]
    rows = []
    for (model, dtype, quant), group in measured.groupby(["model", "dtype", "quantization"]):
        metrics = dict(zip(group["_metric_key"], group["score"]))
        decode = sorted((int(k.split("@")[1]), v) for k, v in metrics.items()
                        if k.startswith("decode_tok_s@"))
        if not decode or "peak_memory_bytes" not in metrics:
            continue
        rows.append({"label": variant_label(model, quant, dtype), "memory_mib": metrics["peak_memory_bytes"],
                     "weight_mib": metrics.get("weight_bytes"), "tokens_per_s": decode[0][1],
                     "prompt_tokens": decode[0][0]})
    return pd.DataFrame(rows, columns=["label", "memory_mib", "weight_mib", "tokens_per_s",
                                       "prompt_tokens"])
