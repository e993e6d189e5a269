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
    with pytest.raises(BillionError, match="temperature must be 0"):
        sampling_from({"temperature": -1})
