"""Identity leaks: answers that name their own model or maker."""

from __future__ import annotations

import pytest

from billion.arena.contestants import Contestant
from billion.arena.leaks import detect_identity_leak, identity_terms


@pytest.mark.parametrize("text, found", [
    ("Hello! I am SmolLM2, a small assistant.", "SmolLM2"),
    ("I'm gemma, here to help", "gemma"),
    ("I was trained by Meta.", "Meta"),
    ("I was developed by researchers at Google", "Google"),
    ("My creators are the Hugging Face team", "Hugging Face"),
    ("Built on Llama-3.2", "Llama-3.2"),
    ("from Stability AI", "Stability AI"),
])
def test_leak_detected(text, found):
    reason = detect_identity_leak(text)
    assert reason is not None and f"'{found}'" in reason


@pytest.mark.parametrize("text", [
    "Economic stability matters.", "Search Google for the answer.", "Check the metadata first.",
    "Llamas live in the Andes.", "Smolensk is a city.", "2 + 2 = 4",
])
def test_no_leak_in_ordinary_answers(text):
    assert detect_identity_leak(text) is None


def test_terms_include_own_alias_adapter_and_label():
    terms = identity_terms([Contestant("my-finetune"),
                            Contestant("smollm2-135m", adapter="/runs/lora-recipes/", label="chef")])
    assert {"my-finetune", "lora-recipes", "chef", "SmolLM"} <= set(terms)
    assert detect_identity_leak("Hi, I am my-finetune.", terms) is not None
    assert detect_identity_leak("The chef says hello.", terms) is not None
    assert detect_identity_leak("The chef says hello.") is None
    # Too short to flag without false alarms everywhere.
    assert "ab" not in identity_terms([Contestant("ab")])
