"""A lean forward for Llama-architecture decoders (SmolLM2, TinyLlama, Llama-3.2): transformers'
LlamaForCausalLM math in a few tensor ops per layer, on the model's own modules and KV cache.
Gemma-3's is in lean_gemma.py, GPT-NeoX's and StableLM's in lean_neox.py, on the helpers here;
`plan_for` picks the one that describes a model.

Why: once the weights are int8/int4 blocks, the eager HF stack costs more than the matmuls on 2
CPU cores. A SmolLM2-135M int8 token took 13.9 ms in the kernels and ~17.5 ms in ~2,400 small ops
(mask building, rotary tables, rotate_half, RMSNorm's five ops, module hooks; docs/benchmarks/
decode.md). Here a layer is ~20 ops, rotary angles come from a table grown once, and no mask is
built for a one-token step. Every op mirrors HF's (same order, same dtypes), so logits match HF's
forward bit for bit or to float rounding (tests/test_lean_forward.py checks both greedy tokens and
logits). The cache is the caller's DynamicCache, so speculative rollback (crop) works unchanged.

Models it does not describe (PEFT wrappers, other architectures, rope scaling kinds it cannot
tabulate, eager-only attention features) keep HF's forward: `plan_for` returns None.

Llama models whose projections are all int8 / int4 blocks go one step further on steps of a few
rows (decode, speculative verify): each layer is one C call (lean_fused.py), whose attention and
SiLU are its own, so those logits match HF's to float rounding rather than bit for bit.
"""

from __future__ import annotations

import operator
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from billion.core import lean_fused, native
from billion.core.quant_blocks import BlockLinear

#: BILLION_LEAN_FORWARD=0 keeps transformers' forward everywhere (for comparisons)
ENABLED = os.environ.get("BILLION_LEAN_FORWARD", "1") != "0"
#: positions of rotary angles computed at first; the table doubles when a longer sequence comes
_ROPE_ROOM = 1024


Projection = Callable[[torch.Tensor], torch.Tensor]


class Plan(Protocol):
    """A model's lean forward, built once (LeanPlan here, lean_gemma.GemmaPlan, lean_neox.NeoxPlan)."""

    def forward(self, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 0) -> torch.Tensor | None:
        """Logits (1, positions, vocab) like HF's forward with logits_to_keep=keep, the cache grown in
        place; None (nothing computed) where transformers' forward must run this call."""


@dataclass(frozen=True)
class LayerPlan:
    """One decoder layer's parts, looked up once instead of through module attributes per token.
    qkv and gate_up return their modules' outputs side by side (one kernel call where they are blocks)."""

    input_norm: torch.Tensor
    post_norm: torch.Tensor
    qkv: Projection
    o: Projection
    gate_up: Projection
    down: Projection


def _group(modules: list[nn.Module]) -> Projection:
    """One call for modules that read the same input: a single block-kernel loop where all are
    int8/int4 blocks, all with a bias or none (each output's bits are its module's: the same dot
    product, then + bias), else each module and a concatenation."""
    first = modules[0]
    biased = {m.bias is not None for m in modules}
    if len(biased) == 1 and all(isinstance(m, BlockLinear) and (m.bits, m.group) == (first.bits, first.group)
                                for m in modules):
        group = native.LinearGroup([m.blocks for m in modules], first.bits, first.in_features, first.group)
        bias = torch.cat([m.bias for m in modules]) if biased == {True} else None

        def grouped(x: torch.Tensor) -> torch.Tensor:
            y = group(x.contiguous()) if x.dtype == torch.float32 else group(x.float().contiguous()).to(x.dtype)
            return y if bias is None else y + bias.to(x.dtype)
        return grouped
    if len(modules) == 1:
        return first
    return lambda x: torch.cat([m(x) for m in modules], dim=-1)


class RopeTable:
    """cos/sin for positions 0..n, computed exactly as LlamaRotaryEmbedding does for each forward.
    Both tables live in one tuple, swapped whole, so a thread never pairs a new cos with an old sin."""

    def __init__(self, inv_freq: torch.Tensor, scaling: float, dtype: torch.dtype):
        self.inv_freq, self.scaling, self.dtype = inv_freq.float(), scaling, dtype
        self.tables = (torch.empty(0, 0), torch.empty(0, 0))

    def _grow(self, needed: int) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(max(_ROPE_ROOM, 2 * needed), dtype=torch.float32)
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.tables = ((emb.cos() * self.scaling).to(self.dtype), (emb.sin() * self.scaling).to(self.dtype))
        return self.tables

    def at(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.tables
        if start + count > cos.shape[0]:
            cos, sin = self._grow(start + count)
        return cos[start:start + count], sin[start:start + count]


@dataclass(frozen=True)
class LeanPlan:
    layers: tuple[LayerPlan, ...]
    embed: nn.Module
    final_norm: torch.Tensor
    lm_head: Callable[[torch.Tensor], torch.Tensor]
    rope: RopeTable
    eps: float
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float
    #: one C call a layer for steps of a few rows (lean_fused.py), where the model allows it
    fused: lean_fused.FusedLayers | None = None

    def forward(self, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 0) -> torch.Tensor | None:
        return lean_forward(self, input_ids, cache, keep)


#: rope kinds whose angles do not depend on the sequence: a table computed once holds them
STATIC_ROPE = ("default", "llama3", "linear")


def plain_sdpa_on_cpu(model: nn.Module, final_norm: nn.Module) -> bool:
    """What every lean plan needs: SDPA attention, no accelerate hooks, weights (the final norm's
    stand for all: models move whole) on the CPU."""
    return (getattr(model.config, "_attn_implementation", None) == "sdpa" and not getattr(model, "_hf_hook", None)
            and all(p.device.type == "cpu" for p in final_norm.parameters()))


def _describable(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    if type(model).__name__ != "LlamaForCausalLM" or config is None:
        return False
    rotary = model.model.rotary_emb
    static_rope = getattr(rotary, "rope_type", "default") in STATIC_ROPE
    return (static_rope and getattr(rotary, "inv_freq", None) is not None
            and getattr(config, "pretraining_tp", 1) == 1 and config.hidden_act == "silu"
            and plain_sdpa_on_cpu(model, model.model.norm))


Watched = tuple[tuple[dict, ...], tuple[str, ...], tuple[object, ...]]
_NOTHING_WATCHED: Watched = ((), (), ())


def _watched(model: nn.Module) -> Watched:
    """(containers, keys, objects) for every module and weight the plan holds: if any container no
    longer holds the same object (PEFT injected LoRA layers, weights were swapped), the plan is stale.
    Three columns, so _Entry.current() loops in C: checked before every forward, SmolLM2's 880
    entries took 67 us a token as (container, key, object) rows in a generator expression, 37 us so."""
    watched = []
    for parent in model.modules():
        if type(parent).__name__.endswith("RotaryEmbedding"):  # the plan keeps its own angle tables
            continue
        watched += [(parent._modules, key, child) for key, child in parent._modules.items()]
        watched += [(parent._parameters, key, t) for key, t in parent._parameters.items()]
        watched += [(parent._buffers, key, t) for key, t in parent._buffers.items()]
    return tuple(zip(*watched)) if watched else _NOTHING_WATCHED


@dataclass(frozen=True)
class _Entry:
    plan: "Plan | None"
    watched: Watched

    def current(self) -> bool:
        containers, keys, held = self.watched
        return all(map(operator.is_, map(dict.get, containers, keys), held))


_PLANS: "weakref.WeakKeyDictionary[nn.Module, _Entry]" = weakref.WeakKeyDictionary()
_PLANS_LOCK = threading.Lock()


def _build_any(model: nn.Module) -> "Plan | None":
    if _describable(model):
        return _build(model)
    from billion.core import lean_gemma, lean_neox  # they build on this module's helpers

    family = next((module for module in (lean_gemma, lean_neox) if module.describable(model)), None)
    return family.build(model) if family is not None else None


def plan_for(model: nn.Module) -> "Plan | None":
    """The lean plan for `model` (built once, rebuilt if its modules or weights were replaced);
    None where HF's forward must run. Kept beside the model, not on it, so deepcopy never copies one."""
    entry = _PLANS.get(model)
    if entry is not None and entry.current():
        return entry.plan
    with _PLANS_LOCK:
        plan = _build_any(model)
        _PLANS[model] = _Entry(plan, _watched(model) if plan is not None else _NOTHING_WATCHED)
    return plan


def _build(model: nn.Module) -> LeanPlan:
    inner, config = model.model, model.config
    layers = tuple(LayerPlan(
        input_norm=layer.input_layernorm.weight, post_norm=layer.post_attention_layernorm.weight,
        qkv=_group([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
        o=_group([layer.self_attn.o_proj]),
        gate_up=_group([layer.mlp.gate_proj, layer.mlp.up_proj]), down=_group([layer.mlp.down_proj]),
    ) for layer in inner.layers)
    attn = inner.layers[0].self_attn
    dtype = inner.norm.weight.dtype
    return LeanPlan(
        layers=layers, embed=inner.embed_tokens, final_norm=inner.norm.weight, lm_head=_group([model.lm_head]),
        rope=RopeTable(inner.rotary_emb.inv_freq, inner.rotary_emb.attention_scaling, dtype),
        eps=inner.norm.variance_epsilon, heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads, head_dim=attn.head_dim, scaling=attn.scaling,
        fused=lean_fused.build(model, config.num_attention_heads, config.num_key_value_heads, attn.head_dim, attn.scaling))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm in one call: on fp32 the C kernel where it gives torch.rms_norm's bits here
    (checked once per width), else torch.rms_norm, itself the same bits as HF's five ops (tested)."""
    if x.dtype == torch.float32:
        if (weight.dtype == torch.float32 and x.dim() == 2 and x.is_contiguous() and weight.is_contiguous()
                and native.rms_norm_exact(x.shape[1], eps)):
            return native.rms_norm(x, weight, eps)
        return torch.rms_norm(x, weight.shape, weight, eps)
    wide = x.to(torch.float32)
    wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
    return weight * wide.to(x.dtype)


def rotate_(qkv: torch.Tensor, heads: int, dim: int, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """apply_rotary_pos_emb on the q and k heads at the front of each row of qkv (T, ...): in place
    by the C kernel on fp32, else HF's ops on a copy. Returns the tensor that holds the result."""
    if qkv.dtype == torch.float32 and native.available():
        native.rope_(qkv, heads, dim, cos, sin)
        return qkv
    x = qkv[:, :heads * dim].view(qkv.shape[0], heads, dim)
    c, s = cos[:, None], sin[:, None]
    rotated = torch.cat((-x[..., dim // 2:], x[..., :dim // 2]), dim=-1)
    return torch.cat([((x * c) + (rotated * s)).flatten(1), qkv[:, heads * dim:]], dim=-1)


def _causal_mask(count: int, start: int) -> torch.Tensor:
    """The boolean mask HF's sdpa path gets when new positions attend to a cache: row i sees 0..start+i."""
    return torch.arange(start + count)[None, :] <= torch.arange(start, start + count)[:, None]


def attention(plan: LeanPlan, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int) -> torch.Tensor:
    """SDPA as transformers calls it: GQA in the kernel without a mask, repeated heads with one."""
    count = q.shape[2]
    groups = plan.heads // plan.kv_heads
    if count == 1:
        return F.scaled_dot_product_attention(q, k, v, scale=plan.scaling, enable_gqa=groups > 1)
    if start == 0:
        return F.scaled_dot_product_attention(q, k, v, scale=plan.scaling, is_causal=True, enable_gqa=groups > 1)
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_causal_mask(count, start), scale=plan.scaling)


def _heads(x: torch.Tensor, count: int, heads: int, dim: int) -> torch.Tensor:
    """(T, heads * dim) columns -> (1, heads, T, dim), a view."""
    if count == 1:
        return x.view(1, heads, 1, dim)
    return x.view(1, count, heads, dim).transpose(1, 2)


def layer_forward(plan: LeanPlan, index: int, x: torch.Tensor, cache: DynamicCache, start: int,
                  cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """One decoder layer on x (T, hidden): attention with the cache, then the MLP; residuals added."""
    layer = plan.layers[index]
    count, heads, kv_heads, dim = x.shape[0], plan.heads, plan.kv_heads, plan.head_dim
    qkv = rotate_(layer.qkv(rms_norm(x, layer.input_norm, plan.eps)), heads + kv_heads, dim, cos, sin)
    q_end, k_end = heads * dim, (heads + kv_heads) * dim
    k, v = cache.update(_heads(qkv[:, q_end:k_end], count, kv_heads, dim),
                        _heads(qkv[:, k_end:], count, kv_heads, dim), index)
    a = attention(plan, _heads(qkv[:, :q_end], count, heads, dim), k, v, start)
    x = x + layer.o(a.transpose(1, 2).reshape(count, q_end))
    gate_up = layer.gate_up(rms_norm(x, layer.post_norm, plan.eps))
    inner = gate_up.shape[-1] // 2
    return x + layer.down(F.silu(gate_up[:, :inner]).mul_(gate_up[:, inner:]))


def lean_forward(plan: LeanPlan, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 0) -> torch.Tensor:
    """Logits (1, positions, vocab) like HF's forward with logits_to_keep=keep; the cache grows in place."""
    start = cache.get_seq_length()
    count = input_ids.shape[1]
    cos, sin = plan.rope.at(start, count)
    x = plan.embed(input_ids[0])
    if plan.fused is None or not lean_fused.run_layers(plan.fused, x, cache, start, cos, sin):
        for index in range(len(plan.layers)):
            x = layer_forward(plan, index, x, cache, start, cos, sin)
    if keep:
        x = x[-keep:]
    return plan.lm_head(rms_norm(x, plan.final_norm, plan.eps)).unsqueeze(0)
