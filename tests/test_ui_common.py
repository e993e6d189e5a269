"""The GPU boundary: a no-op off ZeroGPU, the app context kept out of what crosses it, and slot
durations that follow the work requested."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

from billion.core.sampling import SamplingSettings
from billion.spec.decoding import KSchedule
from billion.spec.race import RaceRequest
from billion.ui import common
from billion.ui.chat import _generation_seconds
from billion.ui.race import _race_seconds, _sweep_seconds


def handler(ctx, x):
    return ctx, x + 1


def test_gpu_wrapper_is_the_handler_itself_off_zerogpu(monkeypatch):
    monkeypatch.setattr(common, "ON_ZEROGPU", False)
    assert common.gpu(duration=10)(handler) is handler
    bound = common.on_device(handler, "ctx", duration=10)
    assert bound(1) == ("ctx", 2) and list(inspect.signature(bound).parameters) == ["x"]


def test_on_zerogpu_only_the_request_crosses_the_boundary(monkeypatch):
    marked = []

    def gpu(duration):
        def mark(fn):
            marked.append((fn, duration))
            return fn
        return mark

    monkeypatch.setattr(common, "ON_ZEROGPU", True)
    monkeypatch.setattr(common, "spaces", SimpleNamespace(GPU=gpu))
    bound = common.on_device(handler, "ctx", duration=42)
    ((device_fn, duration),) = marked
    # spaces.GPU pickles the arguments of the function it marks: the context is not one of them.
    assert duration == 42 and list(inspect.signature(device_fn).parameters) == ["x"]
    assert bound(1) == ("ctx", 2) and bound.__name__ == "handler"


def chat_seconds(tokens: int, compare: bool) -> int:
    return _generation_seconds("hi", [], [], compare, "a", "b", "", 0.7, 0.95, 0, 1.0, tokens, -1, "auto")


def test_chat_slot_grows_with_tokens_and_with_a_second_model():
    assert chat_seconds(1024, False) > chat_seconds(64, False)
    assert chat_seconds(512, True) > chat_seconds(512, False)


def race_request(tokens: int, reference: bool = False) -> RaceRequest:
    return RaceRequest(target="smollm2-135m", draft="prompt-lookup", schedule=KSchedule(k=4),
                       settings=SamplingSettings(temperature=0.0, max_new_tokens=tokens), prompt="x",
                       reference=reference)


def test_race_slot_grows_with_tokens_reference_and_sweep():
    assert _race_seconds(race_request(512)) > _race_seconds(race_request(64))
    assert _race_seconds(race_request(128, reference=True)) > _race_seconds(race_request(128))
    assert _sweep_seconds(race_request(128)) > _race_seconds(race_request(128, reference=True))


def test_numbers_that_gradio_would_turn_into_a_bare_error_name_their_field():
    """Issue 13, finding 11: a NaN top-k failed in the slider's own rounding with a bare "Error"."""
    import gradio as gr
    import pytest

    top_k = common.named_number(gr.Slider(0, 200, step=1, label="Top-k"), "top_k")
    seed = common.named_number(gr.Number(value=-1, precision=0), "seed")
    assert top_k.preprocess(40.0) == 40 and seed.preprocess(-1) == -1 and seed.preprocess(None) is None
    for component, value, message in ((top_k, float("nan"), "top_k must be a finite number"),
                                      (top_k, float("inf"), "top_k must be a finite number"),
                                      (top_k, 10**9, "top_k must be between 0 and 200"),
                                      (top_k, "7", "top_k must be a finite number"),
                                      (seed, float("nan"), "seed must be a finite number")):
        with pytest.raises(gr.Error, match=message):
            component.preprocess(value)


def test_a_refused_upload_is_deleted_and_nothing_else_is(tmp_path, monkeypatch):
    uploads = tmp_path / "gradio"
    kept = tmp_path / "mine.jsonl"
    kept.write_text("{}")
    upload = uploads / "abc123" / "data.jsonl"
    upload.parent.mkdir(parents=True)
    upload.write_text("{}")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    assert not common.discard_upload(str(kept)) and kept.exists()
    assert not common.discard_upload(str(uploads / "abc123" / ".." / ".." / "mine.jsonl")) and kept.exists()

    def refuse(path):
        raise common.BillionError("no usable row")

    import pytest

    with pytest.raises(common.BillionError):
        common.refusing_uploads(refuse)(str(upload))
    assert not upload.exists() and not upload.parent.exists() and uploads.is_dir()
