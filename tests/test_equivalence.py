"""Greedy tokens of billion's loop against HF generate at the same precision."""

from __future__ import annotations

import pytest
import torch

from billion.core import equivalence
from billion.core.availability import available
from billion.core.equivalence import compare_greedy
from billion.core.loading import LoadOptions, load_fresh
from billion.core.registry import resolve

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("quantization", ["none", "int8", "int4"])
def test_tiny_model_matches_generate_or_reports_where(tiny_dir, quantization, tmp_path, monkeypatch):
    monkeypatch.setenv("BILLION_CACHE_DIR", str(tmp_path))
    loaded = load_fresh(str(tiny_dir), LoadOptions(quantization=quantization))
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    result = compare_greedy(loaded, ids, 12)
    assert len(result.ours) == len(result.reference) == 12
    if result.same:
        assert result.ours == result.reference and result.margin is None
    else:  # allowed, but then it says where and by how much
        assert result.ours[:result.first_divergence] == result.reference[:result.first_divergence]
        assert result.margin is not None and result.margin >= 0


def test_a_divergence_is_located_with_its_margin(tiny_dir, monkeypatch):
    loaded = load_fresh(str(tiny_dir))
    ids = torch.tensor([[1, 40, 41, 42]])
    real = equivalence.hf_greedy

    def off_by_one(model, input_ids, new_tokens):
        tokens = list(real(model, input_ids, new_tokens))
        tokens[3] = (tokens[3] + 1) % 50
        return tuple(tokens)

    monkeypatch.setattr(equivalence, "hf_greedy", off_by_one)
    result = compare_greedy(loaded, ids, 6)
    assert result.first_divergence == 3 and result.margin > 0
    assert "token 3 of 6" in result.describe()


@pytest.mark.slow
@pytest.mark.skipif(not available(resolve("smollm2-135m")).ok, reason="offline SmolLM2 not installed")
@pytest.mark.parametrize("quantization", ["none", "int8", "int4"])
def test_offline_smollm2_greedy_equals_generate(quantization):
    """Measured 2026-11-30: identical at fp32, int8 and int4 on this prompt (24 tokens)."""
    from billion.bench.speed import fixed_length_prompt

    loaded = load_fresh("smollm2-135m", LoadOptions(quantization=quantization))
    result = compare_greedy(loaded, fixed_length_prompt(loaded.tokenizer, 32, loaded.device), 24)
    assert result.same or result.margin < 0.5, result.describe()
