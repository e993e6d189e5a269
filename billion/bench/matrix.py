"""The leaderboard's main view: one row per model variant (precision, adapter), one column per
benchmark, an average over the benchmarks the row has, as on the Open LLM Leaderboard.

Built from build_leaderboard's long table (billion.bench.leaderboard). Each cell keeps its kind:
measured cells show their 95% interval, published ones say "published". Limited runs (a few items
per task) are never ranked with full runs: `model_matrix(board, limited=True)` is the separate
"quick runs" view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from billion.bench.leaderboard import MEASURED, PUBLISHED, variant_label

#: the quality metric a benchmark's column shows, best first (acc_norm is the suite's headline)
PRIMARY_METRICS = ("acc_norm", "acc", "pass@1")
ID_COLUMNS = ["rank", "model", "precision", "kind", "average (%)", "benchmarks"]
SPEED_COLUMN = "decode tok/s"
MEMORY_COLUMN = "peak MiB"
SORT_CHOICES = ["average (%)", "model", SPEED_COLUMN]


@dataclass(frozen=True)
class Cell:
    score: float
    low: float | None = None
    high: float | None = None
    kind: str = MEASURED

    @property
    def text(self) -> str:
        if self.kind == PUBLISHED:
            return f"{self.score:.1f} (published)"
        if self.low is None or self.high is None:
            return f"{self.score:.1f}"
        return f"{self.score:.1f} [{max(self.low, 0):.1f}–{min(self.high, 100):.1f}]"


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _quality_rows(board: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, benchmark): the primary metric's measured score, or a published one."""
    measured = board[(board["kind"] == MEASURED) & board["_metric_key"].isin(PRIMARY_METRICS)]
    rank = measured["_metric_key"].map({m: i for i, m in enumerate(PRIMARY_METRICS)})
    measured = measured.assign(_rank=rank).sort_values("_rank").drop_duplicates(
        ["model", "dtype", "quantization", "benchmark"])
    published = board[board["kind"] == PUBLISHED].drop_duplicates(["model", "benchmark"])
    return pd.concat([measured, published], ignore_index=True)


def _cell(row: pd.Series) -> Cell:
    low, high = (_number(v) for v in row["_ci"])
    return Cell(float(row["score"]), None if low is None else 100 * low,
                None if high is None else 100 * high, row["kind"])


def _speed(board: pd.DataFrame, key: tuple) -> tuple[float | None, float | None]:
    """(decode tokens/s at the shortest measured prompt, peak MiB) of one measured variant."""
    model, dtype, quant = key
    rows = board[(board["kind"] == MEASURED) & (board["model"] == model) & (board["dtype"] == dtype)
                 & (board["quantization"] == quant)]
    metrics = dict(zip(rows["_metric_key"], rows["score"]))
    decode = sorted((int(k.split("@")[1]), v) for k, v in metrics.items() if k.startswith("decode_tok_s@"))
    return (decode[0][1] if decode else None), _number(metrics.get("peak_memory_bytes"))


def model_matrix(board: pd.DataFrame, limited: bool = False, sort_by: str = "average (%)") -> pd.DataFrame:
    """The model × benchmark table of full runs (limited=False) or of quick runs only (True)."""
    board = board[board["_limited"].astype(bool) == limited]
    if limited:
        board = board[board["kind"] == MEASURED]
    quality = _quality_rows(board)
    benchmarks = sorted(quality["benchmark"].unique(), key=lambda b: (b in set(
        quality.loc[quality["kind"] == PUBLISHED, "benchmark"]), b))
    rows: dict[tuple, dict] = {}
    for _, r in quality.iterrows():
        key = (r["model"], r["dtype"], r["quantization"]) if r["kind"] == MEASURED else (r["model"], "", "")
        rows.setdefault(key, {})[r["benchmark"]] = _cell(r)
    measured_keys = {(m, d, q) for m, d, q in board.loc[board["kind"] == MEASURED,
                                                        ["model", "dtype", "quantization"]].itertuples(index=False)}
    for key in measured_keys:  # speed-only variants get a row too
        rows.setdefault(key, {})
    table = []
    for key, cells in rows.items():
        model, dtype, quant = key
        speed, memory = _speed(board, key) if key in measured_keys else (None, None)
        kind = MEASURED if key in measured_keys else PUBLISHED
        scores = [c.score for c in cells.values()]
        table.append({"model": model,
                      "precision": (variant_label("", quant, dtype).strip(" ()") or "auto")
                      if kind == MEASURED else "as published",
                      "kind": kind,
                      "average (%)": round(sum(scores) / len(scores), 1) if scores else None,
                      "benchmarks": f"{len(scores)} of {len(benchmarks)}",
                      **{b: cells[b].text if b in cells else "" for b in benchmarks},
                      SPEED_COLUMN: None if speed is None else round(speed, 1),
                      MEMORY_COLUMN: None if memory is None else round(memory)})
    frame = pd.DataFrame(table, columns=ID_COLUMNS[1:] + benchmarks + [SPEED_COLUMN, MEMORY_COLUMN])
    frame = sort_matrix(frame, sort_by)
    frame.insert(0, "rank", [""] * len(frame) if limited else range(1, len(frame) + 1))
    return frame.astype(object).where(frame.notna(), "")


def sort_matrix(frame: pd.DataFrame, sort_by: str) -> pd.DataFrame:
    """Rows by a column: numbers high to low (missing last), text A to Z."""
    if sort_by not in frame.columns:
        sort_by = "average (%)"
    if sort_by == "model":
        return frame.sort_values(["model", "precision"]).reset_index(drop=True)
    values = frame[sort_by]
    if values.dtype == object:  # a benchmark column: "45.2 [..]" sorts by its number
        values = values.map(lambda text: _number(str(text).split(" ")[0]) if text else None)
    order = values.astype(float).fillna(-math.inf).sort_values(ascending=False, kind="stable").index
    return frame.loc[order].reset_index(drop=True)
