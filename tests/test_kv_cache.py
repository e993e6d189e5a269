"""The preallocated KV cache gives bit-identical logits to transformers' DynamicCache, rollback included."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, Gemma3ForCausalLM, Gemma3TextConfig
from transformers.cache_utils import DynamicSlidingWindowLayer

from billion.core.generation import forward
from billion.core.kv_cache import INITIAL_ROOM, PreallocatedLayer, new_cache
from tiny_models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


def run(model, cache, steps):
    """Logits of each step: a list of token lists, with negative ints meaning 'crop that many'."""
    out = []
    for step in steps:
        if isinstance(step, int):
            cache.crop(step)
        else:
            out.append(forward(model, torch.tensor([step]), cache))
    return out


def test_same_logits_as_dynamic_cache_through_growth_and_rollback():
    model = tiny_llama(64, seed=0, layers=2)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, 64, (INITIAL_ROOM - 3,), generator=gen).tolist()
    # Prefill near the initial room, then steps that cross it, crops (rollback) and re-writes.
    steps = [prompt, [5], [6, 7, 8, 9], -3, [10, 11], [12], -1, [13, 14, 15, 16, 17, 18], [19]]
    with torch.inference_mode():
        ours = new_cache(model.config)
        reference = DynamicCache(config=model.config)
        got, want = run(model, ours, steps), run(model, reference, steps)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert ours.get_seq_length() == reference.get_seq_length() == len(prompt) + 11
    layer = ours.layers[0]
    assert isinstance(layer, PreallocatedLayer) and layer._key_buffer.shape[-2] > INITIAL_ROOM
    # The filled part is a view of the buffer: no copy of the cache per forward.
    assert layer.keys.data_ptr() == layer._key_buffer.data_ptr()


def test_lazy_cache_and_a_replaced_tensor_still_agree():
    model = tiny_llama(64, seed=1, layers=2)
    with torch.inference_mode():
        ours, reference = new_cache(), DynamicCache()
        first = [forward(model, torch.tensor([[4, 5, 6]]), c) for c in (ours, reference)]
        # Something outside the layer swaps its tensors (as beam reordering would): it must adopt them.
        ours.layers[0].keys = ours.layers[0].keys.clone()
        ours.layers[0].values = ours.layers[0].values.clone()
        second = [forward(model, torch.tensor([[7]]), c) for c in (ours, reference)]
    assert torch.equal(first[0], first[1]) and torch.equal(second[0], second[1])
    assert all(isinstance(layer, PreallocatedLayer) for layer in ours.layers)


def test_sliding_window_layers_keep_their_own_class():
    config = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=128)
    cache = new_cache(config)
    assert isinstance(cache.layers[0], DynamicSlidingWindowLayer)
    assert isinstance(cache.layers[1], PreallocatedLayer)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    steps = [list(range(3, 15)), [20], [21, 22, 23], -2, [24]]
    reference = DynamicCache(config=config)
    for c in (cache, reference):
        c.activate_past_recording()  # sliding layers must be able to roll back
    with torch.inference_mode():
        got, want = run(model, cache, steps), run(model, reference, steps)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_reserve_then_commit_shows_what_a_kernel_wrote():
    """lean_fused's C layers write the new positions themselves: reserve gives room (growing the
    buffer past its first room, keeping what was there), commit shows them, and a reserve that is
    never committed (a failed call) leaves the cache as it was."""
    layer = PreallocatedLayer()
    keys, values, start = layer.reserve(3, 2, 4, torch.float32)
    assert start == 0 and keys.shape[-2] >= 3 and layer.get_seq_length() == 0
    keys[:, :, :3], values[:, :, :3] = 1.0, 2.0
    layer.commit(3)
    assert layer.get_seq_length() == 3 and torch.all(layer.keys == 1.0) and torch.all(layer.values == 2.0)
    keys, values, start = layer.reserve(INITIAL_ROOM, 2, 4, torch.float32)  # past the first room: a new buffer
    assert start == 3 and keys.shape[-2] >= 3 + INITIAL_ROOM and torch.all(keys[:, :, :3] == 1.0)
    assert layer.get_seq_length() == 3
    keys[:, :, 3:5] = 7.0
    layer.commit(5)
    assert layer.keys.shape[-2] == 5 and torch.all(layer.keys[:, :, 3:] == 7.0) and torch.all(layer.values[:, :, :3] == 2.0)
