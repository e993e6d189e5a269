"""What the tabs share: handlers bound to the app context, model choices, the GPU boundary, and
turning engine errors into warnings.

Handlers are module functions whose first argument is the app context (billion.context.AppContext);
`build_*_tab(ctx)` binds them with `bind`, and `on_device` for the ones that need the GPU.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from pathlib import Path
from typing import Callable

import gradio as gr

from billion.core.availability import HubProbe, available_all
from billion.core.errors import BillionError
from billion.core.registry import pick_default

try:  # `spaces` exists on Hugging Face Spaces; elsewhere the GPU boundary is a no-op.
    import spaces
except ImportError:  # pragma: no cover - depends on the host
    spaces = None

# Read as `spaces` reads it: SPACES_ZERO_GPU=false (or unset) is a plain Space or machine.
ON_ZEROGPU = bool(spaces) and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu(duration: int | Callable[..., int] = 60):
    """Mark a handler that needs the GPU. On ZeroGPU Spaces it gets one for `duration` seconds
    (a number, or a function of the handler's arguments); elsewhere it runs as is."""
    def wrap(fn):
        if ON_ZEROGPU:
            return spaces.GPU(duration=duration)(fn)
        return fn
    return wrap


def bind(fn: Callable, *first) -> Callable:
    """fn with its first arguments (the app context, ...) given: a handler of the rest.

    Gradio reads the remaining signature (gr.Request, gr.OAuthProfile, gr.Progress, by their type
    hints) and the name, as for fn itself: a functools.partial would hide the hints, so gr.Request
    would silently stay None.
    """
    if inspect.isgeneratorfunction(fn):
        def bound(*args, **kwargs):
            yield from fn(*first, *args, **kwargs)
    else:
        def bound(*args, **kwargs):
            return fn(*first, *args, **kwargs)
    functools.update_wrapper(bound, fn)
    signature = inspect.signature(fn)
    bound.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[len(first):])
    return bound


def on_device(fn: Callable, ctx, duration: int | Callable[..., int] = 60) -> Callable:
    """bind(fn, ctx), marked for the GPU (see gpu). On ZeroGPU the call runs in a forked process
    that already holds ctx in its memory: only the other arguments are pickled across."""
    return gpu(duration)(bind(fn, ctx))


def model_choices(hub: HubProbe | None = None) -> tuple[list[tuple[str, str]], str]:
    """(dropdown choices of loadable models, markdown explaining the others)."""
    items = available_all(hub)
    choices = [(model_label(a.spec), a.spec.alias) for a in items if a.ok]
    missing = [f"| `{a.spec.alias}` | {a.spec.hub_id} | {a.reason} |" for a in items if not a.ok]
    note = ("| model | hub id | why it cannot load now |\n|---|---|---|\n" + "\n".join(missing)
            if missing else "Every registry model can load.")
    return choices, note


def model_label(spec) -> str:
    """A dropdown entry; base models are marked (they get a chat scaffold, see core/scaffold.py)."""
    base = "" if spec.instruct else " · base model (continues text)"
    return f"{spec.alias} · {spec.size_label} · {spec.family}{base}"


def default_model(choices: list[tuple[str, str]]) -> str | None:
    values = [value for _, value in choices]
    return pick_default(values)


def named_number(component, name: str):
    """The Slider or Number, refusing what its own checks would turn into a bare "Error" (NaN,
    infinities, a value past its ends) with a message that names the engine's field. Gradio runs
    a component's preprocess before the handler, so this is where the API's numbers arrive first."""
    preprocess = component.preprocess

    def checked(payload):
        if payload is None:
            return preprocess(payload)
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or \
                not math.isfinite(payload):
            raise gr.Error(f"{name} must be a finite number (got {payload!r}).")
        low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
        if (low is not None and payload < low) or (high is not None and payload > high):
            raise gr.Error(f"{name} must be between {low:g} and {high:g} here (got {payload!r}).")
        return preprocess(payload)

    component.preprocess = checked
    return component


def discard_upload(path: str | None) -> bool:
    """Delete a file Gradio received as an upload once the app has refused it: refused uploads
    must not pile up in the upload folder. Only files inside that folder are touched."""
    if not path:
        return False
    file = Path(path).resolve()
    folder = Path(gr.utils.get_upload_folder()).resolve()
    if not file.is_relative_to(folder) or file == folder or not file.is_file():
        return False
    file.unlink(missing_ok=True)
    if file.parent != folder:  # Gradio keeps each upload in a folder of its own
        try:
            file.parent.rmdir()
        except OSError:
            pass  # another upload shares it
    return True


def refusing_uploads(fn):
    """fn(path, ...) with the uploaded file at `path` deleted when fn refuses it (BillionError)."""
    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        try:
            return fn(path, *args, **kwargs)
        except BillionError:
            discard_upload(path)
            raise
    return wrapper


_FRIENDLY = (BillionError, MemoryError)


def _as_gradio_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, MemoryError):
        return gr.Error("Out of memory: pick a smaller model, int8/int4, or fewer new tokens.")
    return gr.Error(str(exc), duration=10)


def friendly_errors(fn):
    """Engine errors become an error toast that names the fix; the app keeps running."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except _FRIENDLY as exc:
                raise _as_gradio_error(exc) from exc
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _FRIENDLY as exc:
            raise _as_gradio_error(exc) from exc
    return plain
