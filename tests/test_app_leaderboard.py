"""The Leaderboard tab through gradio_client against the real launched app and the offline SmolLM2."""

from __future__ import annotations

import time

import pytest
from app_server import serve_app
from gradio_client import Client
from gradio_client.exceptions import AppError

from billion.core.registry import MODELS
from billion.store.store import Store

pytestmark = pytest.mark.skipif(
    not any(m.alias == "smollm2-135m" for m in MODELS), reason="needs the offline SmolLM2 entry")

ALL_KINDS = ["measured", "published"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, models):
    """(client, store path): the whole app on a fresh store of its own."""
    data = tmp_path_factory.mktemp("leaderboard-app")
    with serve_app(data, "board.sqlite3", models=models) as url:
        yield Client(url, verbose=False), data / "board.sqlite3"


def bench_args(tasks, limit=2) -> tuple:
    # models, tasks, limit, dtype, quantization, seed, speed prompt lengths, new tokens, timed runs
    return (["smollm2-135m"], tasks, limit, "auto", "none", 1234, "16,32", 4, 1)


def board(client, search="", kinds=ALL_KINDS, columns=None):
    columns = columns or ["model", "kind", "benchmark", "metric", "score", "source", "quantization"]
    table, score_plot, speed_plot = client.predict([], "any size", kinds, search, columns,
                                                   api_name="/leaderboard")
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    return rows, score_plot, speed_plot


def test_bench_endpoint_runs_stores_and_the_table_shows_it(served):
    client, db = served
    before, _, _ = board(client, search="smollm2-135m", kinds=["measured"])
    assert before == []
    status, run_table, summary = client.predict(*bench_args(["billion-mc", "speed"]), api_name="/bench")
    assert "2 of 2 tasks done" in status and not summary["failed"]
    metrics = {(s["task"], s["metric"]) for s in summary["scores"]}
    assert ("billion-mc", "acc") in metrics and ("speed", "decode_tok_s@16") in metrics
    assert len(run_table["data"]) == len(summary["scores"])
    mc = next(s for s in summary["scores"] if s["task"] == "billion-mc")
    assert mc["n"] == 2 and mc["limited"] and 0 <= mc["score"] <= 1

    stored = Store(db).bench_results_frame(model="smollm2-135m")
    assert sorted(stored["id"]) == sorted(s["id"] for s in summary["scores"])

    rows, score_plot, speed_plot = board(client, search="smollm2-135m", kinds=["measured"])
    shown = {(r["benchmark"], r["metric"]) for r in rows}
    assert ("billion-mc", "acc") in shown and ("speed", "decode tokens/s@16") in shown
    assert all(r["source"].startswith("measured: ") for r in rows)
    mc_row = next(r for r in rows if r["benchmark"] == "billion-mc")
    assert mc_row["score"] == pytest.approx(100 * mc["score"], abs=0.01)
    assert score_plot["type"] == "matplotlib" and speed_plot["type"] == "matplotlib"


def test_published_rows_are_labelled(served):
    client, _ = served
    rows, _, _ = board(client, search="hellaswag", kinds=["published"])
    assert rows and all(r["kind"] == "published" for r in rows)
    assert all(r["source"].startswith("published: ") for r in rows)


def test_bench_errors_name_the_fix(served):
    client, _ = served
    with pytest.raises(AppError, match="task"):
        client.predict(*bench_args([]), api_name="/bench")
    status, _, summary = client.predict(*bench_args(["mmlu"], limit=1), api_name="/bench")
    assert summary["failed"] and "offline suite" in summary["failed"][0]["error"]
    assert "mmlu" in status


def test_cancel_stops_the_run_and_stores_nothing_partial(served):
    client, db = served
    before = len(Store(db).bench_results_frame())
    job = client.submit(*bench_args(["billion-mc-cloze"], limit=200), api_name="/bench")
    deadline = time.monotonic() + 60
    while not job.outputs() and time.monotonic() < deadline:  # the first update holds the cancel handle
        time.sleep(0.1)
    assert "Cancelling" in client.predict(api_name="/bench_cancel")
    status, _, summary = job.result(timeout=120)
    assert "Cancelled" in status
    assert summary["cancelled"] == [{"model": "smollm2-135m", "task": "billion-mc-cloze"}]
    assert len(Store(db).bench_results_frame()) == before
