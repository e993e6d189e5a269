"""The page's endpoint form: added for the session only, listed with the configured ones, and
refused with a toast that names the fix."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

from billion.core.settings import Settings
from billion.ui.endpoints import add_endpoint, endpoint_choices, endpoint_note


def context(tmp_path, text: str, page_endpoints: bool = True):
    """What these handlers read of an AppContext: its settings."""
    (tmp_path / "models.yaml").write_text(text)
    return SimpleNamespace(settings=Settings.in_folder(
        tmp_path / "data", models_file=tmp_path / "models.yaml", page_endpoints=page_endpoints))


def test_added_for_the_session_and_listed(tmp_path):
    ctx = context(tmp_path, "models:\n  - {alias: shared, base_url: 'http://gpu-box:8000/v1', "
                            "model: m, api_key_env: VLLM_KEY}\n")
    session, note = add_endpoint(ctx, "mine", "http://127.0.0.1:9/v1", "some-model", "", [])
    assert [e.name for e in session] == ["endpoint:mine"] and session[0].origin == "page"
    assert "`endpoint:mine`" in note and "this session" in note and "`endpoint:shared`" in note
    assert [value for _, value in endpoint_choices(ctx, session)] == ["endpoint:mine", "endpoint:shared"]
    assert [value for _, value in endpoint_choices(ctx)] == ["endpoint:shared"]  # another session
    with pytest.raises(gr.Error, match="VLLM_KEY may only be sent"):
        add_endpoint(ctx, "steal", "https://elsewhere.example/v1", "m", "VLLM_KEY", session)
    with pytest.raises(gr.Error, match="switched off"):
        add_endpoint(context(tmp_path, "models: []", page_endpoints=False),
                     "mine", "http://127.0.0.1:9/v1", "m", "", [])


def test_a_broken_models_file_is_shown_not_raised(tmp_path):
    ctx = context(tmp_path, "models: [")
    assert endpoint_choices(ctx) == []
    assert endpoint_note(ctx).startswith("⚠️") and "not valid YAML" in endpoint_note(ctx)
