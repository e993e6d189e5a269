"""The lean Gemma-3 forward against transformers' own: same logits, same cache, same greedy tokens."""

from __future__ import annotations

import copy

import pytest
import torch
from lean_checks import assert_greedy_equals_generate, assert_same_as_hf, hf_forward, steps
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from billion.core import lean_forward, lean_gemma, native
from billion.core.generation import forward
from billion.core.kv_cache import new_cache
from billion.core.quant import quantize_model

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 200


def tiny_gemma(sliding_window: int = 64, layer_types: tuple[str, ...] = ("sliding_attention", "full_attention",
                                                                        "sliding_attention"), seed: int = 0):
    """Gemma-3-270M's shape in miniature: one KV head for four query heads, head_dim apart from
    hidden / heads, sliding and full layers with their own rotary bases, random norm weights
    (Gemma initialises them to zero, which would hide the 1 + weight)."""
    torch.manual_seed(seed)
    config = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=len(layer_types),
                              num_attention_heads=4, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                              sliding_window=sliding_window, layer_types=list(layer_types),
                              max_position_embeddings=512, eos_token_id=2, bos_token_id=1, pad_token_id=0)
    config._attn_implementation = "sdpa"
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.normal_(0.0, 0.5)
    return model


@pytest.fixture(scope="module")
def base():
    return tiny_gemma()


def test_fp32_logits_and_cache_are_bit_identical_to_transformers(base):
    if native.available():  # the norms run in C here, so these bits are the C kernel's
        assert native.rms_norm_exact(base.config.hidden_size, base.config.rms_norm_eps)
        assert native.rms_norm_exact(base.config.head_dim, base.config.rms_norm_eps)
    assert_same_as_hf(base, VOCAB, lean_gemma.GemmaPlan)


def test_with_transformers_own_sliding_window_cache_layers(base):
    """The speculative race builds its caches from the config: sliding layers are transformers' class."""
    assert_same_as_hf(base, VOCAB, lean_gemma.GemmaPlan, base.config)


@pytest.mark.skipif(not native.available(), reason="the block kernels need AVX2 and a C compiler")
@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_block_quantized_logits_are_bit_identical_to_transformers(base, scheme):
    assert_same_as_hf(quantize_model(base, scheme), VOCAB, lean_gemma.GemmaPlan)


def test_bf16_logits_are_bit_identical_to_transformers(base):
    assert_same_as_hf(copy.deepcopy(base).to(torch.bfloat16), VOCAB, lean_gemma.GemmaPlan)


def _counting_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = lean_gemma.gemma_forward
    monkeypatch.setattr(lean_gemma, "gemma_forward", lambda plan, ids, *a, **k: calls.append(ids.shape[1]) or
                        real(plan, ids, *a, **k))
    return calls


@pytest.mark.parametrize("window", [11, 12, 14])
def test_past_the_sliding_window_the_windowed_mask_is_transformers(monkeypatch, window):
    """From the window's length on transformers masks sliding layers (a 5-token block across the
    edge, single steps past it): the lean forward still runs every call, with its logits."""
    model = tiny_gemma(sliding_window=window)
    calls = _counting_calls(monkeypatch)
    ours, theirs = new_cache(), new_cache()
    for ids in steps(VOCAB) + steps(VOCAB)[1:]:  # 9, 10, 11, 16, 17, then 18, 19, 24, 25 positions
        assert torch.equal(forward(model, ids, ours), hf_forward(model, ids, theirs))
    assert calls == [9, 1, 1, 5, 1, 1, 1, 5, 1]


def test_a_long_prompt_past_the_window_at_once():
    model = tiny_gemma(sliding_window=6)
    ids = steps(VOCAB)[0]
    assert torch.equal(forward(model, ids, new_cache()), hf_forward(model, ids, new_cache()))


def test_window_only_cache_layers_hand_calls_past_the_window_to_transformers(monkeypatch):
    """The speculative race's caches (built from the config) keep only the window in sliding layers."""
    model = tiny_gemma(sliding_window=11)
    calls = _counting_calls(monkeypatch)
    ours, theirs = new_cache(model.config), new_cache(model.config)
    for ids in steps(VOCAB):  # 9, 10 positions lean; 11 (the window), 16, 17 transformers'
        assert torch.equal(forward(model, ids, ours), hf_forward(model, ids, theirs))
    assert calls == [9, 1]


def test_full_attention_only_has_no_window_limit():
    model = tiny_gemma(sliding_window=4, layer_types=("full_attention", "full_attention"))
    ours, theirs = new_cache(), new_cache()
    for ids in steps(VOCAB):
        assert torch.equal(forward(model, ids, ours), hf_forward(model, ids, theirs))
    assert ours.get_seq_length() == 17


def test_greedy_tokens_equal_generate(base):
    assert_greedy_equals_generate(copy.deepcopy(base))


def test_final_logit_softcapping_is_applied_as_transformers_does():
    model = tiny_gemma()
    model.config.final_logit_softcapping = 0.5  # small, so it clips the random logits hard
    ids = steps(VOCAB)[0]
    ours = forward(model, ids, new_cache())
    assert torch.equal(ours, hf_forward(model, ids, new_cache()))
    assert ours.abs().max() < 0.5


def test_models_it_does_not_describe_keep_transformers_forward(base):
    eager = copy.deepcopy(base)
    eager.config._attn_implementation = "eager"
    capped = copy.deepcopy(base)
    capped.config.attn_logit_softcapping = 50.0
    assert lean_forward.plan_for(eager) is None
    assert lean_forward.plan_for(capped) is None
