"""int8 / int4 layers on billion's block kernels (billion/core/native.py): blocks of 32 weights along
the input dimension, one fp16 scale each (int4: a scale and a minimum, asymmetric).

Finer scales than per-channel, and activations quantized per block of 32 rather than per token,
so no SmoothQuant calibration is needed: a few huge activation channels only coarsen their own
blocks. Decode (a few rows) runs on the integer kernels; a long prompt runs one BLAS GEMM over the
dequantized weight instead, where arithmetic, not weight bytes, is the cost.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from billion.core import native

#: at or below this many rows (decode, a speculative verify) the integer kernels run; above it
#: (a prompt) dequantize + GEMM is faster (benchmarks/quant_kernels.py --blocks)
KERNEL_ROWS = 16
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
        if flat.shape[0] <= KERNEL_ROWS:
            y = native.block_matmul(self.blocks, self.bits, self.in_features, flat)
        else:
            y = F.linear(flat, self.dequantized())
        y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return y + self.bias.to(x.dtype) if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int{self.bits} blocks of {native.QK}"
