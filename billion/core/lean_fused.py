"""Llama decoder layers as one C call each, for steps of a few rows (decode steps, speculative
verify blocks) of int8 / int4 block-quantized models: kernels/llama_layer.h.

Why: between its matrix calls a TinyLlama int8 decode step ran ~15 small torch ops a layer (norms,
RoPE, cache writes, SDPA, SiLU, residual adds), each from caches the weight stream had just
evicted: ~8 ms of a ~55 ms token (docs/benchmarks/decode.md). One call a layer leaves the matrix
calls and a little C between them.

What changes: attention and SiLU are computed by the C code (fp32, float-rounding close to torch's,
tests/test_lean_fused.py), and each row the same way whatever the number of rows, so a k + 1-row
verify block equals k + 1 one-row steps bit for bit. Everything else (norms, RoPE, the integer
matrix calls, residual adds) is the lean forward's own code. Prompts of native.GEMM_ROWS rows or more
keep lean_forward's layers (they multiply through BLAS there). BILLION_FUSED_LAYERS=0 (or ENABLED =
False, read at each call) turns this off: the lean forward's logits are then transformers' bit for bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from billion.core import native
from billion.core.kv_cache import PreallocatedLayer
from billion.core.quant_blocks import BlockEmbedding, BlockLinear

ENABLED = os.environ.get("BILLION_FUSED_LAYERS", "1") != "0"


@dataclass(frozen=True)
class FusedLayers:
    """The C structs of a model's layers; `keep` holds what their pointers point into."""

    layers: tuple[native.LlamaLayer, ...]
    keep: tuple[torch.Tensor, ...]
    kv_heads: int
    head_dim: int


def _projections(layer: nn.Module) -> list[nn.Module]:
    attn, mlp = layer.self_attn, layer.mlp
    return [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]


def _float_embeddings(embed: nn.Module) -> bool:
    if isinstance(embed, BlockEmbedding):
        return embed.dtype == torch.float32
    return isinstance(embed, nn.Embedding) and embed.weight.dtype == torch.float32


def _fusable(model: nn.Module, heads: int, kv_heads: int, head_dim: int) -> bool:
    """All seven projections of every layer are bias-free blocks of one width, norms fp32, shapes
    as the C layer reads them, and the C RMSNorm gives torch's bits at this width."""
    inner = model.model
    hidden, eps = inner.norm.weight.shape[0], inner.norm.variance_epsilon
    if not (ENABLED and native.available() and _float_embeddings(inner.embed_tokens)
            and heads % kv_heads == 0 and head_dim % 2 == 0 and native.rms_norm_exact(hidden, eps)):
        return False
    first = _projections(inner.layers[0])
    for layer in inner.layers:
        found = _projections(layer)
        if not all(isinstance(m, BlockLinear) and m.bias is None and m.bits == first[0].bits for m in found):
            return False
        q, k, v, o, gate, up, down = found
        if len({m.group for m in (q, k, v, gate, up)}) != 1:  # q|k|v and gate|up: one call each
            return False
        shapes = [(q.in_features, q.out_features), (k.out_features, v.out_features), (o.in_features, o.out_features),
                  (gate.out_features, up.out_features, down.in_features, down.out_features)]
        inter = gate.out_features
        if shapes != [(hidden, heads * head_dim), (kv_heads * head_dim,) * 2, (heads * head_dim, hidden),
                      (inter, inter, inter, hidden)]:
            return False
        norms = (layer.input_layernorm.weight, layer.post_attention_layernorm.weight)
        if not all(w.dtype == torch.float32 and w.is_contiguous() and w.shape == (hidden,) for w in norms):
            return False
    return True


def _shift(module: BlockLinear) -> int:
    return native._shift(module.bits, module.group)


def build(model: nn.Module, heads: int, kv_heads: int, head_dim: int, scaling: float) -> FusedLayers | None:
    """The fused layers of a Llama model lean_forward describes, or None where they do not apply."""
    if not _fusable(model, heads, kv_heads, head_dim):
        return None
    inner, keep, layers = model.model, [], []
    for layer in inner.layers:
        projections = _projections(layer)
        q, o, gate, down = (projections[i] for i in (0, 3, 4, 6))
        norms = (layer.input_layernorm.weight.detach(), layer.post_attention_layernorm.weight.detach())
        keep += [m.blocks for m in projections] + list(norms)
        layers.append(native.LlamaLayer(
            (native._ptr * 7)(*(m.blocks.data_ptr() for m in projections)), norms[0].data_ptr(), norms[1].data_ptr(),
            q.in_features, heads, kv_heads, head_dim, gate.out_features, q.bits, _shift(q), _shift(o), _shift(down),
            inner.norm.variance_epsilon, scaling, native.SUM_LANES))
    return FusedLayers(tuple(layers), tuple(keep), kv_heads, head_dim)


def _cache_layers(cache: DynamicCache, count: int) -> list[PreallocatedLayer] | None:
    """The cache's layers if all write in place (new_cache's), created where the cache makes them
    on demand; None for any other cache (transformers' own layers keep lean_forward's path)."""
    if getattr(cache, "offloading", False):
        return None
    if len(cache.layers) < count:
        if getattr(cache, "layer_class_to_replicate", None) is not PreallocatedLayer:
            return None
        cache.layers += [PreallocatedLayer() for _ in range(count - len(cache.layers))]
    layers = cache.layers[:count]
    return layers if all(type(layer) is PreallocatedLayer for layer in layers) else None


def run_layers(fused: FusedLayers, x: torch.Tensor, cache: DynamicCache, start: int,
               cos: torch.Tensor, sin: torch.Tensor) -> bool:
    """x (rows, hidden), the embeddings of positions start.., through every layer in place, the cache
    grown; False (nothing done) where this path does not apply to the call."""
    rows = x.shape[0]
    if not (ENABLED and 0 < rows < native.GEMM_ROWS and x.dtype == torch.float32 and x.is_contiguous()):
        return False
    layers = _cache_layers(cache, len(fused.layers))
    if layers is None:
        return False
    rooms = [layer.reserve(rows, fused.kv_heads, fused.head_dim, torch.float32) for layer in layers]
    if any(first != start for _, _, first in rooms):
        return False
    cos, sin = cos.contiguous(), sin.contiguous()
    done = 0
    try:
        for layer, cached, (keys, values, _) in zip(fused.layers, layers, rooms):
            native.llama_layer(layer, x, start, cos, sin, keys, values)
            cached.commit(start + rows)
            done += 1
    except MemoryError:  # no layer keeps positions the others lack: the cache stays usable
        for cached in layers[:done]:
            cached.commit(start)
        raise
    return True
