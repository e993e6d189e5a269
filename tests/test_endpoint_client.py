"""The endpoint client against real servers: `transformers serve` with SmolLM2, and a stdlib server
for 401, 429, slow and cut-off answers. Every failure is an EndpointError that names the fix, and
the key appears in no message, traceback or log line."""

from __future__ import annotations

import logging
import time
import traceback

import pytest
from endpoint_servers import FaultServer, free_port

from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings
from billion.endpoints.client import (BLIND_FAILURE, EndpointError, EndpointResult,
                                      generate_endpoint_chat, request_args, stream_endpoint_chat)
from billion.endpoints.config import EndpointModel

KEY = "sk-billion-test-3c1f0e9a7d"
SETTINGS = SamplingSettings(temperature=0.0, max_new_tokens=8, seed=5)
ASK = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture
def faults():
    with FaultServer(slow_s=3.0) as server:
        yield server


def fault_endpoint(server: FaultServer, mode: str, **kw) -> EndpointModel:
    return EndpointModel(f"fault-{mode}", server.base_url, mode, "BILLION_TEST_KEY",
                         timeout_s=kw.pop("timeout_s", 10.0), max_retries=kw.pop("max_retries", 0))


def failure_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_answer_from_transformers_serve(served_smollm):
    endpoint = EndpointModel("smollm2-served", served_smollm.base_url, served_smollm.model)
    updates = list(stream_endpoint_chat(endpoint, ASK, SETTINGS))
    result = updates[-1].result
    assert isinstance(result, EndpointResult)
    assert result.text and result.text == updates[-2].text  # the stream built the final text
    assert 1 <= result.completion_tokens <= 8 and result.prompt_tokens > 5
    assert result.finish_reason in ("length", "eos")
    assert 0 < result.ttft_s <= result.total_s and result.host == f"127.0.0.1:{served_smollm.port}"
    # Greedy over the API is the same model: a second call gives the same text.
    assert generate_endpoint_chat(endpoint, ASK, SETTINGS).text == result.text


def test_key_is_sent_but_never_shown(faults, monkeypatch, caplog):
    monkeypatch.setenv("BILLION_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EndpointError) as failed:
        generate_endpoint_chat(fault_endpoint(faults, "unauthorized"), ASK, SETTINGS)
    assert faults.seen_auth == [f"Bearer {KEY}"]  # it was really sent, so the check below can fail
    assert "refused the API key (HTTP 401; key variable BILLION_TEST_KEY)" in str(failed.value)
    assert KEY not in failure_text(failed.value)
    assert failed.value.__cause__ is None and failed.value.__context__ is None
    assert KEY not in caplog.text and "unauthorized" in caplog.text
    assert failed.value.blind.startswith(BLIND_FAILURE) and "fault" not in failed.value.blind


def test_rate_limit_is_retried_then_explained(faults, monkeypatch):
    monkeypatch.setenv("BILLION_TEST_KEY", KEY)
    with pytest.raises(EndpointError, match=r"rate limiting requests \(HTTP 429\)"):
        generate_endpoint_chat(fault_endpoint(faults, "ratelimited", max_retries=1), ASK, SETTINGS)
    assert faults.rate_limited == 2  # one try and one retry


def test_slow_server_times_out(faults, monkeypatch):
    monkeypatch.setenv("BILLION_TEST_KEY", KEY)
    started = time.perf_counter()
    with pytest.raises(EndpointError, match=r"did not answer within 0.5 s"):
        generate_endpoint_chat(fault_endpoint(faults, "slow", timeout_s=0.5), ASK, SETTINGS)
    assert time.perf_counter() - started < 2.5


def test_server_down(monkeypatch):
    endpoint = EndpointModel("down", f"http://127.0.0.1:{free_port()}/v1", "m")
    with pytest.raises(EndpointError, match=r"Could not reach endpoint:down at 127.0.0.1:\d+"):
        generate_endpoint_chat(endpoint, ASK, SETTINGS)


def test_stream_cut_midway(faults, monkeypatch):
    monkeypatch.setenv("BILLION_TEST_KEY", KEY)
    stream = stream_endpoint_chat(fault_endpoint(faults, "cut"), ASK, SETTINGS)
    assert next(stream).text == "Hello"
    with pytest.raises(EndpointError, match="cut its answer off after 2 chunks") as failed:
        list(stream)
    assert "stream was cut off" in failed.value.blind


def test_stream_from_the_fault_server_is_whole(faults, monkeypatch):
    monkeypatch.setenv("BILLION_TEST_KEY", KEY)
    result = generate_endpoint_chat(fault_endpoint(faults, "ok"), ASK, SETTINGS)
    assert (result.text, result.completion_tokens, result.finish_reason) == (
        "Hello from the fault server.", 5, "eos")


def test_unset_key_variable_is_a_clear_error(faults, monkeypatch):
    monkeypatch.delenv("BILLION_TEST_KEY", raising=False)
    with pytest.raises(BillionError, match="BILLION_TEST_KEY, which is not set"):
        generate_endpoint_chat(fault_endpoint(faults, "ok"), ASK, SETTINGS)
    assert faults.seen_auth == []


def test_request_args():
    endpoint = EndpointModel("a", "http://h/v1", "m")
    greedy = request_args(endpoint, ASK, SETTINGS)
    assert greedy["temperature"] == 0.0 and "top_p" not in greedy and greedy["seed"] == 5
    assert "extra_body" not in greedy and greedy["max_tokens"] == 8
    sampled = request_args(endpoint, ASK, SamplingSettings(temperature=0.7, top_k=40,
                                                           stop=("\nUser:",)))
    assert sampled["top_p"] == 0.95 and sampled["extra_body"] == {"top_k": 40}
    assert sampled["stop"] == ["\nUser:"] and "seed" not in sampled
