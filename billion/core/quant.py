"""int8 / int4 on CPU: nn.Linear swapped for modules on fast CPU kernels.

Kernels (measured in benchmarks/quant_kernels.py; why these in docs/benchmarks/decode.md):
- "blocks" (the default where it compiles: x86 with AVX2/FMA/F16C and a C compiler): billion's own
  int8 / int4 kernels over groups of weights along the input dimension (int8: 256, int4: 64; 32 for
  weights from a GGUF) (billion/core/quant_blocks.py, native.py).
Otherwise PyTorch's packed kernels ("torch"):
- int8: per-output-channel int8 weights on fbgemm's int8 GEMM (`quantized::linear_dynamic`),
  activations quantized per token on the fly. `torch._weight_int8pack_mm` (weight-only) was no
  faster than fp32 on an AVX2 CPU; fbgemm was 3-6x faster.
- int4: asymmetric groups along the input dimension (min/max, group 64 by default),
  `torch._weight_int4pack_mm_for_cpu` on a layout packed once at load, bf16 activations (the
  kernel is slow with fp32 ones). It halves int8's memory; its speed depends on the CPU.
Each module casts to its kernel's activation dtype and back: the rest of the model keeps its own
dtype. A layer whose shape a kernel refuses falls back (int4 to int8).
"""

from __future__ import annotations

import copy
import ctypes
import gc
import logging
from dataclasses import dataclass

import torch
from torch import nn

from billion.core import native
from billion.core.errors import BillionError
from billion.core.quant_blocks import BlockEmbedding, BlockLinear
# re-exported: callers import the layers and calibration helpers from here
from billion.core.quant_torch import (SMOOTH_ALPHA, Int4Linear, Int8Linear, activation_absmax,  # noqa: F401
                                      calibration_ids, random_calibration_ids, smoothing_factors)

log = logging.getLogger(__name__)

#: bump when the packed layout or the quantization rule changes: it is part of the cache key
KERNEL_VERSION = 4
SCHEMES = ("int8", "int4")
KERNELS = ("blocks", "torch")
INT4_GROUP_SIZES = (256, 128, 64, 32)
DEFAULT_INT4_GROUP = native.Q4_GROUP
INT8_GROUP_SIZES = native.Q8_GROUPS


@dataclass(frozen=True)
class QuantScheme:
    """What a quantized model holds: the kernels' names and settings, for labels and cache keys."""

    name: str
    #: group size along the input dimension (the block kernels' int8: rows it does not divide take
    #: the largest smaller group that does; None for the torch kernel's per-channel int8 scales)
    group_size: int | None = None
    #: "blocks" (billion's AVX2 / AVX-512 kernels) or "torch" (fbgemm / int4pack)
    kernel: str = "torch"

    @property
    def label(self) -> str:
        if self.kernel == "blocks":
            if self.name == "int8":
                return f"int8 (groups of {self.group_size}, a16, {native.isa()})"
            return f"int4 (groups of {self.group_size}, a8, {native.isa()})"
        if self.name == "int8":
            return "int8 (w8a8 per-token, fbgemm)"
        return f"int4 (w4 g{self.group_size}, bf16 act)"

    @property
    def key(self) -> str:
        group = f"-g{self.group_size}" if self.group_size else ""
        return f"{self.name}{group}-{self.kernel}-k{KERNEL_VERSION}"


def default_kernel() -> str:
    return "blocks" if native.available() else "torch"


def scheme_for(name: str, group_size: int | None = None, kernel: str | None = None) -> QuantScheme:
    """The scheme for int8 / int4; the block kernels where they run here (int8 in groups of 256 by
    default, int4 of 64; both of 32 for GGUF-grid weights)."""
    if name not in SCHEMES:
        raise BillionError(f"Unknown quantization scheme {name!r}: use int8 or int4.")
    chosen = kernel or default_kernel()
    if chosen not in KERNELS or (chosen == "blocks" and not native.available()):
        raise BillionError(f"Kernel {chosen!r} is not available here: use one of "
                           f"{[k for k in KERNELS if k != 'blocks' or native.available()]}.")
    if name == "int8":
        if chosen == "torch":
            return QuantScheme("int8", None, chosen)
        group = group_size or native.Q8_GROUP
        if group not in INT8_GROUP_SIZES:
            raise BillionError(f"int8 group size {group} is not supported: use one of {INT8_GROUP_SIZES}.")
        return QuantScheme("int8", group, chosen)
    group = group_size or DEFAULT_INT4_GROUP
    if group not in INT4_GROUP_SIZES:
        raise BillionError(f"int4 group size {group} is not supported: use one of {INT4_GROUP_SIZES}.")
    if group not in native.Q4_GROUPS:
        chosen = "torch"  # the block kernels take groups of 64 and 32
    return QuantScheme("int4", group, chosen)


def _bits(scheme: QuantScheme) -> int:
    return 8 if scheme.name == "int8" else 4


def quantized_linear_type(linear: nn.Linear, scheme: QuantScheme) -> type:
    """BlockLinear with the block kernels; Int4Linear where the int4 kernel can pack the shape,
    else Int8Linear."""
    if scheme.kernel == "blocks" and BlockLinear.supports(linear, _bits(scheme), scheme.group_size):
        return BlockLinear
    if scheme.name == "int4" and scheme.group_size and Int4Linear.supports(linear, scheme.group_size):
        return Int4Linear
    return Int8Linear


def quantized_linear(linear: nn.Linear, scheme: QuantScheme,
                     act_absmax: torch.Tensor | None = None) -> nn.Module:
    """The quantized replacement of one layer."""
    kind = quantized_linear_type(linear, scheme)
    if kind is BlockLinear:
        return BlockLinear.from_linear(linear, _bits(scheme), scheme.group_size)
    if kind is Int4Linear:
        return Int4Linear.from_linear(linear, scheme.group_size)  # type: ignore[arg-type]
    return Int8Linear.from_linear(linear, act_absmax)


def empty_quantized_linear(linear: nn.Linear, scheme: QuantScheme) -> nn.Module:
    """Same module type and buffer shapes as quantized_linear, uninitialized (to load saved buffers into)."""
    bias = linear.bias is not None
    if quantized_linear_type(linear, scheme) is BlockLinear:
        return BlockLinear(linear.in_features, linear.out_features, bias, _bits(scheme), scheme.group_size)
    if quantized_linear_type(linear, scheme) is Int4Linear:
        return Int4Linear(linear.in_features, linear.out_features, bias, scheme.group_size)  # type: ignore[arg-type]
    return Int8Linear(linear.in_features, linear.out_features, bias)


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear by qualified name (the LM head included, however it is tied)."""
    return {name: m for name, m in model.named_modules() if type(m) is nn.Linear}


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def input_embedding(model: nn.Module, scheme: QuantScheme) -> tuple[str, nn.Embedding] | None:
    """The input embedding table by name, where the block kernels store it as int8."""
    if scheme.kernel != "blocks" or not hasattr(model, "get_input_embeddings"):
        return None
    table = model.get_input_embeddings()
    if not BlockEmbedding.supports(table):
        return None
    return next(((name, m) for name, m in model.named_modules() if m is table), None)


def check_cpu(model: nn.Module) -> None:
    devices = {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()}
    if devices - {"cpu", "meta"}:
        raise BillionError(f"billion's int8/int4 kernels run on CPU; this model is on {sorted(devices)}: "
                           "on a GPU use bitsandbytes (LoadOptions quantization on a CUDA device).")


@torch.no_grad()
def quantize_model(model: nn.Module, scheme: str, *, inplace: bool = False,
                   group_size: int | None = None, calibration: torch.Tensor | None = None,
                   empty: bool = False, kernel: str | None = None) -> nn.Module:
    """The model with every nn.Linear replaced by its int8 / int4 version (with the block kernels,
    the input embedding table by int8 blocks too).

    By default returns a copy and leaves `model` untouched; the copy shares no tensors with it and
    never holds a second float copy of the linear weights (they are quantized while copying).
    inplace=True swaps the layers of `model` itself. calibration: token ids (1, n) whose
    activations set int8's smoothing (calibration_ids(tokenizer) gives the shipped text; without
    it, seeded random ids are used). empty=True builds uninitialized layers, to load saved
    quantized buffers into. kernel: "blocks" or "torch" (default: blocks where they run here).
    """
    chosen = scheme_for(scheme, group_size, kernel)
    check_cpu(model)
    layers = linear_layers(model)
    stats: dict[str, torch.Tensor] = {}
    if not empty and any(quantized_linear_type(layer, chosen) is Int8Linear for layer in layers.values()):
        ids = calibration if calibration is not None else random_calibration_ids(model)
        stats = activation_absmax(model, ids, layers)

    embedding = input_embedding(model, chosen)
    if embedding:
        layers[embedding[0]] = embedding[1]  # type: ignore[assignment]

    def replacement(name: str) -> nn.Module:
        layer = layers.pop(name)  # dropped here, so in place each float layer is freed once swapped
        if isinstance(layer, nn.Embedding):
            return BlockEmbedding.empty_like(layer) if empty else BlockEmbedding.from_embedding(layer)
        if empty:
            return empty_quantized_linear(layer, chosen)
        return quantized_linear(layer, chosen, stats.pop(name, None))

    count = len(layers)
    if inplace:
        target = model
        for name in list(layers):
            _set_module(target, name, replacement(name))
    else:
        # deepcopy with each Linear pre-mapped to its replacement: the float weights are never copied.
        memo = {id(layer): replacement(name) for name, layer in list(layers.items())}
        target = copy.deepcopy(model, memo)
    target.billion_quant = chosen  # type: ignore[assignment]
    log.info("quantized %d layers to %s", count, chosen.label)
    release_freed_heap()
    return target


def release_replaced() -> None:
    """After a model was replaced by its copy from the quantized cache: collect the old one now
    (transformers' modules hold reference cycles) and hand its heap back, so a first start ends at
    the size of every later one (Llama-3.2-1B int8: 2480 MiB against 1647)."""
    gc.collect()
    release_freed_heap()


def release_freed_heap() -> None:
    """Hand the float weights' freed heap back to the OS: glibc keeps it otherwise, and the
    process would stay at its float size (TinyLlama int4: hundreds of MiB)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def model_scheme(model: nn.Module) -> QuantScheme | None:
    """The scheme quantize_model applied to this model (None for a float model)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner, "billion_quant", None)
