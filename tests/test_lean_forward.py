"""The lean Llama forward against transformers' own: same logits, same cache, same greedy tokens."""

from __future__ import annotations

import copy

import pytest
import torch
from lean_checks import assert_greedy_equals_generate, assert_same_as_hf, hf_forward, steps
from tiny_models import tiny_llama
from transformers import LlamaConfig, LlamaForCausalLM

from billion.core import lean_forward, lean_fused, native
from billion.core.generation import forward
from billion.core.kv_cache import new_cache
from billion.core.quant import quantize_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base():
    return tiny_llama(200, seed=3)


def test_fp32_logits_and_cache_are_bit_identical_to_transformers(base):
    if native.available():  # the norms run in C here, so these bits are the C kernel's
        assert native.rms_norm_exact(base.config.hidden_size, base.config.rms_norm_eps)
    assert_same_as_hf(base, 200)


@pytest.mark.skipif(not native.available(), reason="the block kernels need AVX2 and a C compiler")
@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_block_quantized_logits_are_bit_identical_to_transformers(base, scheme, monkeypatch):
    """lean_forward's own layers; the fused C layers (test_lean_fused.py) are close, not equal."""
    monkeypatch.setattr(lean_fused, "ENABLED", False)
    assert_same_as_hf(quantize_model(base, scheme), 200)


def test_bf16_logits_are_bit_identical_to_transformers(base):
    assert_same_as_hf(copy.deepcopy(base).to(torch.bfloat16), 200)


def test_gqa_free_model_and_llama3_rope_scaling():
    """One KV head per query head, and Llama-3.2's rope scaling (its table comes from inv_freq)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=150, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 64},
                         tie_word_embeddings=True)
    assert_same_as_hf(LlamaForCausalLM(config).eval(), 150)


def test_rollback_by_crop_then_continue(base):
    """Speculative decoding crops rejected positions off the cache and goes on from there."""
    ours, theirs = new_cache(), new_cache()
    prompt, block, step = steps(200)[0], steps(200)[3], steps(200)[1]
    for cache, run in ((ours, forward), (theirs, hf_forward)):
        run(base, prompt, cache)
        run(base, block, cache)
        cache.crop(-(block.shape[1] - 2))  # keep two of the five
    assert torch.equal(forward(base, step, ours), hf_forward(base, step, theirs))


def test_the_rotary_table_grows_past_its_first_room(base, monkeypatch):
    monkeypatch.setattr(lean_forward, "_ROPE_ROOM", 4)
    model = copy.deepcopy(base)
    ids = torch.randint(3, 200, (1, 12), generator=torch.Generator().manual_seed(2))
    ours, theirs = new_cache(), new_cache()
    assert torch.equal(forward(model, ids, ours, keep=1), hf_forward(model, ids, theirs, keep=1))
    for token in range(20):  # one step at a time, crossing the grown table's end (24) too
        ids = torch.tensor([[5 + token]])
        assert torch.equal(forward(model, ids, ours), hf_forward(model, ids, theirs))


def test_greedy_tokens_equal_generate(base):
    assert_greedy_equals_generate(copy.deepcopy(base))


def test_a_plan_goes_stale_when_lora_layers_are_injected(base):
    """PEFT swaps the projections in place: the lean forward must see the adapter (or step aside)."""
    from peft import LoraConfig, get_peft_model

    model = copy.deepcopy(base)
    first = lean_forward.plan_for(model)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    assert lean_forward.plan_for(peft) is None  # the wrapper: HF's forward
    inner = peft.get_base_model()
    assert lean_forward.plan_for(inner) is not first
    ids = torch.tensor([[1, 5, 9, 30]])
    assert torch.equal(forward(inner, ids, new_cache()), hf_forward(inner, ids, new_cache()))
    assert not torch.equal(forward(inner, ids, new_cache()), hf_forward(base, ids, new_cache()))


def test_models_it_does_not_describe_keep_transformers_forward(base):
    from transformers import GPT2Config, GPT2LMHeadModel

    eager = copy.deepcopy(base)
    eager.config._attn_implementation = "eager"
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2)).eval()
    assert lean_forward.plan_for(gpt2) is None  # no lean forward for this architecture
    assert lean_forward.plan_for(eager) is None
    assert lean_forward.plan_for(base) is not None


def test_deepcopy_does_not_carry_a_plan(base):
    lean_forward.plan_for(base)
    twin = copy.deepcopy(base)
    with torch.no_grad():
        twin.lm_head.weight.mul_(2)
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(forward(twin, ids, new_cache()), hf_forward(twin, ids, new_cache()))
