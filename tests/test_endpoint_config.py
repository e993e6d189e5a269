"""Endpoint models from models.yaml and from the page: parsing, checks, and the key rule."""

from __future__ import annotations

import pytest

from billion.core.errors import BillionError
from billion.endpoints.config import (EndpointModel, configured_endpoints, find_endpoint,
                                      is_endpoint_name, page_endpoint, parse_models_file)

GOOD = """
models:
  - alias: tinyllama-vllm
    base_url: http://gpu-box:8000/v1/
    model: TinyLlama/TinyLlama-1.1B-Chat-v1.0
    api_key_env: VLLM_API_KEY
    display_name: TinyLlama (vLLM)
  - alias: smollm-ollama
    base_url: http://localhost:11434/v1
    model: smollm2:135m
    timeout_s: 30
    max_retries: 0
    stop: ["\\nUser:"]
"""


def write(tmp_path, text: str):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


def test_models_file_entries(tmp_path):
    first, second = configured_endpoints(write(tmp_path, GOOD))
    assert first == EndpointModel("tinyllama-vllm", "http://gpu-box:8000/v1",
                                  "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "VLLM_API_KEY",
                                  "TinyLlama (vLLM)")
    assert (first.name, first.host, second.timeout_s, second.max_retries, second.stop) == (
        "endpoint:tinyllama-vllm", "gpu-box:8000", 30.0, 0, ("\nUser:",))
    assert EndpointModel.from_record(second.to_record()) == second
    assert find_endpoint("endpoint:smollm-ollama", (first, second)) == second
    assert is_endpoint_name(first.name) and not is_endpoint_name("smollm2-135m")
    # The record names the key's variable, never holds a key.
    assert first.to_record()["api_key_env"] == "VLLM_API_KEY"
    assert EndpointModel.from_record(first.to_record()) == first


def test_no_file_no_endpoints():
    assert configured_endpoints(None) == ()
    with pytest.raises(BillionError, match="No endpoint model 'endpoint:x'"):
        find_endpoint("endpoint:x", ())


def test_file_is_reread_when_it_changes(tmp_path):
    path = write(tmp_path, GOOD)
    assert len(configured_endpoints(path)) == 2
    path.write_text(GOOD.split("  - alias: smollm-ollama")[0])
    assert [e.alias for e in configured_endpoints(path)] == ["tinyllama-vllm"]


def test_settings_read_the_file_and_the_page_switch(tmp_path, monkeypatch):
    from billion.core.settings import Settings

    monkeypatch.setenv("BILLION_MODELS_FILE", str(tmp_path / "models.yaml"))
    for space, switch, allowed in ((None, None, True), ("someone/billion", None, False),
                                   ("someone/billion", "on", True), (None, "off", False)):
        for name, value in (("SPACE_ID", space), ("BILLION_PAGE_ENDPOINTS", switch)):
            monkeypatch.delenv(name, raising=False) if value is None else monkeypatch.setenv(name, value)
        settings = Settings.in_folder(tmp_path / "data")
        assert settings.models_file == tmp_path / "models.yaml"
        assert settings.page_endpoints is allowed, (space, switch)
    monkeypatch.delenv("BILLION_MODELS_FILE")
    assert Settings.in_folder(tmp_path / "data").models_file is None


@pytest.mark.parametrize("text, message", [
    ("models: [", "not valid YAML"),
    ("endpoints: []", "must hold `models:`"),
    ("models:\n  - alias: a\n    base_url: http://h/v1\n    model: m\n    api_key: sk-1",
     r"unknown keys \['api_key'\]"),
    ("models:\n  - alias: a\n    model: m", "missing base_url"),
    ("models:\n  - alias: a\n    base_url: http://h/v1\n    model: m\n    stop: User", "stop must be"),
    ("models:\n  - alias: a\n    base_url: gpu-box:8000\n    model: m", "not an http"),
    ("models:\n  - alias: smollm2-135m\n    base_url: http://h/v1\n    model: m",
     "registry model's alias"),
    ("models:\n  - alias: Bad Alias\n    base_url: http://h/v1\n    model: m", "alias"),
    ("models:\n  - alias: a\n    base_url: http://h/v1\n    model: m\n    api_key_env: sk-abc-123",
     "NAME of an environment variable"),
    ("models:\n  - alias: a\n    base_url: http://h/v1\n    model: m\n"
     "  - alias: a\n    base_url: http://h/v1\n    model: n", "appears twice"),
])
def test_bad_files_say_what_to_fix(text, message):
    with pytest.raises(BillionError, match=message):
        parse_models_file(text, "models.yaml")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(BillionError, match="nope.yaml does not exist"):
        configured_endpoints(tmp_path / "nope.yaml")


def test_missing_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("SOME_KEY", raising=False)
    endpoint = EndpointModel("a", "http://h/v1", "m", "SOME_KEY")
    with pytest.raises(BillionError, match="environment variable SOME_KEY, which is not set"):
        endpoint.api_key()
    monkeypatch.setenv("SOME_KEY", "sk-value")
    assert endpoint.api_key() == "sk-value"


def test_page_endpoints(tmp_path):
    configured = configured_endpoints(write(tmp_path, GOOD))
    added = page_endpoint("mine", "http://127.0.0.1:9/v1", "m", configured=configured)
    assert added.origin == "page" and added.api_key_env is None
    with pytest.raises(BillionError, match="is taken"):
        page_endpoint("mine", "http://127.0.0.1:9/v1", "m", session=[added], configured=configured)
    # A secret may only go to the server models.yaml binds it to, never to a visitor's address.
    with pytest.raises(BillionError, match="HF_TOKEN may only be sent"):
        page_endpoint("steal", "https://attacker.example/v1", "m", "HF_TOKEN", configured=configured)
    with pytest.raises(BillionError, match="VLLM_API_KEY may only be sent"):
        page_endpoint("steal", "https://attacker.example/v1", "m", "VLLM_API_KEY",
                      configured=configured)
    same_server = page_endpoint("other", "http://gpu-box:8000/v1", "other-model", "VLLM_API_KEY",
                                configured=configured)
    assert same_server.api_key_env == "VLLM_API_KEY"
    with pytest.raises(BillionError, match="switched off"):
        page_endpoint("x", "http://127.0.0.1:9/v1", "m", configured=configured, allowed=False)
