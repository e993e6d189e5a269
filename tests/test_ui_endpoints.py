"""The page's endpoint form: added for the session only, listed with the configured ones, and
refused with a toast that names the fix."""

from __future__ import annotations

import gradio as gr
import pytest

from billion.ui.endpoints import add_endpoint, endpoint_choices, endpoint_note


def test_added_for_the_session_and_listed(tmp_path, monkeypatch):
    (tmp_path / "models.yaml").write_text(
        "models:\n  - {alias: shared, base_url: 'http://gpu-box:8000/v1', model: m, api_key_env: VLLM_KEY}\n")
    monkeypatch.setenv("BILLION_MODELS_FILE", str(tmp_path / "models.yaml"))
    monkeypatch.delenv("SPACE_ID", raising=False)
    session, note = add_endpoint("mine", "http://127.0.0.1:9/v1", "some-model", "", [])
    assert [e.name for e in session] == ["endpoint:mine"] and session[0].origin == "page"
    assert "`endpoint:mine`" in note and "this session" in note and "`endpoint:shared`" in note
    assert [value for _, value in endpoint_choices(session)] == ["endpoint:mine", "endpoint:shared"]
    assert [value for _, value in endpoint_choices()] == ["endpoint:shared"]  # another session
    with pytest.raises(gr.Error, match="VLLM_KEY may only be sent"):
        add_endpoint("steal", "https://elsewhere.example/v1", "m", "VLLM_KEY", session)


def test_a_broken_models_file_is_shown_not_raised(tmp_path, monkeypatch):
    (tmp_path / "models.yaml").write_text("models: [")
    monkeypatch.setenv("BILLION_MODELS_FILE", str(tmp_path / "models.yaml"))
    assert endpoint_choices() == []
    assert endpoint_note().startswith("⚠️") and "not valid YAML" in endpoint_note()
