"""Next-token agreement and KL against a reference model, on tiny real transformer models."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from billion.bench.tasks import offline_suite_text
from billion.core.fidelity import chunks, compare, measure

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work on a shared 2-core CPU (conftest.py)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval()


def test_a_model_against_itself_agrees_everywhere_with_no_divergence(model):
    ids = torch.randint(0, 64, (70,), generator=torch.Generator().manual_seed(1))
    same = measure(model, {"copy": copy.deepcopy(model)}, ids, window=32)["copy"]
    assert same.tokens == 70 and same.top1_agreement == 1.0 and abs(same.mean_kl) < 1e-6


def test_a_perturbed_model_disagrees_in_proportion(model):
    ids = torch.randint(0, 64, (96,), generator=torch.Generator().manual_seed(2))
    slight, heavy = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        for target, size in ((slight, 0.01), (heavy, 1.0)):
            for param in target.parameters():
                param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(3)) * size)
    found = measure(model, {"slight": slight, "heavy": heavy}, ids, window=40)
    assert found["slight"].top1_agreement > found["heavy"].top1_agreement
    assert 0 < found["slight"].mean_kl < found["heavy"].mean_kl


def test_compare_counts_agreement_and_sums_kl():
    reference = torch.log_softmax(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), -1)
    other = torch.log_softmax(torch.tensor([[2.0, 0.0], [2.0, 0.0]]), -1)
    agree, kl = compare(reference, other)
    p = reference[1].exp()
    assert agree == 1 and kl == pytest.approx(float((p * (reference[1] - other[1])).sum()))


def test_windows_cover_every_token_once_and_the_suite_text_holds_the_answers():
    ids = torch.arange(1030)
    assert [len(c) for c in chunks(ids, 512)] == [512, 512, 6] and torch.equal(torch.cat(chunks(ids)), ids)
    text = offline_suite_text()
    assert text.count("Question: ") == 227 and "Answer: carbon dioxide" in text
    with pytest.raises(ValueError):
        measure(None, {}, torch.arange(0))
