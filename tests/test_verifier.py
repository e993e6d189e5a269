"""The packed verifier: 1-token steps exactly the model's own, multi-token forwards through oneDNN's
packed fp32 weights, every weight shared."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from billion.core.generation import forward
from billion.core.kv_cache import new_cache
from billion.core.sampling import SamplingSettings
from billion.spec.decoding import KSchedule, speculative_generate
from billion.spec.lookup import PromptLookupDraft
from billion.spec.verifier import PackedLinear, packable, verifier
from tiny_models import tiny_llama

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")]


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama(len(tokenizer), seed=0, layers=2)


def test_one_token_steps_are_bit_identical_and_verify_rows_close(model):
    packed = verifier(model)
    assert packed is not model and verifier(model) is packed  # made once per model
    assert any(isinstance(m, PackedLinear) for m in packed.modules())
    assert not any(isinstance(m, PackedLinear) for m in model.modules())  # the loaded model untouched
    prompt = torch.arange(3, 40)[None]
    with torch.inference_mode():
        caches = new_cache(model.config), new_cache(model.config)
        first = [forward(m, prompt, c) for m, c in zip((model, packed), caches)]
        steps = [forward(m, torch.tensor([[7]]), c) for m, c in zip((model, packed), caches)]
        verify = [forward(m, torch.tensor([[8, 9, 10, 11, 12]]), c) for m, c in zip((model, packed), caches)]
    assert torch.equal(steps[0], steps[1])
    assert torch.allclose(first[0], first[1], atol=1e-4) and torch.allclose(verify[0], verify[1], atol=1e-4)


def test_weights_are_shared_not_copied(model):
    packed = verifier(model)
    ours = dict(packed.named_parameters())
    for name, param in model.named_parameters():
        assert ours[name].data_ptr() == param.data_ptr()


def test_speculative_output_with_the_packed_verifier_is_the_target_greedy(model, tokenizer):
    prompt = tokenizer("0 1 2 3 4 5 6 7 8 9 0 1 2 3")["input_ids"]
    reference = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24,
                               pad_token_id=0)[0, len(prompt):].tolist()
    result = speculative_generate(verifier(model), prompt, PromptLookupDraft(len(tokenizer)),
                                  SamplingSettings(temperature=0, max_new_tokens=24), KSchedule(6))
    assert list(result.token_ids) == reference


def test_only_fp32_cpu_models_are_packed(tokenizer):
    half = tiny_llama(len(tokenizer), seed=1).to(torch.bfloat16)
    assert not packable(half) and verifier(half) is half
    assert not packable(nn.Sequential())
