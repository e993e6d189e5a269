"""Leaderboard functions over a real SQLite store, the real registry and real rating fits."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from billion.bench.runner import StoredScore, TaskOutcome
from billion.bench.plot_points import score_points, speed_points
from billion.bench.leaderboard import (COLUMNS, DEFAULT_COLUMNS, MEASURED, PUBLISHED, build_leaderboard,
                                 filter_leaderboard, latest_results, metric_unit,
                                 run_results_frame, run_summary, select_columns)
from billion.arena.ratings import compute_ratings
from billion.core.registry import MODELS, resolve
from billion.store.store import Store


def settings(dtype="fp32", quantization="none", limit=20, **more):
    return {"task": "billion-mc", "limit": limit, "limited": limit is not None, "seed": 1234,
            "n_shot": 5, "dtype": dtype, "dtype_requested": "auto", "quantization": quantization,
            "device": "cpu", **more}


def add_mc(store: Store, model: str, score: float, n: int = 20, **options) -> int:
    stderr = math.sqrt(score * (1 - score) / (n - 1))
    return store.add_bench_result(
        model=model, task="billion-mc", metric="acc", score=score, stderr=stderr, n=n,
        settings=settings(**options),
        extra={"ci_low": score - 1.96 * stderr, "ci_high": score + 1.96 * stderr, "chance": 0.25,
               "note": "limited: not comparable to full runs"})


def add_speed(store: Store, model: str, tokens_per_s: float, peak_bytes: int, **options) -> None:
    common = settings(limit=None, **options) | {"task": "speed", "n_shot": None, "new_tokens": 64,
                                                  "repeats": 3}
    for metric, value in (("decode_tok_s@512", tokens_per_s / 2), ("decode_tok_s@128", tokens_per_s),
                          ("ttft_s@128", 0.2), ("peak_memory_bytes", peak_bytes),
                          ("weight_bytes", peak_bytes / 2)):
        store.add_bench_result(model=model, task="speed", metric=metric, score=value, n=3,
                               settings=common, extra={})


@pytest.fixture()
def store(tmp_path):
    store = Store(tmp_path / "board.sqlite3")
    yield store
    store.close()


def measured(board: pd.DataFrame) -> pd.DataFrame:
    return board[board["kind"] == MEASURED]


def test_latest_result_per_key_is_shown_and_history_kept(store):
    add_mc(store, "smollm2-135m", 0.30)
    newest = add_mc(store, "smollm2-135m", 0.40)
    add_mc(store, "smollm2-135m", 0.20, quantization="int8")
    add_mc(store, "smollm2-135m", 0.35, dtype="bf16")
    history = store.bench_results_frame()
    assert len(history) == 4
    latest = latest_results(history)
    assert len(latest) == 3 and newest in set(latest["id"])

    board = measured(build_leaderboard(history, MODELS))
    by_variant = {(r["dtype"], r["quantization"]): r for _, r in board.iterrows()}
    assert set(by_variant) == {("fp32", "none"), ("fp32", "int8"), ("bf16", "none")}
    assert by_variant[("fp32", "none")]["score"] == pytest.approx(40.0)
    assert by_variant[("fp32", "int8")]["score"] == pytest.approx(20.0)
    row = by_variant[("fp32", "none")]
    low, high = (float(x) for x in row["95% CI"].split(" to "))
    assert low < row["score"] < high and row["chance"] == 25
    assert row["family"] == "SmolLM2" and row["size"] == "135M" and row["license"] == "apache-2.0"
    assert row["source"].startswith("measured: ") and "limit 20" in row["setting"]


def test_published_scores_are_labelled_with_source_setting_and_variant(store):
    board = build_leaderboard(store.bench_results_frame(), MODELS)
    published = board[board["kind"] == PUBLISHED]
    assert len(published) == sum(len(m.reference_scores) for m in MODELS) > 0
    for _, row in published.iterrows():
        ref = next(r for r in resolve(row["model"]).reference_scores
                   if r.benchmark == row["benchmark"] and r.value == row["score"])
        assert row["source"] == f"published: {ref.source}, {ref.setting}, {ref.variant}"
        assert row["note"] == ref.url and row["unit"] == "%"
    assert measured(board).empty


def test_filters_and_search(store):
    add_mc(store, "smollm2-135m", 0.4)
    add_mc(store, "gemma3-270m", 0.3)
    board = build_leaderboard(store.bench_results_frame(), MODELS)

    gemma = filter_leaderboard(board, families=["Gemma 3"])
    assert set(gemma["family"]) == {"Gemma 3"} and "gemma3-270m" in set(gemma["model"])
    small = filter_leaderboard(board, size_range=(0, 200))
    assert (small["params (M)"] <= 200).all() and "pythia-160m" in set(small["model"])
    assert not (filter_leaderboard(board, size_range=(1000, 2000))["params (M)"] < 1000).any()
    only_measured = filter_leaderboard(board, kinds=[MEASURED])
    assert set(only_measured["model"]) == {"smollm2-135m", "gemma3-270m"}
    assert filter_leaderboard(board, kinds=[PUBLISHED])["kind"].eq(PUBLISHED).all()

    hits = filter_leaderboard(board, search="SMOLLM2 hellaswag")
    assert len(hits) > 0 and hits["benchmark"].str.contains("HellaSwag").all()
    assert hits["model"].str.contains("smollm2").all()
    assert filter_leaderboard(board, search="no-such-thing").empty
    assert len(filter_leaderboard(board)) == len(board)


def test_arena_rating_column_from_real_battles(store):
    add_mc(store, "smollm2-135m", 0.4)
    add_mc(store, "gemma3-270m", 0.3)
    for i in range(6):
        battle = store.create_battle(model_a={"name": "smollm2-135m"}, model_b={"name": "gemma3-270m"},
                                     position="left", sampling={}, seed=i, session_id="test")
        store.add_turn(battle, 0, "hi", "a", "b")
        store.record_vote(battle, "model_a" if i < 4 else "model_b")
    ratings = compute_ratings(store.battles_frame(voted_only=True), bootstrap_rounds=20)
    board = build_leaderboard(store.bench_results_frame(), MODELS, ratings)
    smol = ratings.get("smollm2-135m")
    expected = f"{smol.rating:.0f} [{smol.ci_low:.0f}, {smol.ci_high:.0f}]"
    assert set(board.loc[board["model"] == "smollm2-135m", "arena rating"]) == {expected}
    assert set(board.loc[board["model"] == "pythia-1b", "arena rating"]) == {""}
    assert (build_leaderboard(store.bench_results_frame(), MODELS)["arena rating"] == "").all()


def test_column_choice_keeps_model_and_order(store):
    add_mc(store, "smollm2-135m", 0.4)
    board = build_leaderboard(store.bench_results_frame(), MODELS)
    shown = select_columns(board, ["score", "benchmark"])
    assert list(shown.columns) == ["model", "benchmark", "score"]
    assert list(select_columns(board).columns) == [c for c in COLUMNS if c in DEFAULT_COLUMNS]
    assert not shown.isna().any().any()  # missing values are empty cells


def test_plot_points(store):
    add_mc(store, "smollm2-135m", 0.4, limit=None)
    add_mc(store, "smollm2-135m", 0.3, quantization="int4", limit=None)
    add_mc(store, "gemma3-270m", 1.0, limit=1)  # fix 4: a 1-item run is never plotted with full runs
    add_speed(store, "smollm2-135m", 40.0, 900 * 2**20)
    add_speed(store, "smollm2-135m", 25.0, 500 * 2**20, quantization="int8")
    board = build_leaderboard(store.bench_results_frame(), MODELS)

    points = score_points(board)
    mine = points[points["kind"] == MEASURED].set_index("quantization")
    assert set(mine.index) == {"none", "int4"} and mine.at["none", "params"] == 135
    assert not points["label"].str.startswith("gemma3-270m").any()
    assert mine.at["none", "score"] == pytest.approx(40)
    assert mine.at["none", "low"] < 40 < mine.at["none", "high"]
    published = points[points["kind"] == PUBLISHED]
    assert len(published) > 0 and published["benchmark"].str.lower().str.startswith("mmlu").all()

    speed = speed_points(board).set_index("label")
    assert speed.at["smollm2-135m (fp32)", "tokens_per_s"] == 40.0  # the shortest prompt's speed
    assert speed.at["smollm2-135m (fp32)", "memory_mib"] == pytest.approx(900)
    assert speed.at["smollm2-135m (fp32, int8)", "prompt_tokens"] == 128


def test_units_and_run_tables():
    assert metric_unit("acc") == ("%", 100.0) and metric_unit("pass@1")[0] == "%"
    assert metric_unit("peak_memory_bytes") == ("MiB", 1 / 2**20)
    score = StoredScore(1, "m", "billion-mc", "acc", 0.5, 0.5, 2, settings={"limited": True},
                        extra={"ci_low": -0.48, "ci_high": 1.48, "chance": 0.25})
    frame = run_results_frame([TaskOutcome("m", "billion-mc", (score,)),
                               TaskOutcome("m", "mmlu", error="mmlu failed: hub unreachable")])
    assert list(frame["score"]) == ["50 %", ""]
    assert frame.at[0, "95% CI"] == "0.0 to 100.0"  # clipped to a proportion's range
    assert frame.at[0, "note"].startswith("limited") and "FAILED" in frame.at[1, "note"]
    summary = run_summary([TaskOutcome("m", "billion-mc", (score,)),
                           TaskOutcome("m", "speed", cancelled=True)])
    assert summary["scores"][0]["score"] == 0.5 and summary["cancelled"] == [{"model": "m", "task": "speed", "stored": 0}]
