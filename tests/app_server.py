"""Serve the whole app on a free loopback port for gradio_client and browser tests."""

from __future__ import annotations

import json
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from billion.context import AppContext, build_context
from billion.core.loading import ModelCache
from billion.core.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(data: Path | None = None, db_name: str = "billion.sqlite3", ctx: AppContext | None = None,
              models: ModelCache | None = None) -> Iterator[str]:
    """Build the demo, launch it, yield its URL. The app works in `ctx` when given (the caller can
    then look into its store, runs and models), else in a context of its own on `data` (default:
    the environment's data folder) that loads models into `models` (default: a cache of its own)."""
    import app

    own = ctx is None
    if ctx is None:
        settings = Settings.in_folder(data, db_path=data / db_name) if data is not None else None
        ctx = build_context(settings, models)
    demo = app.build_demo(ctx)
    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        if own:
            ctx.store.close()


def call_page_event(url: str, trigger: str, *data) -> dict:
    """An event with no API name (e.g. the trainer page's timer), joined through the queue exactly
    as the browser does; returns the queue's `process_completed` message."""
    config = httpx.get(url + "config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if any(t[1] == trigger for t in d["targets"]))
    session = uuid.uuid4().hex
    httpx.post(url + "gradio_api/queue/join", json={
        "data": list(data), "fn_index": fn_index, "session_hash": session, "event_data": None,
        "trigger_id": None}).raise_for_status()
    with httpx.stream("GET", url + f"gradio_api/queue/data?session_hash={session}", timeout=60) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                return message
    raise AssertionError("the page event never completed")
