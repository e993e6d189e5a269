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
