"""The Leaderboard tab through gradio_client against the real launched app and the offline SmolLM2."""

from __future__ import annotations

import re
import time

import pytest
from app_server import serve_app
from gradio_client import Client
from gradio_client.exceptions import AppError

from billion.core.registry import MODELS
from billion.store.store import Store

pytestmark = [
    pytest.mark.skipif(
        not any(m.alias == "smollm2-135m" for m in MODELS), reason="needs the offline SmolLM2 entry"),
    pytest.mark.usefixtures("one_thread"),  # tiny work on a shared 2-core CPU (conftest.py)
]

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
    # fix 5: memory is this model's alone (a child process), not the server's RSS
    [memory] = [s for s in summary["scores"] if s["task"] == "speed" and s["metric"] == "peak_memory_bytes"]
    assert "this model alone" in memory["note"]

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


def test_status_says_what_runs_and_cancel_keeps_the_finished_items(served):
    """Fix 10: the status named no progress ("Now: starting" throughout), and Cancel threw away
    the items already scored."""
    client, db = served
    before = len(Store(db).bench_results_frame())
    job = client.submit(*bench_args(["billion-mc-cloze"], limit=200), api_name="/bench")
    deadline = time.monotonic() + 120
    progress = re.compile(r"Now: smollm2-135m · billion-mc-cloze: [1-9]\d*/200 items")
    while time.monotonic() < deadline and not any(progress.search(o[0] or "") for o in job.outputs()):
        time.sleep(0.1)
    assert any(progress.search(o[0] or "") for o in job.outputs()), job.outputs()[-1:]
    assert "Cancelling" in client.predict(api_name="/bench_cancel")
    status, run_table, summary = job.result(timeout=120)
    assert "Cancelled" in status and "quick (limited) run" in status
    [cut] = summary["cancelled"]
    assert cut["task"] == "billion-mc-cloze" and cut["stored"] == len(summary["scores"]) > 0
    assert all(s["limited"] and 0 < s["n"] < 200 for s in summary["scores"])
    assert len(Store(db).bench_results_frame()) == before + cut["stored"]


def test_only_a_run_with_item_tasks_claims_an_item_limit():
    """The status line of test_a_speed_only_run_does_not_claim_an_item_limit, without a run."""
    from billion.bench.runner import BenchRequest
    from billion.ui.leaderboard import status_markdown

    speed = BenchRequest(models=("smollm2-135m",), tasks=("speed",), limit=20)
    mixed = BenchRequest(models=("smollm2-135m",), tasks=("billion-mc", "speed"), limit=20)
    assert "Limited to" not in status_markdown([], speed)
    assert "Limited to 20 items per task" in status_markdown([], mixed)


@pytest.mark.slow  # 9 s, a second speed run: test_only_a_run_with_item_tasks_claims_an_item_limit and the memory note in test_bench_endpoint_runs_stores_and_the_table_shows_it
def test_a_speed_only_run_does_not_claim_an_item_limit(served):
    client, _ = served
    status, _, summary = client.predict(*bench_args(["speed"], limit=20), api_name="/bench")
    assert not summary["failed"] and "Limited to" not in status
    # fix 5: memory is this model's alone (a child process), not the server's RSS
    [memory] = [s for s in summary["scores"] if s["task"] == "speed" and s["metric"] == "peak_memory_bytes"]
    assert "this model alone" in memory["note"]

def _smollm_adapter(folder):
    """A real PEFT LoRA adapter for SmolLM2 (random, untrained) as the trainer saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from billion.core.registry import resolve
    from billion.core.weights import ensure_converted, package_gguf_path

    config = AutoConfig.from_pretrained(ensure_converted(package_gguf_path(resolve("smollm2-135m"))))
    config.num_hidden_layers = 1  # adapter weights only for layer 0: enough to load, seconds to build
    model = get_peft_model(AutoModelForCausalLM.from_config(config),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(folder)
    return folder


@pytest.mark.filterwarnings("ignore:Found missing adapter keys")
def test_an_adapter_sent_to_the_arena_can_be_benchmarked(served, tmp_path):
    """Fix 1: 'Send to Arena' promises the Leaderboard can benchmark the adapter."""
    from billion.arena.contestants import register_adapter_contestant

    client, db = served
    adapter = register_adapter_contestant(_smollm_adapter(tmp_path / "pirate"), "smollm2-135m",
                                          "pirate", store=Store(db))
    update = client.predict([], api_name="/bench_models")
    assert adapter.name in [value for _, value in update["choices"]]
    args = (["smollm2-135m+lora:pirate"],) + bench_args(["billion-mc"], limit=2)[1:]
    status, _, summary = client.predict(*args, api_name="/bench")
    assert not summary["failed"], summary
    assert {s["model"] for s in summary["scores"]} == {"smollm2-135m+lora:pirate"}
    rows, _, _ = board(client, search="lora:pirate", kinds=["measured"])
    assert rows and rows[0]["model"] == "smollm2-135m+lora:pirate"


def test_matrix_view_keeps_quick_runs_apart(served):
    """The main view is model × benchmark over full runs; the limited runs above are quick runs."""
    client, _ = served
    client.predict(*bench_args(["billion-mc"], limit=1), api_name="/bench")
    main, quick = client.predict([], "any size", ALL_KINDS, "", "average (%)",
                                 api_name="/leaderboard_matrix")
    rows = [dict(zip(main["headers"], r)) for r in main["data"]]
    assert "billion-mc" not in main["headers"] or all(r["kind"] == "published" or r["billion-mc"] == ""
                                                      for r in rows)
    assert {"model", "precision", "average (%)", "benchmarks"} <= set(main["headers"])
    assert any(r["kind"] == "published" for r in rows)
    quick_rows = [dict(zip(quick["headers"], r)) for r in quick["data"]]
    assert any(r["model"] == "smollm2-135m" and r["billion-mc"] for r in quick_rows)
    assert all(r["rank"] == "" for r in quick_rows)


def test_all_results_export_as_csv_and_json_holds_the_rows(served):
    """Issue 14: the long per-(model, task) table downloads as CSV and JSON, with the shown rows."""
    import csv
    import json
    from pathlib import Path

    client, _ = served
    shown, _, _ = board(client, search="hellaswag", kinds=["published"])
    files = client.predict([], "any size", ["published"], "hellaswag", api_name="/leaderboard_export")
    paths = {Path(f).suffix: Path(f) for f in files}
    assert set(paths) == {".csv", ".json"}
    with paths[".csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    data = json.loads(paths[".json"].read_text())
    assert len(rows) == len(data["rows"]) == len(shown) > 0
    assert {(r["model"], r["benchmark"], r["metric"]) for r in rows} == {
        (r["model"], r["benchmark"], r["metric"]) for r in shown}
    assert {"setting", "95% CI", "source", "date"} <= set(data["columns"])
    assert all(r["kind"] == "published" for r in data["rows"])
