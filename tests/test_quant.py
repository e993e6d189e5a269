"""int8 / int4 CPU layers and quantize_model, on tiny random models (no weights needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from billion.core import native
from billion.core.errors import BillionError
from billion.core.quant import (Int4Linear, Int8Linear, calibration_ids, default_kernel, linear_layers,
                                model_scheme, quantize_model, scheme_for)
from billion.core.quant_blocks import BlockLinear

pytestmark = pytest.mark.usefixtures("one_thread")


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def _linear(n: int, k: int, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(k, n, bias=bias)
    nn.init.normal_(layer.weight, std=0.05)
    return layer


@pytest.mark.parametrize("rows", [1, 7])
def test_int8_layer_matches_float(rows):
    layer = _linear(96, 128)
    x = torch.randn(2, rows, 128)
    quant = Int8Linear.from_linear(layer, act_absmax=x.reshape(-1, 128).abs().amax(0))
    with torch.no_grad():
        assert _relative_error(quant(x), layer(x)) < 0.03
        assert quant(x).shape == (2, rows, 96)
        # Smoothing is undone in dequantized(): it stands for the float weight.
        assert _relative_error(quant.dequantized(), layer.weight) < 0.02


def test_int8_tokens_keep_their_own_range_in_a_batch():
    """A token's output does not depend on the other tokens quantized with it (up to one step)."""
    layer = _linear(64, 64, bias=False)
    small, huge = torch.randn(1, 64) * 0.01, torch.randn(1, 64) * 100
    quant = Int8Linear.from_linear(layer)
    with torch.no_grad():
        alone = quant(small)
        batched = quant(torch.cat([small, huge]))[:1]
        assert _relative_error(batched, layer(small)) < 0.05
        assert _relative_error(batched, alone) < 0.05


def test_int4_layer_matches_float_and_packs_half_a_byte():
    layer = _linear(64, 128)
    quant = Int4Linear.from_linear(layer, group_size=32)
    x = torch.randn(3, 128)
    with torch.no_grad():
        assert _relative_error(quant(x), layer(x)) < 0.15
    assert quant.weight_int4.numel() == 64 * 128 // 2


KERNELS = ["torch", pytest.param("blocks", marks=pytest.mark.skipif(
    not native.available(), reason="the block kernels need AVX2/FMA/F16C and gcc"))]
LAYER = {"torch": Int8Linear, "blocks": BlockLinear}


@pytest.mark.parametrize("kernel", KERNELS)
def test_quantize_model_copy_leaves_the_input_untouched(llama, kernel):
    ids = torch.tensor([[1, 5, 9, 12, 40, 3]])
    with torch.no_grad():
        before = llama(ids).logits
    weight = llama.model.layers[0].mlp.up_proj.weight.clone()
    quantized = quantize_model(llama, "int8", kernel=kernel)
    assert all(type(m) is nn.Linear for m in linear_layers(llama).values())
    assert torch.equal(llama.model.layers[0].mlp.up_proj.weight, weight)
    assert isinstance(quantized.model.layers[0].mlp.up_proj, LAYER[kernel])
    assert not linear_layers(quantized)
    with torch.no_grad():
        assert torch.equal(llama(ids).logits, before)
        assert _relative_error(quantized(ids).logits, before) < 0.1
    assert model_scheme(quantized) == scheme_for("int8", kernel=kernel) and model_scheme(llama) is None


def test_int4_model_falls_back_to_int8_where_the_kernel_cannot_pack(llama):
    quantized = quantize_model(llama, "int4", kernel="torch")
    assert isinstance(quantized.model.layers[0].self_attn.q_proj, Int4Linear)
    # The tiny vocabulary is not a multiple of 16: the LM head stays int8.
    assert llama.lm_head.out_features % 16 != 0
    assert isinstance(quantized.lm_head, Int8Linear)
    assert model_scheme(quantized).label == "int4 (w4 g64, bf16 act)"


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_saved_buffers_load_into_an_empty_skeleton(llama, scheme, tokenizer, kernel):
    ids = torch.tensor([[1, 5, 9, 12, 40, 3]])
    quantized = quantize_model(llama, scheme, calibration=calibration_ids(tokenizer), kernel=kernel)
    state = {k: v.clone() for k, v in quantized.state_dict().items()}
    skeleton = quantize_model(llama, scheme, empty=True, kernel=kernel)
    result = skeleton.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        assert torch.equal(skeleton(ids).logits, quantized(ids).logits)


def test_inplace_swaps_the_layers_of_the_model_itself(tokenizer):
    from tiny_models import tiny_llama

    model = tiny_llama(len(tokenizer), seed=3)
    same = quantize_model(model, "int8", inplace=True)
    assert same is model and isinstance(model.model.layers[1].mlp.down_proj, LAYER[default_kernel()])


def test_unknown_scheme_and_group_size_name_the_fix(llama):
    with pytest.raises(BillionError, match="int8 or int4"):
        quantize_model(llama, "int3")
    with pytest.raises(BillionError, match="group size"):
        quantize_model(llama, "int4", group_size=48)
