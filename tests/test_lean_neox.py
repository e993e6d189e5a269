"""The lean GPT-NeoX (Pythia) and StableLM forward against transformers' own: same logits, same cache."""

from __future__ import annotations

import copy

import pytest
import torch
from lean_checks import assert_greedy_equals_generate, assert_same_as_hf, hf_forward, steps
from tiny_models import tiny_neox
from transformers import StableLmConfig, StableLmForCausalLM

from billion.core import lean_forward, lean_neox, native
from billion.core.generation import forward
from billion.core.kv_cache import new_cache
from billion.core.quant import quantize_model

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 200


def tiny_stablelm(parallel: bool = False, kv_heads: int = 4, seed: int = 0) -> StableLmForCausalLM:
    """StableLM-2-1.6B's shape in miniature: LayerNorm, q|k|v biases, a quarter of each head rotated."""
    torch.manual_seed(seed)
    config = StableLmConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=kv_heads, use_qkv_bias=True,
                            use_parallel_residual=parallel, max_position_embeddings=512,
                            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
                            eos_token_id=2, bos_token_id=1, pad_token_id=0, tie_word_embeddings=False)
    config._attn_implementation = "sdpa"
    return _randomised(StableLmForCausalLM(config).eval())


def _randomised(model):
    """Random biases and norm parameters: their initial zeros and ones would hide a wrong order."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                parameter.normal_(0.0, 0.5)
    return model


def neox(parallel: bool = True):
    model = tiny_neox(VOCAB, seed=1)
    model.config.use_parallel_residual = parallel
    for layer in model.gpt_neox.layers:
        layer.use_parallel_residual = parallel
    model.config._attn_implementation = "sdpa"
    return _randomised(model)


MODELS = {"pythia": lambda: neox(True), "neox-sequential": lambda: neox(False),
          "stablelm-2": lambda: tiny_stablelm(False), "stablelm-parallel": lambda: tiny_stablelm(True),
          "stablelm-gqa": lambda: tiny_stablelm(False, kv_heads=2)}


@pytest.mark.parametrize("name", MODELS)
def test_fp32_logits_and_cache_are_bit_identical_to_transformers(name):
    model = MODELS[name]()
    assert lean_forward.plan_for(model).rotary_dim == 4  # a quarter of 16: partial rotary is exercised
    assert_same_as_hf(model, VOCAB, lean_neox.NeoxPlan)


@pytest.mark.skipif(not native.available(), reason="the block kernels need AVX2 and a C compiler")
@pytest.mark.parametrize("scheme", ["int8", "int4"])
@pytest.mark.parametrize("name", ["pythia", "stablelm-2"])
def test_block_quantized_logits_are_bit_identical_to_transformers(name, scheme):
    assert_same_as_hf(quantize_model(MODELS[name](), scheme), VOCAB, lean_neox.NeoxPlan)


@pytest.mark.parametrize("name", ["pythia", "stablelm-2"])
def test_bf16_logits_are_bit_identical_to_transformers(name):
    assert_same_as_hf(MODELS[name]().to(torch.bfloat16), VOCAB, lean_neox.NeoxPlan)


def test_rollback_by_crop_then_continue():
    model = MODELS["stablelm-2"]()
    ours, theirs = new_cache(), new_cache()
    prompt, block, step = steps(VOCAB)[0], steps(VOCAB)[3], steps(VOCAB)[1]
    for cache, run in ((ours, forward), (theirs, hf_forward)):
        run(model, prompt, cache)
        run(model, block, cache)
        cache.crop(-3)  # keep two of the five
    assert torch.equal(forward(model, step, ours), hf_forward(model, step, theirs))


def test_greedy_tokens_equal_generate():
    assert_greedy_equals_generate(MODELS["pythia"]())


def test_models_it_does_not_describe_keep_transformers_forward():
    eager = MODELS["pythia"]()
    eager.config._attn_implementation = "eager"
    normed = copy.deepcopy(MODELS["stablelm-2"]())
    normed.config.qk_layernorm = True
    assert lean_forward.plan_for(eager) is None
    assert lean_forward.plan_for(normed) is None


@pytest.mark.skipif(not native.available(), reason="the rotary kernel needs AVX2 and a C compiler")
def test_rope_kernel_refuses_heads_past_the_row():
    x = torch.zeros(1, 10)
    with pytest.raises(ValueError, match="exceed a row"):
        native.rope_(x, 2, 4, torch.ones(1, 4), torch.zeros(1, 4), head_stride=8)
