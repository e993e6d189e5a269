"""The lean forward for Gemma-3 text decoders (Gemma-3-270M, the offline Arena model): transformers'
Gemma3ForCausalLM math in ~17 tensor ops a layer, on the model's own modules and KV cache.

Why: at int8 a Gemma-3-270M step spent 15 ms in the matrix kernels and 9 more in the eager stack
around them (mask building for two layer kinds, rotary tables per kind, four RMSNorms of five ops
each plus two per-head ones, module hooks). Here the norms are one call each, q|k|v and gate|up
one kernel call each, and rotary angles come from one table per layer kind, grown once.

Gemma-3 differs from Llama in ways mirrored op for op, so logits match transformers' forward bit for
bit (tests/test_lean_gemma.py): RMSNorm scales by (1 + weight) in fp32, q and k are normed per head
before rotary, sliding-window layers use their own rotary base, each sublayer's output is normed
before its residual add, the MLP is GELU(tanh)-gated, and the embedding is scaled by sqrt(hidden)
(inside the model's embedding module, called as is).

Sliding-window layers attend to the last `sliding_window` positions. While the sequence is shorter
than the window that is every position, and transformers passes SDPA no mask, as for Llama. From
the window's length on it passes a windowed mask (and, for one query, packs the query heads of a
KV head as rows of one); `windowed_attention` does the same. On a cache whose sliding layers are
transformers' own (they keep only the window: the speculative race's caches), `GemmaPlan.forward`
hands such calls to transformers' forward instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from billion.core.lean_forward import (
    STATIC_ROPE, Projection, RopeTable, _group, _heads, attention, plain_sdpa_on_cpu, rms_norm, rotate_,
)


@dataclass(frozen=True)
class GemmaLayer:
    """One decoder layer's parts. Norm weights are stored as Gemma applies them: 1 + weight, in fp32."""

    input_norm: torch.Tensor
    post_attention_norm: torch.Tensor
    pre_mlp_norm: torch.Tensor
    post_mlp_norm: torch.Tensor
    q_norm: torch.Tensor
    k_norm: torch.Tensor
    qkv: Projection
    o: Projection
    gate_up: Projection
    down: Projection
    act: nn.Module
    rope: RopeTable
    sliding: bool


@dataclass(frozen=True)
class GemmaPlan:
    layers: tuple[GemmaLayer, ...]
    embed: nn.Module
    final_norm: torch.Tensor
    lm_head: Projection
    eps: float
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float
    sliding_window: int
    softcap: float | None

    def forward(self, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 0) -> torch.Tensor | None:
        past_window = cache.get_seq_length() + input_ids.shape[1] >= self.sliding_window
        if past_window and any(getattr(layer, "is_sliding", False) for layer in cache.layers):
            return None  # transformers' window-only cache layers: its forward knows their offsets
        return gemma_forward(self, input_ids, cache, keep)


def describable(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    if type(model).__name__ != "Gemma3ForCausalLM" or config is None:
        return False
    rope = getattr(config, "rope_parameters", None) or {}
    kinds = set(config.layer_types)
    return (kinds <= {"sliding_attention", "full_attention"}
            and all((rope.get(kind) or {}).get("rope_type", "default") in STATIC_ROPE for kind in kinds)
            and config.attn_logit_softcapping is None and not config.use_bidirectional_attention
            and config.head_dim <= 256 and plain_sdpa_on_cpu(model, model.model.norm))


def _one_plus(weight: torch.Tensor) -> torch.Tensor:
    return 1.0 + weight.detach().float()


def _rope_tables(model: nn.Module, dtype: torch.dtype) -> dict[str, RopeTable]:
    rotary = model.model.rotary_emb
    return {kind: RopeTable(getattr(rotary, f"{kind}_inv_freq"), getattr(rotary, f"{kind}_attention_scaling"), dtype)
            for kind in set(model.config.layer_types)}


def build(model: nn.Module) -> GemmaPlan:
    inner, config = model.model, model.config
    dtype = inner.norm.weight.dtype
    ropes = _rope_tables(model, dtype)
    layers = tuple(GemmaLayer(
        input_norm=_one_plus(layer.input_layernorm.weight),
        post_attention_norm=_one_plus(layer.post_attention_layernorm.weight),
        pre_mlp_norm=_one_plus(layer.pre_feedforward_layernorm.weight),
        post_mlp_norm=_one_plus(layer.post_feedforward_layernorm.weight),
        q_norm=_one_plus(layer.self_attn.q_norm.weight), k_norm=_one_plus(layer.self_attn.k_norm.weight),
        qkv=_group([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
        o=_group([layer.self_attn.o_proj]),
        gate_up=_group([layer.mlp.gate_proj, layer.mlp.up_proj]), down=_group([layer.mlp.down_proj]),
        act=layer.mlp.act_fn, rope=ropes[kind], sliding=kind == "sliding_attention",
    ) for layer, kind in zip(inner.layers, config.layer_types))
    return GemmaPlan(
        layers=layers, embed=inner.embed_tokens, final_norm=_one_plus(inner.norm.weight),
        lm_head=_group([model.lm_head]), eps=inner.norm.eps, heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads, head_dim=config.head_dim, scaling=inner.layers[0].self_attn.scaling,
        sliding_window=config.sliding_window, softcap=config.final_logit_softcapping)


def norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Gemma3RMSNorm: x normed in fp32, times (1 + weight) in fp32, back to x's dtype. The product
    (x * r) * w is r's product with w either way round, so Llama's norm gives its bits."""
    return rms_norm(x.float(), weight, eps).to(x.dtype)


def norm_heads_(qkv: torch.Tensor, first: int, heads: int, dim: int, weight: torch.Tensor, eps: float) -> None:
    """q_norm / k_norm: Gemma's norm over each of `heads` heads from head `first` of every row, in place."""
    count = qkv.shape[0]
    columns = qkv[:, first * dim:(first + heads) * dim]
    columns.copy_(norm(columns.reshape(count * heads, dim), weight, eps).view(count, heads * dim))


def _window_mask(count: int, start: int, window: int) -> torch.Tensor:
    """transformers' sliding mask for positions start.. over a cache holding 0..: causal, and
    within the window (kv > q - window), as (1, 1, count, start + count)."""
    q = torch.arange(start, start + count)[:, None]
    kv = torch.arange(start + count)[None, :]
    return ((kv <= q) & (kv > q - window))[None, None]


def windowed_attention(plan: GemmaPlan, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int) -> torch.Tensor:
    """SDPA as transformers calls it on a sliding layer once the window masks positions: with the
    mask, one query's heads packed per KV head (pack_gqa), more queries against repeated KV heads."""
    count, dim = q.shape[2], q.shape[-1]
    groups = plan.heads // plan.kv_heads
    mask = _window_mask(count, start, plan.sliding_window)
    if groups > 1 and count == 1:
        packed = F.scaled_dot_product_attention(q.reshape(1, plan.kv_heads, groups, dim), k, v, attn_mask=mask,
                                                scale=plan.scaling)
        return packed.reshape(1, plan.heads, 1, dim)
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=plan.scaling)


def layer_forward(plan: GemmaPlan, index: int, x: torch.Tensor, cache: DynamicCache, start: int) -> torch.Tensor:
    """One decoder layer on x (T, hidden); each sublayer's output normed, then added to the residual."""
    layer = plan.layers[index]
    count, heads, kv_heads, dim = x.shape[0], plan.heads, plan.kv_heads, plan.head_dim
    cos, sin = layer.rope.at(start, count)
    qkv = layer.qkv(norm(x, layer.input_norm, plan.eps))
    norm_heads_(qkv, 0, heads, dim, layer.q_norm, plan.eps)
    norm_heads_(qkv, heads, kv_heads, dim, layer.k_norm, plan.eps)
    qkv = rotate_(qkv, heads + kv_heads, dim, cos, sin)
    q_end, k_end = heads * dim, (heads + kv_heads) * dim
    k, v = cache.update(_heads(qkv[:, q_end:k_end], count, kv_heads, dim),
                        _heads(qkv[:, k_end:], count, kv_heads, dim), index)
    q = _heads(qkv[:, :q_end], count, heads, dim)
    windowed = layer.sliding and start + count >= plan.sliding_window
    a = windowed_attention(plan, q, k, v, start) if windowed else attention(plan, q, k, v, start)
    x = x + norm(layer.o(a.transpose(1, 2).reshape(count, q_end)), layer.post_attention_norm, plan.eps)
    gate_up = layer.gate_up(norm(x, layer.pre_mlp_norm, plan.eps))
    inner = gate_up.shape[-1] // 2
    h = layer.act(gate_up[:, :inner]).mul_(gate_up[:, inner:])
    return x + norm(layer.down(h), layer.post_mlp_norm, plan.eps)


def gemma_forward(plan: GemmaPlan, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 0) -> torch.Tensor:
    """Logits (1, positions, vocab) like HF's forward with logits_to_keep=keep; the cache grows in place."""
    start = cache.get_seq_length()
    x = plan.embed(input_ids[0])
    for index in range(len(plan.layers)):
        x = layer_forward(plan, index, x, cache, start)
    if keep:
        x = x[-keep:]
    logits = plan.lm_head(norm(x, plan.final_norm, plan.eps))
    if plan.softcap is not None:
        logits = torch.tanh(logits / plan.softcap) * plan.softcap
    return logits.unsqueeze(0)
