"""int8 / int4 layers on billion's block kernels (billion/core/native.py): blocks of 32 weights along
the input dimension, one fp16 scale each (int4: a scale and a minimum, asymmetric).

Finer scales than per-channel, and activations quantized per block of 32 (int16 against int8
weights, int8 against int4) rather than per token, so no SmoothQuant calibration is needed: a few huge activation channels only coarsen their own
blocks. Prompts run on the same integer kernels: at 256 rows they match fp32's BLAS GEMM on a
5632 x 2048 layer (2 threads), and dequantizing to feed a GEMM was slower and cost a float copy.
"""

from __future__ import annotations

import torch
from torch import nn

from billion.core import native

_CHUNK_ROWS = 4096  # quantize big matrices (LM heads, 128k x 2048) a slice at a time


def _q8_rows(w: torch.Tensor) -> torch.Tensor:
    n, k = w.shape
    groups = w.float().reshape(n, k // native.QK, native.QK)
    scale = (groups.abs().amax(-1, keepdim=True) / 127).to(torch.float16)
    wide = scale.float()
    q = torch.round(groups / torch.where(wide > 0, wide, 1)).clamp(-127, 127).to(torch.int8)
    return torch.cat([scale.view(torch.uint8).reshape(n, -1), q.view(torch.uint8).reshape(n, -1)], -1)


def _q4_rows(w: torch.Tensor) -> torch.Tensor:
    n, k = w.shape
    groups = w.float().reshape(n, k // native.QK, native.QK)
    low = groups.amin(-1, keepdim=True)
    scale = ((groups.amax(-1, keepdim=True) - low) / 15).to(torch.float16)
    low16 = low.to(torch.float16)
    wide = scale.float()
    q = torch.round((groups - low16.float()) / torch.where(wide > 0, wide, 1)).clamp(0, 15).to(torch.uint8)
    half = native.QK // 2
    packed = q[..., :half] | (q[..., half:] << 4)  # byte j: element j low, element j + 16 high
    return torch.cat([scale.view(torch.uint8).reshape(n, -1), low16.view(torch.uint8).reshape(n, -1),
                      packed.reshape(n, -1)], -1)


def quantize_blocks(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """(n, k) float weight -> (n, k/32 * block bytes) uint8 rows in the kernels' layout: per row, the
    fp16 block scales (int4: then the fp16 block minimums), then the quantized values."""
    rows = _q4_rows if bits == 4 else _q8_rows
    return torch.cat([rows(part) for part in weight.detach().split(_CHUNK_ROWS)])


class BlockLinear(nn.Module):
    """y = x W^T + b with W in blocks of 32 (int8 or int4), on billion's AVX2 kernels."""

    def __init__(self, in_features: int, out_features: int, bias: bool, bits: int):
        super().__init__()
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        width = in_features // native.QK * native.BLOCK_BYTES[bits]
        self.register_buffer("blocks", torch.empty(out_features, width, dtype=torch.uint8))
        self.register_buffer("bias", torch.empty(out_features) if bias else None)

    @staticmethod
    def supports(linear: nn.Linear) -> bool:
        return linear.in_features % native.QK == 0 and native.available()

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int) -> "BlockLinear":
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, bits)
        module.blocks = quantize_blocks(linear.weight, bits)
        if linear.bias is not None:
            module.bias = linear.bias.detach().float().clone()
        return module

    def dequantized(self) -> torch.Tensor:
        return native.dequantize(self.blocks, self.bits, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.float32).contiguous()
        y = native.block_matmul(self.blocks, self.bits, self.in_features, flat)
        y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return y + self.bias.to(x.dtype) if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int{self.bits} blocks of {native.QK}"


class BlockEmbedding(nn.Module):
    """Input embeddings as int8 blocks: a lookup decodes only the rows it reads. The table is the
    largest float tensor left in a quantized model (TinyLlama 262 MB, Llama-3.2-1B 1 GB at fp32);
    int8 blocks keep it at 27%."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 scale: float | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.scale, self.dtype = scale, dtype  # scale: Gemma multiplies its embeddings by sqrt(hidden)
        width = embedding_dim // native.QK * native.BLOCK_BYTES[8]
        self.register_buffer("blocks", torch.empty(num_embeddings, width, dtype=torch.uint8))

    @staticmethod
    def supports(embedding: nn.Module) -> bool:
        return isinstance(embedding, nn.Embedding) and embedding.embedding_dim % native.QK == 0 \
            and native.available()

    @staticmethod
    def _scale(embedding: nn.Embedding) -> float | None:
        scale = getattr(embedding, "embed_scale", None)
        return float(scale) if scale is not None else None

    @classmethod
    def empty_like(cls, embedding: nn.Embedding) -> "BlockEmbedding":
        return cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx,
                   cls._scale(embedding), embedding.weight.dtype)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> "BlockEmbedding":
        module = cls.empty_like(embedding)
        module.blocks = quantize_blocks(embedding.weight, 8)
        return module

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.blocks.index_select(0, ids.reshape(-1))
        out = native.dequantize(rows, 8, self.embedding_dim).reshape(*ids.shape, self.embedding_dim)
        return (out * self.scale if self.scale is not None else out).to(self.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 blocks of {native.QK}"
