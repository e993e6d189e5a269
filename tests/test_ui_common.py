"""The GPU boundary: a no-op off ZeroGPU, and slot durations that follow the work requested."""

from __future__ import annotations

from billion.spec.decoding import KSchedule
from billion.core.sampling import SamplingSettings
from billion.ui import common
from billion.ui.chat import _generation_seconds
from billion.ui.race import RaceRequest, _race_seconds, _sweep_seconds


def test_gpu_wrapper_is_the_handler_itself_off_zerogpu():
    assert not common.ON_ZEROGPU  # this machine has no ZeroGPU (no `spaces`, no SPACES_ZERO_GPU)

    def handler(x):
        return x + 1

    assert common.gpu(duration=10)(handler) is handler


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
