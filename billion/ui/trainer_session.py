"""The trainer's form and chosen data file across a reload (issue 14, fix 3).

Keyed by the browser's owner token (billion.ui.trainer_runs.identify keeps it in a gr.BrowserState):
each edit of a field saves the form; an upload that reads is copied under the data folder
(billion.store.session_state, size-capped); the page's load sets the fields and the file again,
which re-reads the file as a fresh upload would.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from billion.context import AppContext
from billion.core.errors import BillionError
from billion.ui.session import upload_copy

FORM_KIND, FILE_KIND = "trainer-form", "trainer-file"


def keep_form(ctx: AppContext, names: tuple[str, ...], token: str | None, *values) -> None:
    """Save the form's fields by name (nothing without a token: the page has not loaded yet)."""
    if token and ctx.sessions is not None:
        ctx.sessions.save(token, FORM_KIND, dict(zip(names, values)))


def keep_upload(ctx: AppContext, token: str | None, path: str | None, dataset) -> None:
    """Keep a copy of the file that just read well; forget it when the file is cleared."""
    if not token or ctx.sessions is None:
        return
    if not path:
        ctx.sessions.forget_file(token, FILE_KIND)
    elif dataset is not None and Path(path).is_file():
        try:
            ctx.sessions.keep_file(token, FILE_KIND, path)
        except BillionError as exc:  # too big to keep: it still trains, only a reload forgets it
            gr.Info(str(exc))


def restore_form(ctx: AppContext, names: tuple[str, ...], choices: set[str], token: str | None):
    """The fields as this browser left them, then the kept file (or unchanged)."""
    kept = ctx.sessions.load(token, FORM_KIND) if token and ctx.sessions is not None else None
    kept = kept if isinstance(kept, dict) else {}
    if kept.get("model") not in choices:
        kept.pop("model", None)  # a model no longer offered here stays at the default
    fields = [gr.update(value=kept[name]) if name in kept else gr.update() for name in names]
    found = ctx.sessions.kept_file(token, FILE_KIND) if token and ctx.sessions is not None else None
    return (*fields, upload_copy(found) if found else gr.update())


def session_trainer(ctx: AppContext, token: gr.BrowserState, fields: dict, choices: list,
                    upload: gr.File, dataset: gr.State, checked) -> None:
    """Wire the saves (each field's change; after `checked`, the upload's read) and the restore."""
    names, components = tuple(fields), list(fields.values())

    def save(key, *values):
        keep_form(ctx, names, key, *values)

    def restore(key):
        return restore_form(ctx, names, {value for _, value in choices}, key)

    # A person's edits only (a restore, or a control mounting late, must not save over the form); a
    # text box also on blur: at .input its value can still lag the last keystroke
    edits = [c.input for c in components] + [c.blur for c in components if isinstance(c, gr.Textbox)]
    gr.on(edits, save, [token, *components], None, api_name=False, queue=False,
          show_progress="hidden")
    checked.then(lambda key, path, data: keep_upload(ctx, key, path, data), [token, upload, dataset], None,
                 api_name=False, show_progress="hidden")
    gr.on(None, restore, token, [*components, upload], api_name=False, queue=False)
