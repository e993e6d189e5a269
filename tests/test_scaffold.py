"""Base-model chat scaffold (issue 14): example turns first, and the answer ends at the turn boundary."""

import json

import pytest
import torch
from tiny_models import save_tiny

from billion.core.generation import generate_chat, render_chat, uses_fallback
from billion.core.sampling import SamplingSettings
from billion.core.scaffold import EXAMPLES, INTRO, scaffold_messages

ASK = [{"role": "user", "content": "Say where Paris is."}]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, models):
    """A tiny model whose tokenizer has no chat template: what a base model looks like here."""
    folder = save_tiny(tmp_path_factory.mktemp("tiny-base"), "llama")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    loaded = models.load(str(folder))
    assert uses_fallback(loaded)
    return loaded


def scripted(loaded, text: str):
    """Make the model write `text` token by token: its lm_head's output biased one step at a time."""
    script = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    step = {"n": 0}

    def bias(module, args, out):
        token = script[min(step["n"], len(script) - 1)]
        step["n"] += 1
        out = out.clone()
        out[..., -1, token] += 1e4
        return out

    return loaded.model.lm_head.register_forward_hook(bias)


def test_the_prompt_carries_the_example_turns(base_model):
    prompt = render_chat(base_model, ASK)
    assert prompt.startswith(INTRO + "\n\n") and prompt.endswith("User: Say where Paris is.\nAssistant:")
    for turn in EXAMPLES:
        assert turn["content"] in prompt
    own = render_chat(base_model, [{"role": "system", "content": "Be brief."}, *ASK])
    assert own.startswith("Be brief.\n\nUser: What is the capital") and INTRO not in own
    assert scaffold_messages(ASK)[-1] == ASK[0]


@pytest.mark.parametrize("next_turn", ["\nUser: and now tell me more", "\nAssistant: Paris again"])
def test_generation_stops_at_the_turn_boundary(base_model, next_turn):
    hook = scripted(base_model, " Paris is in France." + next_turn + " and on and on" * 8)
    try:
        result = generate_chat(base_model, ASK, SamplingSettings(temperature=0, max_new_tokens=60))
    finally:
        hook.remove()
    assert result.text == "Paris is in France." and result.finish_reason == "stop"


def test_base_models_are_marked_in_the_model_lists():
    from billion.core.registry import resolve
    from billion.ui.common import model_label

    assert "base model" in model_label(resolve("gemma3-270m"))
    assert "base model" not in model_label(resolve("smollm2-135m"))
