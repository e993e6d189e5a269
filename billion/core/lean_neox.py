"""The lean forward for GPT-NeoX (Pythia) and StableLM decoders: transformers' math in ~15 tensor
ops a layer, on the model's own modules and KV cache.

Why: at int8 a Pythia-1B step spent 44 ms in the matrix kernels and 9 more in the eager stack
around them; StableLM-2-1.6B 71 and 11 (mask building, rotary tables, the partial rotary's slices
and concatenations, module hooks). Here q|k|v is one kernel call (Pythia's is one module already),
rotary runs in place in C on the rotated part of each head, and angles come from a table grown once.

Both families differ from Llama in the same few ways, each mirrored op for op so logits match
transformers' forward bit for bit (tests/test_lean_neox.py): LayerNorm with a bias; rotary on the
first `partial_rotary_factor` of each head only; biases on q|k|v (StableLM-2) or on every linear
(Pythia); optionally the parallel residual x + attn(ln1(x)) + mlp(ln(x)), whose three-way sum is
added in each family's own order. GPT-NeoX's fused projection holds q, k, v per head (head h's
q, k, v side by side); StableLM's q heads, then k, then v, as Llama's.
StableLM's per-head q/k LayerNorm (qk_layernorm, StableLM-2-12B) is not described: those models
keep transformers' forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from billion.core import native
from billion.core.lean_forward import STATIC_ROPE, Projection, RopeTable, _group, attention, plain_sdpa_on_cpu

Norm = tuple[torch.Tensor, torch.Tensor | None, float]  # LayerNorm's weight, bias, eps


@dataclass(frozen=True)
class NeoxLayer:
    input_norm: Norm
    post_norm: Norm | None  # None: StableLM's parallel residual feeds the MLP the input norm's output
    qkv: Projection
    o: Projection
    mlp: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class NeoxPlan:
    layers: tuple[NeoxLayer, ...]
    embed: nn.Module
    final_norm: Norm
    lm_head: Projection
    rope: RopeTable
    heads: int
    kv_heads: int
    head_dim: int
    rotary_dim: int
    scaling: float
    per_head_qkv: bool  # GPT-NeoX: q, k, v of a head side by side
    parallel: bool
    neox_sum: bool  # GPT-NeoX sums (mlp + attn) + x, StableLM (x + attn) + mlp

    def forward(self, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 0) -> torch.Tensor | None:
        return neox_forward(self, input_ids, cache, keep)


def _parts(model: nn.Module) -> tuple[nn.Module, str]:
    """The decoder stack and the family: ("gpt_neox" or "stablelm")."""
    if type(model).__name__ == "GPTNeoXForCausalLM":
        return model.gpt_neox, "gpt_neox"
    return model.model, "stablelm"


def describable(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    if type(model).__name__ not in ("GPTNeoXForCausalLM", "StableLmForCausalLM") or config is None:
        return False
    inner, family = _parts(model)
    rotary = inner.rotary_emb
    no_dropout = all(getattr(config, name, 0.0) == 0.0 for name in ("hidden_dropout", "attention_dropout"))
    return (getattr(rotary, "rope_type", "default") in STATIC_ROPE and getattr(rotary, "inv_freq", None) is not None
            and no_dropout and not getattr(config, "qk_layernorm", False)
            and plain_sdpa_on_cpu(model, inner.final_layer_norm if family == "gpt_neox" else inner.norm))


def _norm(module: nn.LayerNorm) -> Norm:
    return module.weight, module.bias, module.eps


def _neox_layer(layer: nn.Module) -> NeoxLayer:
    mlp = layer.mlp
    up, down, act = _group([mlp.dense_h_to_4h]), _group([mlp.dense_4h_to_h]), mlp.act
    return NeoxLayer(input_norm=_norm(layer.input_layernorm), post_norm=_norm(layer.post_attention_layernorm),
                     qkv=_group([layer.attention.query_key_value]), o=_group([layer.attention.dense]),
                     mlp=lambda x: down(act(up(x))))


def _stablelm_layer(layer: nn.Module) -> NeoxLayer:
    attn, mlp = layer.self_attn, layer.mlp
    gate_up, down, act = _group([mlp.gate_proj, mlp.up_proj]), _group([mlp.down_proj]), mlp.act_fn

    def swiglu(x: torch.Tensor) -> torch.Tensor:
        both = gate_up(x)
        inner = both.shape[-1] // 2
        return down(act(both[:, :inner]).mul_(both[:, inner:]))
    post = layer.post_attention_layernorm
    return NeoxLayer(input_norm=_norm(layer.input_layernorm), post_norm=_norm(post) if post is not None else None,
                     qkv=_group([attn.q_proj, attn.k_proj, attn.v_proj]), o=_group([attn.o_proj]), mlp=swiglu)


def build(model: nn.Module) -> NeoxPlan:
    inner, family = _parts(model)
    config, rotary = model.config, inner.rotary_emb
    neox = family == "gpt_neox"
    heads = config.num_attention_heads
    head_dim = config.hidden_size // heads
    final_norm = inner.final_layer_norm if neox else inner.norm
    return NeoxPlan(
        layers=tuple((_neox_layer if neox else _stablelm_layer)(layer) for layer in inner.layers),
        embed=inner.embed_in if neox else inner.embed_tokens, final_norm=_norm(final_norm),
        lm_head=_group([model.lm_head]),
        rope=RopeTable(rotary.inv_freq, rotary.attention_scaling, final_norm.weight.dtype),
        heads=heads, kv_heads=heads if neox else config.num_key_value_heads, head_dim=head_dim,
        rotary_dim=2 * rotary.inv_freq.numel(), scaling=head_dim ** -0.5, per_head_qkv=neox,
        parallel=config.use_parallel_residual, neox_sum=neox)


def layer_norm(x: torch.Tensor, norm: Norm) -> torch.Tensor:
    weight, bias, eps = norm
    return F.layer_norm(x, weight.shape, weight, bias, eps)


def split_heads(plan: NeoxPlan, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v as (1, heads, T, head_dim) views of the projection's output (T, ...)."""
    count, dim = qkv.shape[0], plan.head_dim
    if plan.per_head_qkv:
        per_head = qkv.view(1, count, plan.heads, 3 * dim).transpose(1, 2)
        return per_head[..., :dim], per_head[..., dim:2 * dim], per_head[..., 2 * dim:]
    q_end, k_end = plan.heads * dim, (plan.heads + plan.kv_heads) * dim
    return tuple(qkv[:, a:b].view(1, count, (b - a) // dim, dim).transpose(1, 2)
                 for a, b in ((0, q_end), (q_end, k_end), (k_end, qkv.shape[1])))


def rotate(plan: NeoxPlan, qkv: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
           sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial rotary on q and k: in place by the C kernel on fp32 (q and k then stay views of qkv),
    else transformers' ops (slices, rotate_half, cat) on copies."""
    dim, rot = plan.head_dim, plan.rotary_dim
    if qkv.dtype == torch.float32 and native.available():
        if plan.per_head_qkv:
            native.rope_(qkv, plan.heads, rot, cos, sin, head_stride=3 * dim)
            native.rope_(qkv[:, dim:], plan.heads, rot, cos, sin, head_stride=3 * dim)
        else:
            native.rope_(qkv, plan.heads + plan.kv_heads, rot, cos, sin, head_stride=dim)
        return q, k
    c, s = cos[None, None], sin[None, None]

    def one(x: torch.Tensor) -> torch.Tensor:
        turned, kept = x[..., :rot], x[..., rot:]
        half = torch.cat((-turned[..., rot // 2:], turned[..., :rot // 2]), dim=-1)
        return torch.cat([(turned * c) + (half * s), kept], dim=-1)
    return one(q), one(k)


def layer_forward(plan: NeoxPlan, index: int, x: torch.Tensor, cache: DynamicCache, start: int,
                  cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    layer = plan.layers[index]
    count = x.shape[0]
    normed = layer_norm(x, layer.input_norm)
    qkv = layer.qkv(normed)
    q, k, v = split_heads(plan, qkv)
    q, k = rotate(plan, qkv, q, k, cos, sin)
    k, v = cache.update(k, v, index)
    a = attention(plan, q, k, v, start)
    attended = layer.o(a.transpose(1, 2).reshape(count, plan.heads * plan.head_dim))
    if not plan.parallel:
        attended = attended + x
        return layer.mlp(layer_norm(attended, layer.post_norm)) + attended
    if plan.neox_sum:
        return layer.mlp(layer_norm(x, layer.post_norm)) + attended + x
    mlp_in = normed if layer.post_norm is None else layer_norm(x, layer.post_norm)
    return x + attended + layer.mlp(mlp_in)


def neox_forward(plan: NeoxPlan, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 0) -> torch.Tensor:
    """Logits (1, positions, vocab) like HF's forward with logits_to_keep=keep; the cache grows in place."""
    start = cache.get_seq_length()
    cos, sin = plan.rope.at(start, input_ids.shape[1])
    x = plan.embed(input_ids[0])
    for index in range(len(plan.layers)):
        x = layer_forward(plan, index, x, cache, start, cos, sin)
    if keep:
        x = x[-keep:]
    return plan.lm_head(layer_norm(x, plan.final_norm)).unsqueeze(0)
