"""Benchmarks of endpoint models through the runner: HumanEval via chat completions and speed
against `transformers serve`, multiple choice refused there ("needs log-probs") and scored where
a server returns prompt log-probabilities (a real tiny model behind vLLM's response format)."""

from __future__ import annotations

import pytest
from endpoint_servers import LogprobServer

from billion.bench.leaderboard import measured_setting, run_results_frame
from billion.bench.mc import score_task
from billion.bench.runner import BenchRequest, run_bench
from billion.bench.tasks import get_task
from billion.core.loading import ModelCache
from billion.bench.endpoint_tasks import CHAT_PROMPT_SETTING, code_from_answer, serves_prompt_logprobs
from billion.endpoints.config import EndpointModel, configured_endpoints
from billion.store.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work on a shared 2-core CPU (conftest.py)


@pytest.fixture
def declared(tmp_path, monkeypatch):
    """Write models.yaml entries (alias -> (base_url, model)), point BILLION_MODELS_FILE at it (for
    the CLI), and return its endpoints (for the runner)."""
    def declare(**entries):
        lines = ["models:"] + [f"  - {{alias: {a}, base_url: '{u}', model: '{m}'}}"
                               for a, (u, m) in entries.items()]
        (tmp_path / "models.yaml").write_text("\n".join(lines) + "\n")
        monkeypatch.setenv("BILLION_MODELS_FILE", str(tmp_path / "models.yaml"))
        return configured_endpoints(tmp_path / "models.yaml")
    return declare


def test_code_from_answer():
    whole = "Sure:\n```python\nimport math\n\ndef f(x):\n    return math.sqrt(x)\n```\nDone."
    assert code_from_answer(whole, "f") == "\nimport math\n\ndef f(x):\n    return math.sqrt(x)\n"
    assert code_from_answer("```\nreturn x + 1\n```", "f") == "\n    return x + 1\n"
    assert code_from_answer("    return x", "f") == "\n    return x\n"


def test_a_humaneval_item_through_chat_completions(served_smollm, declared, tmp_path):
    endpoints = declared(served=(served_smollm.base_url, served_smollm.model))
    store = Store(tmp_path / "bench.sqlite3")
    request = BenchRequest(models=("endpoint:served",), tasks=("humaneval",), limit=1,
                           humaneval_max_new_tokens=16)
    [humaneval] = run_bench(request, store=store, models=ModelCache(0), endpoints=endpoints)
    assert humaneval.ok, humaneval.error
    [score] = humaneval.scores
    assert (score.model, score.metric, score.n) == ("endpoint:served", "pass@1", 1)
    assert score.settings["prompt"] == CHAT_PROMPT_SETTING and score.score in (0.0, 1.0)
    assert "not comparable to raw-prompt runs" in score.extra["note"]
    assert measured_setting(score.settings).endswith(
        f"over the network, from 127.0.0.1:{served_smollm.port}, limit 1 (seed 1234)")
    assert len(store.bench_results_frame()) == 1


def test_speed_over_the_network_and_mc_needs_log_probs(served_smollm, declared, tmp_path):
    endpoints = declared(served=(served_smollm.base_url, served_smollm.model))
    store = Store(tmp_path / "bench.sqlite3")
    request = BenchRequest(models=("endpoint:served",), tasks=("speed", "billion-mc"), limit=1,
                           prompt_lengths=(32,), new_tokens=4, warmup=0, repeats=1)
    speed, mc = run_bench(request, store=store, models=ModelCache(0), endpoints=endpoints)
    assert speed.ok, speed.error
    metrics = {s.metric: s for s in speed.scores}
    assert set(metrics) == {"ttft_s@32", "decode_tok_s@32"}  # no memory rows: not ours to measure
    assert metrics["ttft_s@32"].score > 0 and "over the network" in metrics["ttft_s@32"].extra["note"]
    # transformers serve ignores echo/logprobs: no score, and the run says why.
    assert not serves_prompt_logprobs(EndpointModel("s", served_smollm.base_url, served_smollm.model))
    assert mc.error and "needs log-probs" in mc.error and not mc.scores
    why = run_results_frame([mc])["note"].iloc[0]
    assert why.startswith("needs log-probs") and "FAILED" not in why
    assert len(store.bench_results_frame()) == 2  # the two speed rows only


def test_mc_from_prompt_logprobs_equals_local_scoring(llama, tokenizer, declared, tmp_path):
    task = get_task("billion-mc-cloze")
    local = score_task(llama, tokenizer, task, limit=4)
    with LogprobServer(llama, tokenizer) as server:
        endpoints = declared(tiny=(server.base_url, "tiny"))
        assert serves_prompt_logprobs(EndpointModel("t", server.base_url, "tiny"))
        [outcome] = run_bench(BenchRequest(models=("endpoint:tiny",), tasks=(task.name,), limit=4),
                              store=Store(tmp_path / "bench.sqlite3"), models=ModelCache(0),
                              endpoints=endpoints)
    assert outcome.ok, outcome.error
    [score] = outcome.scores
    assert score.n == 4 and score.score == pytest.approx(local.estimate.mean)
    assert score.extra["acc"]["mean"] == pytest.approx(local.acc.mean)


def test_cli_chats_with_an_endpoint_and_the_race_refuses_it(declared, cli):
    from endpoint_servers import FaultServer

    with FaultServer() as server:
        declared(quick=(server.base_url, "ok"))
        out = cli("chat", "--model", "endpoint:quick", "--max-new-tokens", "8", "Hello")
        assert out.returncode == 0, out.stderr
        assert "Hello from the fault server." in out.stdout
        assert f"over the network, from 127.0.0.1:{server.server_address[1]}" in out.stdout
    out = cli("race", "--target", "endpoint:quick", "Hello")
    assert out.returncode == 2 and "runs local models only" in out.stderr
