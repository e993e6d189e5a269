"""int8 / int4 layers on billion's block kernels (billion/core/native.py): int8 in groups of 256 weights
along the input dimension with one fp16 scale each (8.06 bits a weight; rows 256 does not divide take
the largest of 128 / 64 / 32 that does); int4 in groups of 64 with an fp16 scale and an fp16 minimum
(asymmetric; MLX's default 4-bit layout): 4.5 bits per weight instead of the 5 of groups of 32, which
took TinyLlama's int4 weights from 683 to 622 MiB. Weights dequantized from a GGUF with 32-wide blocks
(the offline SmolLM2 and Gemma) keep groups of 32 at both widths (registry.quant_group): they lie on
that grid already, and groups of 64 cost SmolLM2 a tenth of its fp32 next tokens at int4
(docs/benchmarks/decode.md).

Finer scales than per-channel, and activations quantized per group (int16 against int8 weights) or
per block of 32 (int8 against int4), rather than per token, so no SmoothQuant calibration is needed:
a few huge activation channels only coarsen their own groups. int4 prompts run on the same integer
kernels (four rows per weight load); int8 prompts of native.GEMM_ROWS rows or more multiply the
weight dequantized a tile at a time with BLAS, 1.4-3.4x faster than int8's one-row loops at 64-512
tokens (benchmarks/prefill.py).
"""

from __future__ import annotations

import json
import os
import struct
import threading
from pathlib import Path

import torch
from torch import nn

from billion.core import native

_CHUNK_ROWS = 4096  # quantize big matrices (LM heads, 128k x 2048) a slice at a time


def _q8_rows(w: torch.Tensor, group: int) -> torch.Tensor:
    n, k = w.shape
    groups = w.float().reshape(n, k // group, group)
    scale = (groups.abs().amax(-1, keepdim=True) / 127).to(torch.float16)
    wide = scale.float()
    q = torch.round(groups / torch.where(wide > 0, wide, 1)).clamp(-127, 127).to(torch.int8)
    return torch.cat([scale.view(torch.uint8).reshape(n, -1), q.view(torch.uint8).reshape(n, -1)], -1)


def _q4_rows(w: torch.Tensor, group: int) -> torch.Tensor:
    n, k = w.shape
    groups = w.float().reshape(n, k // group, group)
    low = groups.amin(-1, keepdim=True)
    scale = ((groups.amax(-1, keepdim=True) - low) / 15).to(torch.float16)
    low16 = low.to(torch.float16)
    wide = scale.float()
    q = torch.round((groups - low16.float()) / torch.where(wide > 0, wide, 1)).clamp(0, 15).to(torch.uint8)
    q = q.reshape(n, k // native.QK, native.QK)  # packed per block of 32, as the kernels read it
    half = native.QK // 2
    packed = q[..., :half] | (q[..., half:] << 4)  # byte j: element j low, element j + 16 high
    return torch.cat([scale.view(torch.uint8).reshape(n, -1), low16.view(torch.uint8).reshape(n, -1),
                      packed.reshape(n, -1)], -1)


def quantize_blocks(weight: torch.Tensor, bits: int, group: int | None = None) -> torch.Tensor:
    """(n, k) float weight -> (n, native.row_bytes) uint8 rows in the kernels' layout: per row, the
    fp16 scales (one per group; int4: then the fp16 group minimums), then the quantized values."""
    group = group or native.default_group(bits)
    if group not in native.groups(bits):
        raise ValueError(f"int{bits} groups of {group}: the kernels take {native.groups(bits)}")
    if weight.shape[-1] % group:
        raise ValueError(f"int{bits} groups of {group} need rows of a multiple of {group} values, not {weight.shape[-1]}")
    parts = weight.detach().split(_CHUNK_ROWS)
    return torch.cat([_q4_rows(part, group) if bits == 4 else _q8_rows(part, group) for part in parts])


class BlockLinear(nn.Module):
    """y = x W^T + b with W in groups along the input (int8: of 256, or the largest of 128 / 64 / 32 that
    divides a row; int4: of 64 or 32), on billion's AVX2 / AVX-512 kernels."""

    def __init__(self, in_features: int, out_features: int, bias: bool, bits: int,
                 group: int | None = None):
        super().__init__()
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        fitting = native.fitting_group(bits, in_features, group)
        if fitting is None:
            raise ValueError(f"int{bits} groups of {group or native.default_group(bits)} do not divide rows of {in_features}")
        self.group = fitting
        width = native.row_bytes(bits, in_features, self.group)
        self.register_buffer("blocks", torch.empty(out_features, width, dtype=torch.uint8))
        self.register_buffer("bias", torch.empty(out_features) if bias else None)

    @staticmethod
    def supports(linear: nn.Linear, bits: int, group: int | None = None) -> bool:
        return native.fitting_group(bits, linear.in_features, group) is not None and native.available()

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, group: int | None = None) -> "BlockLinear":
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, bits, group)
        module.blocks = quantize_blocks(linear.weight, bits, module.group)
        if linear.bias is not None:
            module.bias = linear.bias.detach().float().clone()
        return module

    def dequantized(self) -> torch.Tensor:
        return native.dequantize(self.blocks, self.bits, self.in_features, self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.float32).contiguous()
        y = native.block_matmul(self.blocks, self.bits, self.in_features, flat, self.group)
        y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return y + self.bias.to(x.dtype) if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int{self.bits} groups of {self.group}"


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
        self.rows: RowFile | None = None

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
        module.blocks = quantize_blocks(embedding.weight, 8, native.QK)
        return module

    def read_rows_from(self, rows: "RowFile | None") -> None:
        """Look rows up in a file (the quantized cache entry) instead of the mapped table."""
        if rows is not None and (rows.rows, rows.row_bytes) != tuple(self.blocks.shape):
            raise ValueError(f"row file holds {rows.rows} x {rows.row_bytes}, the table {tuple(self.blocks.shape)}")
        self.rows = rows

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        rows = self.rows.read(flat) if self.rows is not None else self.blocks.index_select(0, flat)
        out = native.dequantize(rows, 8, self.embedding_dim, native.QK).reshape(*ids.shape, self.embedding_dim)
        return (out * self.scale if self.scale is not None else out).to(self.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 blocks of {native.QK}"


def safetensors_header(path: Path) -> tuple[int, dict]:
    """Where a safetensors file's data starts, and its JSON header (after an 8-byte length)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return 8 + length, json.loads(f.read(length))


class RowFile:
    """Rows of a uint8 table stored in a file, read with pread on each lookup.

    Why not the memory map that safetensors gives: a lookup touches a few rows, but the kernel maps
    whole page-cache folios around a fault (up to megabytes on ext4 with large folios), so after a
    64-token prompt half of TinyLlama's 66 MiB int8 table was resident. A read copies only the rows
    asked for; the rest stays on disk or in the shared, reclaimable page cache.
    """

    def __init__(self, path: Path, offset: int, row_bytes: int, rows: int):
        self.path, self.offset, self.row_bytes, self.rows = Path(path), offset, row_bytes, rows
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            return self._fd

    def read(self, ids: torch.Tensor) -> torch.Tensor:
        wanted = ids.tolist()
        if any(not 0 <= i < self.rows for i in wanted):
            raise IndexError(f"index out of range in self: ids must be in [0, {self.rows})")
        fd, size = self._descriptor(), self.row_bytes
        data = bytearray(len(wanted) * size)
        for n, i in enumerate(wanted):
            row = os.pread(fd, size, self.offset + i * size)
            if len(row) != size:
                raise OSError(f"{self.path} ended inside row {i}: the cache entry is damaged")
            data[n * size:(n + 1) * size] = row
        return torch.frombuffer(data, dtype=torch.uint8).view(len(wanted), size) if wanted \
            else torch.empty(0, size, dtype=torch.uint8)

    def __getstate__(self) -> dict:  # copies (deepcopy, pickling) open their own descriptor
        return {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _fd=None, _lock=threading.Lock())

    def __del__(self):
        if self._fd is not None:
            os.close(self._fd)

    @classmethod
    def in_safetensors(cls, path: Path, name: str) -> "RowFile":
        """Where tensor `name` (2-D uint8) lies in a safetensors file."""
        data, header = safetensors_header(path)
        entry = header[name]
        if entry["dtype"] != "U8" or len(entry["shape"]) != 2:
            raise ValueError(f"{name} in {path} is {entry['dtype']} {entry['shape']}, not 2-D uint8")
        start, end = entry["data_offsets"]
        rows, width = entry["shape"]
        if end - start != rows * width:
            raise ValueError(f"{name} in {path}: {end - start} bytes for {rows} x {width}")
        return cls(path, data + start, width, rows)
