"""What the lean-forward tests share: transformers' forward on the same entry point, the steps a
generation and a speculative verify take, and the bit-for-bit comparison of logits and caches."""

from __future__ import annotations

import torch

from billion.core import lean_forward
from billion.core.generation import forward
from billion.core.kv_cache import new_cache


def hf_forward(model, ids, cache, keep=0):
    """generation.forward with the lean forward switched off: transformers' own."""
    enabled = lean_forward.ENABLED
    lean_forward.ENABLED = False
    try:
        return forward(model, ids, cache, keep)
    finally:
        lean_forward.ENABLED = enabled


def steps(vocab: int) -> list[torch.Tensor]:
    """A prompt, one-token steps and a 5-token verify block on a warm cache (speculative decoding)."""
    gen = torch.Generator().manual_seed(1)
    return [torch.randint(3, vocab, (1, n), generator=gen) for n in (9, 1, 1, 5, 1)]


def assert_same_as_hf(model, vocab: int, plan_type: type | None = None, cache_config=None) -> None:
    """Every step's logits and the final KV cache equal transformers' bit for bit, through a plan
    (of plan_type where given)."""
    plan = lean_forward.plan_for(model)
    assert plan is not None and (plan_type is None or isinstance(plan, plan_type))
    ours, theirs = new_cache(cache_config), new_cache(cache_config)
    for ids in steps(vocab):
        a, b = forward(model, ids, ours), hf_forward(model, ids, theirs)
        assert torch.equal(a, b), (a - b).abs().max()
        assert ours.get_seq_length() == theirs.get_seq_length()
    for layer_ours, layer_theirs in zip(ours.layers, theirs.layers):
        assert torch.equal(layer_ours.keys, layer_theirs.keys) and torch.equal(layer_ours.values, layer_theirs.values)


def assert_greedy_equals_generate(model, new_tokens: int = 12) -> None:
    """Greedy decoding one token at a time through generation.forward gives transformers'
    `generate`'s tokens (EOS ignored, so all `new_tokens` of them)."""
    model.generation_config.eos_token_id = None
    ids = torch.tensor([[1, 17, 42, 99, 7]])
    expected = model.generate(ids, max_new_tokens=new_tokens, do_sample=False)[0, ids.shape[1]:].tolist()
    assert len(expected) == new_tokens
    cache, tokens = new_cache(), []
    logits = forward(model, ids, cache, keep=1)[0, -1]
    for _ in range(new_tokens):
        tokens.append(int(logits.argmax()))
        logits = forward(model, torch.tensor([[tokens[-1]]]), cache, keep=1)[0, -1]
    assert tokens == expected
