"""The leaderboard as pure functions over the store's benchmark history, the registry and the ratings.

One row per score: measured rows are the latest result per (model, task, metric, dtype,
quantization) — the store keeps every run, the leaderboard shows the newest — and published rows
are the registry's reference scores, each labelled "published: <source>, <setting>, <variant>".
Quality scores are shown in percent, speed in seconds and tokens/s, memory in MiB.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import pandas as pd

from billion.bench.runner import LIMITED_NOTE, StoredScore, TaskOutcome
from billion.arena.ratings import RatingTable
from billion.core.registry import ModelSpec
from billion.bench.endpoint_tasks import NEEDS_LOGPROBS

MEASURED = "measured"
PUBLISHED = "published"
KINDS = (MEASURED, PUBLISHED)
#: a measured result is replaced in the leaderboard only by a newer one with the same key
RESULT_KEY = ["model", "task", "metric", "dtype", "quantization"]
COLUMNS = ["model", "family", "params (M)", "size", "license", "kind", "benchmark", "metric",
           "score", "unit", "± stderr", "95% CI", "n", "chance", "setting", "dtype", "quantization",
           "source", "arena rating", "date", "note"]
DEFAULT_COLUMNS = ["model", "size", "kind", "benchmark", "metric", "score", "unit", "± stderr",
                   "95% CI", "n", "chance", "setting", "quantization", "source", "arena rating", "note"]
#: multiple-choice tasks drawn in the score-vs-size plot, and the published benchmarks beside them
PLOTTED_TASKS = ("billion-mc", "billion-mc-cloze", "mmlu")
MMLU_LIKE_PREFIX = "mmlu"
MIB = 2**20
#: size filter choices: label -> parameter range in millions (None: any)
SIZE_BANDS: dict[str, tuple[float, float] | None] = {
    "any size": None, "under 200M": (0, 200), "200M to 500M": (200, 500),
    "500M to 1B": (500, 1000), "1B to 2B": (1000, 2000), "over 2B": (2000, math.inf)}
RUN_COLUMNS = ["model", "task", "metric", "score", "± stderr", "95% CI", "n", "chance", "note"]


# -- units ---------------------------------------------------------------------------------------

def metric_unit(metric: str) -> tuple[str, float]:
    """(unit, factor from the stored value): accuracies in percent, bytes in MiB."""
    if metric in ("acc", "acc_norm") or metric.startswith("pass@"):
        return "%", 100.0
    if metric.startswith("ttft_s"):
        return "s", 1.0
    if metric.startswith("decode_tok_s"):
        return "tok/s", 1.0
    if metric.endswith("_bytes"):
        return "MiB", 1.0 / MIB
    return "", 1.0


def display_metric(metric: str) -> str:
    """Readable metric names: "ttft_s@128" -> "time to first token @128", bytes -> MiB."""
    for prefix, name in (("ttft_s", "time to first token"), ("decode_tok_s", "decode tokens/s")):
        if metric.startswith(prefix):
            return name + metric[len(prefix):]
    return {"peak_memory_bytes": "peak memory", "weight_bytes": "weight size"}.get(metric, metric)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def scaled(value: Any, factor: float, significant: int = 4) -> float | None:
    """value * factor to a few significant digits (None for missing or NaN)."""
    number = _number(value)
    return None if number is None else float(f"{number * factor:.{significant}g}")


def interval_text(low: Any, high: Any, factor: float, unit: str = "") -> str:
    """"low to high" in display units; percentages clipped to 0..100 (the normal interval of a
    proportion can pass its bounds on few items)."""
    low, high = _number(low), _number(high)
    if low is None or high is None:
        return ""
    low, high = low * factor, high * factor
    if unit == "%":
        low, high = max(low, 0.0), min(high, 100.0)
    return f"{low:.1f} to {high:.1f}"


# -- measured results ----------------------------------------------------------------------------

def with_key_columns(results: pd.DataFrame) -> pd.DataFrame:
    """dtype and quantization lifted out of each row's settings (they are part of the key)."""
    settings = results["settings"] if len(results) else pd.Series([], dtype=object)
    return results.assign(
        dtype=[(s or {}).get("dtype", "") for s in settings],
        quantization=[(s or {}).get("quantization", "none") for s in settings])


def latest_results(results: pd.DataFrame) -> pd.DataFrame:
    """The newest row per RESULT_KEY, from a store.bench_results_frame() (history stays stored)."""
    keyed = with_key_columns(results)
    return keyed.sort_values("id").drop_duplicates(RESULT_KEY, keep="last").reset_index(drop=True)


def measured_setting(settings: dict[str, Any]) -> str:
    """The settings that change a score, as one short line."""
    parts = []
    if settings.get("n_shot") is not None:
        parts.append(f"{settings['n_shot']}-shot")
    if settings.get("decoding"):
        parts.append(str(settings["decoding"]))
    if settings.get("new_tokens"):
        parts.append(f"{settings['new_tokens']} new tokens, {settings.get('repeats')} runs")
    if settings.get("endpoint_host"):  # timed and scored over the API, not on this machine
        parts.append(f"over the network, from {settings['endpoint_host']}")
    else:
        precision = settings.get("precision_label") or settings.get("dtype", "?")
        parts.append(f"{precision} on {settings.get('device', '?')}")
    if settings.get("limit"):
        parts.append(f"limit {settings['limit']} (seed {settings.get('seed')})")
    if settings.get("random_weights"):
        parts.append("random weights: speed only")
    return ", ".join(parts)


def _spec_fields(spec: ModelSpec | None) -> dict[str, Any]:
    if spec is None:
        return {"family": "unknown", "params (M)": None, "size": "", "license": "unknown"}
    return {"family": spec.family, "params (M)": spec.params_m or None,
            "size": spec.size_label if spec.params_m else "", "license": spec.license}


def measured_row(result: pd.Series, spec: ModelSpec | None) -> dict[str, Any]:
    settings, extra = result["settings"] or {}, result["extra"] or {}
    unit, factor = metric_unit(result["metric"])
    chance = extra.get("chance")
    return {
        "model": result["model"], **_spec_fields(spec), "kind": MEASURED,
        "benchmark": result["task"], "metric": display_metric(result["metric"]),
        "score": scaled(result["score"], factor), "unit": unit,
        "± stderr": scaled(result["stderr"], factor),
        "95% CI": interval_text(extra.get("ci_low"), extra.get("ci_high"), factor, unit),
        "n": None if pd.isna(result["n"]) else int(result["n"]),
        "chance": scaled(chance, factor, 3) if unit == "%" else None,
        "setting": measured_setting(settings), "dtype": result["dtype"],
        "quantization": result["quantization"], "source": f"measured: {result['machine']}",
        "date": str(result["created_at"])[:10], "note": extra.get("note", ""),
        "_metric_key": result["metric"], "_ci": (extra.get("ci_low"), extra.get("ci_high")),
        "_dtype_requested": settings.get("dtype_requested", ""), "_id": int(result["id"]),
    }


# -- published scores ----------------------------------------------------------------------------

def published_label(source: str, setting: str, variant: str) -> str:
    return f"published: {source}, {setting}, {variant}"


def published_rows(specs: Iterable[ModelSpec]) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        for ref in spec.reference_scores:
            rows.append({
                "model": spec.alias, **_spec_fields(spec), "kind": PUBLISHED,
                "benchmark": ref.benchmark, "metric": "",
                "score": ref.value, "unit": "%", "± stderr": None, "95% CI": "", "n": None,
                "chance": None, "setting": ref.setting, "dtype": "", "quantization": "",
                "source": published_label(ref.source, ref.setting, ref.variant), "date": "",
                "note": ref.url, "_metric_key": "", "_ci": (None, None), "_dtype_requested": "",
                "_id": 0,
            })
    return rows


# -- arena ---------------------------------------------------------------------------------------

def arena_names(model: str, dtype: str, requested: str, quantization: str) -> list[str]:
    """Contestant names that stand for this row, most specific first (see billion.arena.contestants)."""
    from billion.arena.contestants import Contestant

    quant = quantization or "none"
    names = [Contestant(model, d, quant).name for d in (requested, dtype) if d]
    if quant == "none":
        names.append(model)
    return list(dict.fromkeys(names))


def arena_text(ratings: RatingTable | None, names: Sequence[str]) -> str:
    """"rating [95% CI low, high]" of the first name that has counted votes, or ""."""
    if ratings is None:
        return ""
    for name in names:
        rating = ratings.get(name)
        if rating is not None:
            return f"{rating.rating:.0f} [{rating.ci_low:.0f}, {rating.ci_high:.0f}]"
    return ""


# -- the table -----------------------------------------------------------------------------------

def build_leaderboard(results: pd.DataFrame, specs: Sequence[ModelSpec],
                      ratings: RatingTable | None = None) -> pd.DataFrame:
    """Measured rows (latest per key) then published rows, with registry fields and arena ratings.

    Hidden columns starting with "_" feed the plots; select_columns drops them.
    """
    by_alias = {spec.alias: spec for spec in specs}
    latest = latest_results(results)
    measured = [measured_row(r, by_alias.get(r["model"])) for _, r in latest.iterrows()]
    rows = sorted(measured, key=lambda r: (r["model"], r["benchmark"], r["quantization"], r["dtype"],
                                           r["_id"]))
    rows += published_rows(specs)
    for row in rows:
        row["arena rating"] = arena_text(ratings, arena_names(
            row["model"], row["dtype"], row["_dtype_requested"], row["quantization"]))
    hidden = ["_metric_key", "_ci", "_dtype_requested", "_id"]
    return pd.DataFrame(rows, columns=COLUMNS + hidden)


def filter_leaderboard(board: pd.DataFrame, families: Sequence[str] | None = None,
                       size_range: tuple[float, float] | None = None,
                       kinds: Sequence[str] = KINDS, search: str = "") -> pd.DataFrame:
    """Rows of the chosen families, parameter range (in millions, ends included), kinds, and
    matching every search word somewhere in the row (case-insensitive)."""
    keep = board["kind"].isin(list(kinds))
    if families:
        keep &= board["family"].isin(list(families))
    if size_range is not None:
        low, high = size_range
        keep &= board["params (M)"].astype(float).between(low, high)
    words = search.lower().split()
    if words:
        text = board[COLUMNS].fillna("").astype(str).agg(" ".join, axis=1).str.lower()
        for word in words:
            keep &= text.str.contains(word, regex=False)
    return board[keep].reset_index(drop=True)


def select_columns(board: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The chosen columns in table order ("model" always), missing values as empty cells; the
    hidden plot columns dropped."""
    chosen = set(columns or DEFAULT_COLUMNS) | {"model"}
    shown = board[[c for c in COLUMNS if c in chosen]]
    return shown.astype(object).where(shown.notna(), "")


def families(specs: Iterable[ModelSpec]) -> list[str]:
    return sorted({spec.family for spec in specs})


# -- one run's results (CLI and the tab's "Run benchmark") ---------------------------------------

def score_cells(score: StoredScore) -> list[Any]:
    """A stored score as RUN_COLUMNS cells, in display units."""
    unit, factor = metric_unit(score.metric)
    value, stderr = scaled(score.score, factor), scaled(score.stderr, factor)
    chance = score.extra.get("chance")
    note = LIMITED_NOTE if score.limited else score.extra.get("note", "")
    return [score.model, score.task, display_metric(score.metric),
            "" if value is None else f"{value:g} {unit}".strip(),
            "" if stderr is None else f"±{stderr:g}",
            interval_text(score.extra.get("ci_low"), score.extra.get("ci_high"), factor, unit),
            "" if score.n is None else score.n,
            "" if chance is None else f"{chance * factor:g} {unit}".strip(), note]


def run_results_frame(outcomes: Sequence[TaskOutcome]) -> pd.DataFrame:
    """One row per stored score; a failed or cancelled task is one row saying so."""
    rows = []
    for outcome in outcomes:
        if outcome.ok:
            rows += [score_cells(s) for s in outcome.scores]
        elif outcome.error and NEEDS_LOGPROBS in outcome.error:  # not a failure: a limit of the server
            rows.append([outcome.model, outcome.task, "", "", "", "", "", "",
                         outcome.error[outcome.error.index(NEEDS_LOGPROBS):]])
        else:
            why = "cancelled: nothing stored" if outcome.cancelled else f"FAILED: {outcome.error}"
            rows.append([outcome.model, outcome.task, "", "", "", "", "", "", why])
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def run_summary(outcomes: Sequence[TaskOutcome]) -> dict[str, Any]:
    """A JSON-ready account of a run: every stored score (raw stored values) and every failure."""
    scores = [{"id": s.id, "model": s.model, "task": s.task, "metric": s.metric, "score": s.score,
               "stderr": s.stderr, "n": s.n, "ci_low": s.extra.get("ci_low"),
               "ci_high": s.extra.get("ci_high"), "chance": s.extra.get("chance"),
               "limited": s.limited, "dtype": s.settings.get("dtype"),
               "quantization": s.settings.get("quantization"), "note": s.extra.get("note", "")}
              for o in outcomes for s in o.scores]
    failed = [{"model": o.model, "task": o.task, "error": o.error} for o in outcomes if o.error]
    cancelled = [{"model": o.model, "task": o.task} for o in outcomes if o.cancelled]
    notes = [{"model": o.model, "task": o.task, "note": n} for o in outcomes for n in o.notes]
    return {"scores": scores, "failed": failed, "cancelled": cancelled, "notes": notes}


# -- plot data -----------------------------------------------------------------------------------

def variant_label(model: str, quantization: str, dtype: str = "") -> str:
    parts = [p for p in (dtype, quantization if quantization not in ("", "none") else "") if p]
    return f"{model} ({', '.join(parts)})" if parts else model


def score_points(board: pd.DataFrame) -> pd.DataFrame:
    """Measured multiple-choice accuracy and published MMLU-like scores against parameter count.

    Columns: label, params, score, low, high (percent; NaN where no interval), kind, benchmark,
    quantization, chance.
    """
    sized = board[board["params (M)"].astype(float) > 0]
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
