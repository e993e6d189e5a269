"""Per-model default sampling (issue 14, fix 11): generation_config first, then the model card."""

from __future__ import annotations

import json

import httpx
import pytest

from billion.core.recommended import from_generation_config, recommended_sampling
from billion.core.registry import MODELS
from billion.core.sampling import SamplingSettings

needs_smollm = pytest.mark.skipif(not any(m.alias == "smollm2-135m" for m in MODELS),
                                  reason="needs the offline SmolLM2 entry")


def test_generation_config_fields_win(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "temperature": 0.3, "top_p": 0.8, "bos_token_id": 1}))
    assert from_generation_config(tmp_path) == {"temperature": 0.3, "top_p": 0.8}
    (tmp_path / "generation_config.json").write_text(json.dumps({"do_sample": False}))
    assert from_generation_config(tmp_path) == {"temperature": 0.0}
    assert from_generation_config(tmp_path / "missing") == {}


@needs_smollm
def test_smollm2_gets_its_cards_low_temperature_and_base_models_keep_the_default():
    # the converted GGUF's generation_config has no sampling fields, so the card's figures apply
    smol = recommended_sampling("smollm2-135m")
    assert (smol.settings.temperature, smol.settings.top_p) == (0.2, 0.9)
    assert "model card" in smol.source
    assert recommended_sampling("gemma3-270m").settings == SamplingSettings()
    assert recommended_sampling("endpoint:whatever").source == "app default"


@needs_smollm
def test_the_chat_tab_starts_at_the_models_recommended_temperature(app_url):
    """The served page's config: the Chat temperature slider starts at SmolLM2's 0.2, not 0.7."""
    config = httpx.get(app_url + "config").json()
    sliders = [c["props"] for c in config["components"]
               if c["props"].get("label") == "Temperature (0 = greedy)"]
    assert sliders and sliders[0]["value"] == 0.2
    assert "model card" in sliders[0]["info"]
