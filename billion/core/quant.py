"""int8 / int4 on CPU: nn.Linear swapped for modules that call PyTorch's packed CPU kernels.

Kernels (measured in benchmarks/quant_kernels.py; why these in docs/benchmarks/decode.md):
- int8: per-output-channel int8 weights on fbgemm's int8 GEMM (`quantized::linear_dynamic`),
  activations quantized per token on the fly. `torch._weight_int8pack_mm` (weight-only) was no
  faster than fp32 on an AVX2 CPU; fbgemm was 3-6x faster.
- int4: asymmetric groups along the input dimension (min/max, group 32 by default),
  `torch._weight_int4pack_mm_for_cpu` on a layout packed once at load, bf16 activations (the
  kernel is slow with fp32 ones). It halves int8's memory; its speed depends on the CPU.
Each module casts to its kernel's activation dtype and back: the rest of the model keeps its own
dtype. A layer whose shape a kernel refuses falls back (int4 to int8).
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from billion.core.errors import BillionError
from billion.core.paths import ASSETS

log = logging.getLogger(__name__)

#: bump when the packed layout or the quantization rule changes: it is part of the cache key
KERNEL_VERSION = 1
SCHEMES = ("int8", "int4")
INT4_GROUP_SIZES = (256, 128, 64, 32)
DEFAULT_INT4_GROUP = 32
#: SmoothQuant's migration strength for int8 (0.7 gave the lowest layer error on SmolLM2 here)
SMOOTH_ALPHA = 0.7
CALIBRATION_TEXT = ASSETS / "quant_calibration.txt"
_ACT = torch.bfloat16


@dataclass(frozen=True)
class QuantScheme:
    """What a quantized model holds: the kernels' names and settings, for labels and cache keys."""

    name: str
    #: int4 group size along the input dimension (None for int8's per-channel scales)
    group_size: int | None = None

    @property
    def label(self) -> str:
        if self.name == "int8":
            return "int8 (w8a8 per-token, fbgemm)"
        return f"int4 (w4 g{self.group_size}, bf16 act)"

    @property
    def key(self) -> str:
        group = f"-g{self.group_size}" if self.group_size else ""
        return f"{self.name}{group}-k{KERNEL_VERSION}"


def scheme_for(name: str, group_size: int | None = None) -> QuantScheme:
    if name not in SCHEMES:
        raise BillionError(f"Unknown quantization scheme {name!r}: use int8 or int4.")
    if name == "int8":
        return QuantScheme("int8")
    group = group_size or DEFAULT_INT4_GROUP
    if group not in INT4_GROUP_SIZES:
        raise BillionError(f"int4 group size {group} is not supported: use one of {INT4_GROUP_SIZES}.")
    return QuantScheme("int4", group)


def smoothing_factors(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant's s_c = max|x_c|^alpha / max|W_c|^(1-alpha), moving range from activations to weights."""
    act = act_absmax.float().clamp(min=1e-5)
    wmax = weight.abs().amax(dim=0).clamp(min=1e-5)
    return (act.pow(alpha) / wmax.pow(1 - alpha)).clamp(min=1e-5, max=1e5)


def calibration_ids(tokenizer, max_tokens: int = 512) -> torch.Tensor:
    """Token ids of the shipped calibration text (prose, chat, code, numbers), shape (1, n)."""
    text = CALIBRATION_TEXT.read_text(encoding="utf-8")
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :max_tokens]
    if ids.shape[1] == 0:
        raise BillionError("The tokenizer turned the calibration text into no tokens: check the tokenizer.")
    return ids


def random_calibration_ids(model: nn.Module, tokens: int = 256, seed: int = 0) -> torch.Tensor:
    """Seeded random token ids: a fallback calibration when no tokenizer is at hand."""
    vocab = model.get_input_embeddings().num_embeddings
    return torch.randint(0, vocab, (1, tokens), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def activation_absmax(model: nn.Module, input_ids: torch.Tensor,
                      layers: dict[str, nn.Linear]) -> dict[str, torch.Tensor]:
    """Per input channel, the largest |activation| each Linear sees on input_ids (one forward)."""
    stats: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_module, inputs, _output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(0).float()
            stats[name] = torch.maximum(stats[name], x) if name in stats else x
        return hook

    handles = [layer.register_forward_hook(record(name)) for name, layer in layers.items()]
    try:
        model(input_ids=input_ids.to(next(model.parameters()).device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return stats


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1]).to(_ACT)


class Int8Linear(nn.Module):
    """y = x W^T + b with W as int8 rows (one scale per output channel), on fbgemm's int8 GEMM.

    Activations are quantized per token on the fly (7-bit asymmetric: fbgemm's reduce_range, which
    keeps AVX2's 16-bit pair sums from saturating). fbgemm takes one range for the whole input, so
    rows of a multi-token input are first scaled to the same absolute maximum and scaled back:
    every token is quantized on the scale of its own largest value, whatever the batch (a lone
    token also uses its own minimum, so single- and multi-token results differ by rounding).
    LLM activations have a few huge channels
    that would flatten every other channel to zero, so (SmoothQuant) each input channel c is
    divided by smooth[c] and the weight column multiplied by it, from calibration statistics.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.packed = None  # fbgemm's packed weight, built from the int8 rows
        self.register_buffer("inv_smooth", torch.ones(in_features))
        self.register_buffer("bias", torch.empty(out_features) if bias else None)

    @staticmethod
    def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scales = (weight.float().abs().amax(dim=1) / 127).clamp(min=1e-10)
        return torch.round(weight.float() / scales[:, None]).clamp(-127, 127).to(torch.int8), scales

    def pack(self, weight_int8: torch.Tensor, scales: torch.Tensor) -> None:
        zeros = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated; torch is pinned (2.13)
            warnings.simplefilter("ignore", UserWarning)
            qweight = torch._make_per_channel_quantized_tensor(weight_int8, scales.double(), zeros, 0)
        self.packed = torch.ops.quantized.linear_prepack(qweight, None)

    def unpack(self) -> tuple[torch.Tensor, torch.Tensor]:
        qweight, _ = torch.ops.quantized.linear_unpack(self.packed)
        return qweight.int_repr(), qweight.q_per_channel_scales().float()

    @classmethod
    def from_linear(cls, linear: nn.Linear, act_absmax: torch.Tensor | None = None,
                    alpha: float = SMOOTH_ALPHA) -> "Int8Linear":
        """Quantize one layer; act_absmax (per input channel, from calibration) turns on smoothing."""
        module = cls(linear.in_features, linear.out_features, linear.bias is not None)
        weight = linear.weight.detach().float()
        if act_absmax is not None:
            smooth = smoothing_factors(act_absmax, weight, alpha)
            weight = weight * smooth[None, :]
            module.inv_smooth = 1.0 / smooth
        module.pack(*cls.quantize(weight))
        if linear.bias is not None:
            module.bias = linear.bias.detach().float().clone()
        return module

    def packed_bytes(self) -> int:
        """Bytes of the fbgemm-packed weight and its scales (not a buffer, so not in state_dict sizes)."""
        return self.in_features * self.out_features + 8 * self.out_features if self.packed is not None else 0

    def dequantized(self) -> torch.Tensor:
        """The float weight this layer stands for (smoothing undone)."""
        weight, scales = self.unpack()
        return weight.float() * scales[:, None] * self.inv_smooth[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).float() * self.inv_smooth
        if flat.shape[0] == 1:
            y = torch.ops.quantized.linear_dynamic(flat, self.packed, True)
        else:
            amax = flat.abs().amax(-1, keepdim=True).clamp(min=1e-20)
            y = torch.ops.quantized.linear_dynamic(flat / amax, self.packed, True) * amax
        y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return y + self.bias.to(x.dtype) if self.bias is not None else y

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight_int8"], destination[prefix + "scales"] = self.unpack()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        weight, scales = state_dict.get(prefix + "weight_int8"), state_dict.get(prefix + "scales")
        if weight is None or scales is None:
            missing_keys.extend(k for k in (prefix + "weight_int8", prefix + "scales") if k not in state_dict)
        else:
            self.pack(weight, scales)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        unexpected_keys[:] = [k for k in unexpected_keys if k not in (prefix + "weight_int8", prefix + "scales")]

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, w8 per-channel, a8 per-token (fbgemm)"


class Int4Linear(nn.Module):
    """y = x W^T + b with W in 4-bit groups (scale and zero per group), in the CPU kernel's packing."""

    def __init__(self, in_features: int, out_features: int, bias: bool, group_size: int):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("weight_int4", torch.empty(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scales_zeros", torch.empty(in_features // group_size, out_features, 2,
                                                         dtype=_ACT))
        self.register_buffer("bias", torch.empty(out_features) if bias else None)

    @staticmethod
    def supports(linear: nn.Linear, group_size: int) -> bool:
        return linear.out_features % 16 == 0 and linear.in_features % group_size == 0

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int) -> "Int4Linear":
        n, k = linear.out_features, linear.in_features
        groups = linear.weight.detach().float().reshape(n, k // group_size, group_size)
        low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-10).to(_ACT).float()
        q = torch.round((groups - low) / scale).clamp(0, 15).to(torch.int32).reshape(n, k)
        # The kernel computes (q - 8) * scale + zero, so zero is the group's value at q = 8.
        zero = low + 8 * scale
        module = cls(k, n, linear.bias is not None, group_size)
        module.weight_int4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        module.scales_zeros = torch.cat([scale, zero], -1).transpose(0, 1).contiguous().to(_ACT)
        if linear.bias is not None:
            module.bias = linear.bias.detach().float().clone()
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch._weight_int4pack_mm_for_cpu(_flat(x), self.weight_int4, self.group_size,
                                              self.scales_zeros)
        y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return y + self.bias.to(x.dtype) if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, w4 g{self.group_size}, bf16 act"


def quantized_linear_type(linear: nn.Linear, scheme: QuantScheme) -> type:
    """Int4Linear where the int4 kernel can pack the shape, else Int8Linear."""
    if scheme.name == "int4" and scheme.group_size and Int4Linear.supports(linear, scheme.group_size):
        return Int4Linear
    return Int8Linear


def quantized_linear(linear: nn.Linear, scheme: QuantScheme,
                     act_absmax: torch.Tensor | None = None) -> nn.Module:
    """The quantized replacement of one layer."""
    if quantized_linear_type(linear, scheme) is Int4Linear:
        return Int4Linear.from_linear(linear, scheme.group_size)  # type: ignore[arg-type]
    return Int8Linear.from_linear(linear, act_absmax)


def empty_quantized_linear(linear: nn.Linear, scheme: QuantScheme) -> nn.Module:
    """Same module type and buffer shapes as quantized_linear, uninitialized (to load saved buffers into)."""
    bias = linear.bias is not None
    if quantized_linear_type(linear, scheme) is Int4Linear:
        return Int4Linear(linear.in_features, linear.out_features, bias, scheme.group_size)  # type: ignore[arg-type]
    return Int8Linear(linear.in_features, linear.out_features, bias)


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear by qualified name (the LM head included, however it is tied)."""
    return {name: m for name, m in model.named_modules() if type(m) is nn.Linear}


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def check_cpu(model: nn.Module) -> None:
    devices = {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()}
    if devices - {"cpu", "meta"}:
        raise BillionError(f"billion's int8/int4 kernels run on CPU; this model is on {sorted(devices)}: "
                           "on a GPU use bitsandbytes (LoadOptions quantization on a CUDA device).")


@torch.no_grad()
def quantize_model(model: nn.Module, scheme: str, *, inplace: bool = False,
                   group_size: int | None = None, calibration: torch.Tensor | None = None,
                   empty: bool = False) -> nn.Module:
    """The model with every nn.Linear replaced by its int8 / int4 version.

    By default returns a copy and leaves `model` untouched; the copy shares no tensors with it and
    never holds a second float copy of the linear weights (they are quantized while copying).
    inplace=True swaps the layers of `model` itself. calibration: token ids (1, n) whose
    activations set int8's smoothing (calibration_ids(tokenizer) gives the shipped text; without
    it, seeded random ids are used). empty=True builds uninitialized layers, to load saved
    quantized buffers into.
    """
    chosen = scheme_for(scheme, group_size)
    check_cpu(model)
    layers = linear_layers(model)
    stats: dict[str, torch.Tensor] = {}
    if not empty and any(quantized_linear_type(layer, chosen) is Int8Linear for layer in layers.values()):
        ids = calibration if calibration is not None else random_calibration_ids(model)
        stats = activation_absmax(model, ids, layers)

    def replacement(name: str) -> nn.Module:
        layer = layers.pop(name)  # dropped here, so in place each float layer is freed once swapped
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
    log.info("quantized %d linear layers to %s", count, chosen.label)
    return target


def model_scheme(model: nn.Module) -> QuantScheme | None:
    """The scheme quantize_model applied to this model (None for a float model)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner, "billion_quant", None)
