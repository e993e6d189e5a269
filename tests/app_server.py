"""Serve the whole app on a free loopback port for gradio_client and browser tests."""

from __future__ import annotations

import json
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(data: Path | None = None, db_name: str = "billion.sqlite3") -> Iterator[str]:
    """Build the demo, launch it, yield its URL. With `data`, the app's data folder and store live
    there (set before the demo is built, restored after); otherwise the caller's environment holds."""
    import app

    with pytest.MonkeyPatch.context() as env:
        if data is not None:
            env.setenv("BILLION_DATA_DIR", str(data))
            env.setenv("BILLION_DB", str(data / db_name))
        demo = app.build_demo()
        demo.queue()
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            demo.close()


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
