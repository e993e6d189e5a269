import pytest
import torch

from billion.core.loop_guard import LOOP_NOTE, cut_loop, generate_guarded, repeating_period
from billion.core.sampling import SamplingSettings

ASK = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def loaded(tiny_dir, models):
    return models.load(str(tiny_dir))


@pytest.fixture
def looping(loaded):
    """The tiny model made to loop: its lm_head's output biased towards the token for "i"."""
    token = loaded.tokenizer.convert_tokens_to_ids("i")
    bias = torch.zeros(loaded.model.lm_head.out_features)
    bias[token] = 1e4
    hook = loaded.model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    yield loaded
    hook.remove()


def test_repeating_tails_are_found_and_plain_text_is_not():
    assert repeating_period("Hi" + "i" * 40) == 1
    assert repeating_period("How to: " + "Boil an egg: " * 5) == len("Boil an egg: ")
    # seen after a 0.3-epoch LoRA run of SmolLM2-135M: one 49-character sentence over and over
    sentence = "It is a way of communication that is not spoken. "
    assert repeating_period("The purr is a feline way. " + sentence * 4 + "It is a way") == len(sentence)
    assert repeating_period("Don't be afraid to ask for help. Don't be afraid to ask for help.") == 0
    for plain in ("The capital of Japan is Tokyo.", "Wait...", "Arr, matey! Yo ho ho! " * 2, ""):
        assert repeating_period(plain) == 0
    assert cut_loop("Hi" + "i" * 40, 1) == "Hi"


def test_the_guard_stops_a_looping_generation(looping):
    settings = SamplingSettings(temperature=0, max_new_tokens=300, seed=0)
    answer = generate_guarded(looping, ASK, settings)
    assert answer.looped and answer.finish_reason == "loop"
    assert set(answer.text) == {"i"} and len(answer.text) == 1
    assert answer.shown.endswith(LOOP_NOTE)


def test_an_answer_that_does_not_loop_runs_as_before(loaded):
    settings = SamplingSettings(temperature=0, max_new_tokens=8, seed=0)
    from billion.core.generation import generate_chat

    answer = generate_guarded(loaded, ASK, settings)
    plain = generate_chat(loaded, ASK, settings)
    if not answer.looped:  # a random tiny model may loop by itself; then the text is cut, not longer
        assert answer.text == plain.text and answer.shown == plain.text
    else:
        assert plain.text.startswith(answer.text)
