"""Endpoint models on a page: the configured ones (models.yaml) plus those a visitor adds for the
session, kept in a gr.State (server side). The form takes the NAME of a key variable, never a key."""

from __future__ import annotations

from collections.abc import Sequence

import gradio as gr

from billion.context import AppContext
from billion.core.errors import BillionError
from billion.endpoints.config import (MODELS_FILE_ENV, EndpointModel, configured_endpoints,
                                      page_endpoint)
from billion.ui.common import bind, friendly_errors


def all_endpoints(ctx: AppContext, session: Sequence[EndpointModel] | None = None
                  ) -> tuple[EndpointModel, ...]:
    """This session's endpoints, then the configured ones."""
    return (*(session or ()), *configured_endpoints(ctx.settings.models_file))


def endpoint_choices(ctx: AppContext, session: Sequence[EndpointModel] | None = None
                     ) -> list[tuple[str, str]]:
    """Dropdown entries: "<label> · over the network, from <host>" -> endpoint:<alias>."""
    try:
        endpoints = all_endpoints(ctx, session)
    except BillionError:  # a broken models.yaml must not take the page down; endpoint_note says why
        endpoints = tuple(session or ())
    return [(f"{e.name} · {e.label} · over the network, from {e.host}", e.name) for e in endpoints]


def endpoint_note(ctx: AppContext, session: Sequence[EndpointModel] | None = None) -> str:
    try:
        endpoints = all_endpoints(ctx, session)
    except BillionError as exc:
        return f"⚠️ {exc}"
    if not endpoints:
        return (f"No endpoint models yet: declare them in the file {MODELS_FILE_ENV} names "
                "(see docs/deploy.md)" + (", or add one below for this session."
                                          if ctx.settings.page_endpoints else "."))
    rows = "\n".join(f"| `{e.name}` | {e.label} | {e.host} | {'this session' if e.origin == 'page' else 'models.yaml'} |"
                     for e in endpoints)
    return f"| name | model | server | from |\n|---|---|---|---|\n{rows}"


@friendly_errors
def add_endpoint(ctx: AppContext, alias: str, base_url: str, model: str, key_env: str,
                 session: list[EndpointModel] | None):
    """Add an endpoint for this session. Returns (session list, note)."""
    added = page_endpoint(alias, base_url, model, key_env, session or (),
                          configured_endpoints(ctx.settings.models_file), ctx.settings.page_endpoints)
    session = [*(session or ()), added]
    gr.Info(f"{added.name} added for this session.")
    return session, endpoint_note(ctx, session)


def build_endpoint_adder(ctx: AppContext, session: gr.State):
    """The 'Endpoint models' accordion. Returns the add event (chain `.then` to refresh pickers),
    or None where adding on the page is switched off."""
    with gr.Accordion("Endpoint models (OpenAI-compatible servers)", open=False):
        note = gr.Markdown(bind(endpoint_note, ctx))
        if not ctx.settings.page_endpoints:
            return None
        with gr.Row():
            alias = gr.Textbox(label="Alias", placeholder="my-model", scale=1)
            base_url = gr.Textbox(label="Base URL", placeholder="http://host:8000/v1", scale=2)
            model = gr.Textbox(label="Model name on the server", scale=2)
            key_env = gr.Textbox(label="API key variable (its NAME, optional)", scale=1,
                                 placeholder="e.g. VLLM_API_KEY")
        add = gr.Button("Add for this session")
        return add.click(bind(add_endpoint, ctx), [alias, base_url, model, key_env, session],
                         [session, note], api_name=False)
