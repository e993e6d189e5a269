"""Sampling settings from form and command-line values: one conversion for the UI and the CLI."""

from __future__ import annotations

import argparse

import pytest

from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings, sampling_from


def test_form_values_become_checked_settings():
    # What Gradio sends: floats from sliders, -1 from the seed box.
    settings = sampling_from({"temperature": 0.3, "top_k": 40.0, "max_new_tokens": 12.0, "seed": -1.0,
                              "prompt": "ignored"})
    assert settings == SamplingSettings(temperature=0.3, top_k=40, max_new_tokens=12, seed=None)
    assert isinstance(settings.top_k, int) and isinstance(settings.max_new_tokens, int)
    assert sampling_from({"seed": 7.0}).seed == 7 and sampling_from({"seed": ""}).seed is None


def test_missing_values_keep_the_base_and_bad_ones_are_refused():
    base = SamplingSettings(temperature=0.0, max_new_tokens=128)
    assert sampling_from({}, base) == base
    assert sampling_from(vars(argparse.Namespace(temperature=0.5, func=print)), base).max_new_tokens == 128
    with pytest.raises(BillionError, match="top_p must be a number"):
        sampling_from({"top_p": "high"})
    with pytest.raises(BillionError, match="temperature must be between 0"):
        sampling_from({"temperature": -1})


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("field, value", [
    # Issue 13, finding 11: NaN repetition penalty answered "successfully" with nothing; NaN
    # temperature, NaN top-k and seed 2**70 ended in a bare "Error".
    ("temperature", NAN), ("temperature", INF), ("temperature", 1e308), ("temperature", -INF),
    ("top_p", NAN), ("top_p", INF), ("top_p", 0.0),
    ("top_k", NAN), ("top_k", INF), ("top_k", 2.5), ("top_k", 10**30), ("top_k", -1),
    ("repetition_penalty", NAN), ("repetition_penalty", INF), ("repetition_penalty", 0.0),
    ("repetition_penalty", 1e300),
    ("max_new_tokens", NAN), ("max_new_tokens", INF), ("max_new_tokens", 10**12), ("max_new_tokens", 0),
    ("seed", 2**70), ("seed", NAN), ("seed", INF), ("seed", -5), ("seed", 1.5),
])
def test_non_finite_and_huge_values_are_refused_naming_the_field(field, value):
    with pytest.raises(BillionError, match=field):
        sampling_from({field: value})


@pytest.mark.parametrize("field, value", [("temperature", NAN), ("repetition_penalty", NAN),
                                          ("top_p", INF), ("seed", 2**64), ("top_k", 1.5)])
def test_settings_built_directly_are_checked_too(field, value):
    """The CLI and the engine build SamplingSettings themselves; validate() is the boundary."""
    with pytest.raises(BillionError, match=field):
        SamplingSettings(**{field: value}).validate()
