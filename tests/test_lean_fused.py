"""One C call per Llama layer (lean_fused.py, kernels/llama_layer.h): close to transformers' logits,
every row the same whatever the rows around it (so speculative decoding stays exact), and only
where it applies."""

from __future__ import annotations

import pytest
import torch
from lean_checks import hf_forward, steps
from tiny_models import tiny_llama
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from billion.core import lean_forward, lean_fused, native
from billion.core.generation import forward
from billion.core.kv_cache import new_cache
from billion.core.quant import quantize_model

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not native.available(), reason="the block kernels need AVX2 and a C compiler")]

VOCAB = 200


@pytest.fixture(scope="module")
def base():
    return tiny_llama(VOCAB, seed=3)


@pytest.fixture(scope="module", params=["int8", "int4"])
def quantized(request, base):
    return quantize_model(base, request.param)


def _close(a: torch.Tensor, b: torch.Tensor, scheme_bits: int) -> None:
    """Float rounding apart: int8's int16 activations pass it through almost unchanged; int4's int8
    activations can round a value the other way (a step of 1/127 of its block's largest)."""
    tolerance = 1e-4 if scheme_bits == 8 else 2e-2
    assert (a - b).abs().max() <= tolerance * b.abs().max(), (a - b).abs().max()


def test_quantized_llama_layers_are_fused(quantized):
    fused = lean_forward.plan_for(quantized).fused
    assert fused is not None and len(fused.layers) == quantized.config.num_hidden_layers
    assert fused.layers[0].bits == quantized.model.layers[0].self_attn.q_proj.bits


def test_logits_and_cache_are_close_to_transformers(quantized):
    bits = quantized.model.layers[0].self_attn.q_proj.bits
    ours, theirs = new_cache(), new_cache()
    for ids in steps(VOCAB):
        a, b = forward(quantized, ids, ours), hf_forward(quantized, ids, theirs)
        _close(a, b, bits)
        assert ours.get_seq_length() == theirs.get_seq_length()
    for mine, hf in zip(ours.layers, theirs.layers):
        _close(mine.keys, hf.keys, bits)
        _close(mine.values, hf.values, bits)


def test_a_verify_block_equals_its_one_row_steps_bit_for_bit(quantized):
    """Row t of a k-row call attends positions 0..start+t exactly as a one-row step there does."""
    prompt, block = steps(VOCAB)[0], torch.randint(3, VOCAB, (1, 6), generator=torch.Generator().manual_seed(5))
    whole, single = new_cache(), new_cache()
    forward(quantized, prompt, whole)
    forward(quantized, prompt, single)
    together = forward(quantized, block, whole)
    one_by_one = torch.cat([forward(quantized, block[:, i:i + 1], single) for i in range(block.shape[1])], dim=1)
    assert torch.equal(together, one_by_one)
    for a, b in zip(whole.layers, single.layers):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


def test_rollback_by_crop_then_continue(quantized):
    """Speculative decoding crops rejected positions off and goes on: the same as never writing them."""
    prompt, block, step = steps(VOCAB)[0], steps(VOCAB)[3], steps(VOCAB)[1]
    cropped, fresh = new_cache(), new_cache()
    forward(quantized, prompt, cropped)
    forward(quantized, block, cropped)
    cropped.crop(-(block.shape[1] - 2))
    forward(quantized, torch.cat([prompt, block[:, :2]], dim=1), fresh)
    assert torch.equal(forward(quantized, step, cropped), forward(quantized, step, fresh))


def test_long_context_grows_the_cache_and_attends_in_parallel(quantized):
    """Past the cache's first room (256 positions) and past the work that forks threads in attention."""
    bits = quantized.model.layers[0].self_attn.q_proj.bits
    gen = torch.Generator().manual_seed(9)
    ours, theirs = new_cache(), new_cache()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for _ in range(7):  # 7 x 47-row blocks: 329 positions, all on the fused path
            ids = torch.randint(3, VOCAB, (1, native.GEMM_ROWS - 1), generator=gen)
            _close(forward(quantized, ids, ours), hf_forward(quantized, ids, theirs), bits)
    finally:
        torch.set_num_threads(threads)
    assert ours.get_seq_length() == 7 * (native.GEMM_ROWS - 1)


def test_long_prompts_and_other_caches_keep_the_lean_layers(quantized):
    """A prompt of GEMM_ROWS rows, and a cache of transformers' own layers, take lean_forward's
    layers: transformers' bits."""
    ids = torch.randint(3, VOCAB, (1, native.GEMM_ROWS), generator=torch.Generator().manual_seed(2))
    assert torch.equal(forward(quantized, ids, new_cache()), hf_forward(quantized, ids, new_cache()))
    short = steps(VOCAB)[0]
    assert torch.equal(forward(quantized, short, DynamicCache()), hf_forward(quantized, short, DynamicCache()))


def test_models_it_does_not_fit_are_not_fused(base, monkeypatch):
    assert lean_forward.plan_for(base).fused is None  # fp32 projections
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, attention_bias=True)
    biased = quantize_model(LlamaForCausalLM(config).eval(), "int8")
    assert lean_forward.plan_for(biased).fused is None
    monkeypatch.setattr(lean_fused, "ENABLED", False)
    assert lean_forward.plan_for(quantize_model(base, "int8")).fused is None


def test_silu_times_up_is_as_accurate_as_torchs():
    """The fused layers' own exp (a polynomial): silu(gate) * up within float rounding of float64's,
    as close as torch's own silu is (~2.6e-7 relative here)."""
    gate = torch.cat([torch.linspace(-80, 80, 40001), torch.randn(40000, generator=torch.Generator().manual_seed(4)) * 4])
    up = torch.rand(gate.shape[0], generator=torch.Generator().manual_seed(6)) + 0.5
    ours = native.swiglu(torch.cat([gate, up])[None].contiguous())[0].double()
    truth = torch.nn.functional.silu(gate.double()) * up.double()
    assert ((ours - truth).abs() / truth.abs().clamp_min(1e-30)).max() < 4e-7


def test_a_layer_out_of_memory_leaves_the_cache_as_it_was(quantized, monkeypatch):
    """The C layer returns 1 when its scratch cannot be allocated: the layers already through take
    their new positions back, so the cache can go on (or be cropped) as if the step never ran."""
    prompt, step = steps(VOCAB)[0], steps(VOCAB)[1]
    cache, reference = new_cache(), new_cache()
    forward(quantized, prompt, cache)
    forward(quantized, prompt, reference)
    real, calls = native.llama_layer, []

    def fails_on_the_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("no memory for a decoder layer's scratch on 1 rows")
        real(*args)
    monkeypatch.setattr(native, "llama_layer", fails_on_the_second)
    with pytest.raises(MemoryError):
        forward(quantized, step, cache)
    assert [layer.get_seq_length() for layer in cache.layers] == [prompt.shape[1]] * len(cache.layers)
    monkeypatch.setattr(native, "llama_layer", real)
    assert torch.equal(forward(quantized, step, cache), forward(quantized, step, reference))
