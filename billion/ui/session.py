"""What survives a reload (issue 14, fix 3): a random token per browser and tab, kept in its
localStorage (gr.BrowserState, encrypted with a secret from the data folder), names the state the
server keeps for it (billion.store.session_state). The page's load event turns the stored token into
a gr.State (never sent to the browser, and not part of the API), which handlers then take.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import Context
from gradio.utils import get_upload_folder

from billion.context import AppContext
from billion.store.session_state import TOKEN

#: seconds between two saves of a streaming answer (and one more after the last update)
SAVE_EVERY_S = 0.5


def session_secret(folder: Path) -> str:
    """The key the browser's token is encrypted with: kept in the data folder, so a restarted app
    still reads the tokens browsers stored before."""
    return folder_secret(folder, ".session-secret")


def folder_secret(folder: Path, name: str) -> str:
    """A random key kept in the data folder under `name` (created once, readable by this user only)."""
    path = folder / name
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(os.urandom(16).hex())
        path.chmod(0o600)
    return path.read_text().strip()


def at_page_level(make: Callable[[], Any]) -> Any:
    """make() with the page, not the current tab, as the parent: Gradio mounts a tab's children only
    when the tab is first opened, and a BrowserState not mounted yet reads as its default, so the
    page's load event would replace the stored token with a new one (and lose what it kept)."""
    here = Context.block
    Context.block = Context.root_block or here
    try:
        return make()
    finally:
        Context.block = here


def page_token(ctx: AppContext, storage_key: str) -> tuple[gr.BrowserState, gr.State]:
    """(the token in the browser, the same token in a server-side State once the page loaded)."""
    secret = session_secret(ctx.settings.data_dir)
    stored = at_page_level(lambda: gr.BrowserState("", storage_key=storage_key, secret=secret))
    return stored, gr.State(None)


def identify_page(token: str | None) -> tuple[str, str]:
    """On page load: the browser's token (a new one the first time or when malformed), twice."""
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        token = secrets.token_hex(16)
    return token, token


def on_page_load(stored: gr.BrowserState, current: gr.State, restore: Callable, outputs: list):
    """At each page load: the token, then `restore(token)` into outputs. Returns the event."""
    return gr.on(None, identify_page, stored, [stored, current], api_name=False, queue=False) \
        .then(restore, current, outputs, api_name=False, queue=False)


def saving(handler: Callable[..., Iterator], save: Callable[[str, tuple, Any, bool], None]):
    """handler, with one more input (the page's token State): each update passes through, and
    `save(token, inputs, update, cut)` keeps the latest at most every SAVE_EVERY_S and after the last
    (cut: the stream ended early, by Stop, a reload or an error). No token (an API call): no saves."""
    def run(*args):
        *inputs, token = args
        last, saved_at, finished = None, 0.0, False
        try:
            for update in handler(*inputs):
                last = update
                if token and time.monotonic() - saved_at >= SAVE_EVERY_S:
                    save(token, tuple(inputs), update, True)
                    saved_at = time.monotonic()
                yield update
            finished = True
        finally:  # runs on Stop or a closed page too, when Gradio closes the generator
            if token and last is not None:
                save(token, tuple(inputs), last, not finished)
    run.__name__ = getattr(handler, "__name__", "run")
    return run


def upload_copy(kept: Path) -> str:
    """A copy of a kept file in Gradio's upload folder: what a File component may show again
    (Gradio refuses to show files from elsewhere, such as the data folder)."""
    folder = Path(get_upload_folder()) / f"restored-{secrets.token_hex(8)}"
    folder.mkdir(parents=True, exist_ok=True)
    return str(shutil.copy2(kept, folder / kept.name))
