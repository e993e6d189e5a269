"""int8 / int4 layers on PyTorch's own CPU kernels: fbgemm's int8 GEMM with SmoothQuant, and
`_weight_int4pack_mm_for_cpu`. billion uses them where its block kernels (quant_blocks.py) do not
run (no AVX2 or no C compiler), and for int4 group sizes other than 32.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from billion.core.errors import BillionError
from billion.core.paths import ASSETS

#: SmoothQuant's migration strength for int8 (0.7 gave the lowest layer error on SmolLM2 here)
SMOOTH_ALPHA = 0.7
CALIBRATION_TEXT = ASSETS / "quant_calibration.txt"
_ACT = torch.bfloat16


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
