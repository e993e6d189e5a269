"""billion's block kernels against the arithmetic they stand for, computed in PyTorch."""

import pytest
import torch
from torch import nn

from billion.core import native
from billion.core.quant_blocks import BlockLinear, quantize_blocks

pytestmark = pytest.mark.skipif(not native.available(), reason="the block kernels need AVX2/FMA/F16C and gcc")


def _avx512_here() -> bool:
    return native.set_isa(True) == "AVX-512"


@pytest.fixture(params=["AVX2", "AVX-512"])
def isa(request):
    """Each kernel test on both instruction sets (AVX-512 where this CPU has BW + VNNI)."""
    if native.set_isa(request.param == "AVX-512") != request.param:
        native.set_isa(True)
        pytest.skip(f"this CPU has no {request.param} (BW + VNNI)")
    yield request.param
    native.set_isa(True)


def reference_blocks(weight: torch.Tensor, bits: int, group: int = 64) -> torch.Tensor:
    """What the blocks should decode to, from the layout's definition (scales apart from values)."""
    n, k = weight.shape
    nb = k // 32
    blocks = quantize_blocks(weight, bits, group)
    if bits == 8:  # one fp16 scale per group, then the int8 values
        ng = k // group
        scales = blocks[:, :2 * ng].contiguous().view(torch.float16).float().repeat_interleave(group, -1)
        return blocks[:, 2 * ng:].contiguous().view(torch.int8).float() * scales
    # int4: one fp16 scale and one fp16 minimum per group (of 64: two blocks of 32; of 32: one)
    ng, per = k // group, group // 32
    scales = blocks[:, :2 * ng].contiguous().view(torch.float16).float().repeat_interleave(per, -1)
    mins = blocks[:, 2 * ng:4 * ng].contiguous().view(torch.float16).float().repeat_interleave(per, -1)
    packed = blocks[:, 4 * ng:].reshape(n, nb, 16)
    values = torch.cat([packed & 0x0F, packed >> 4], -1).float()
    return (values * scales[..., None] + mins[..., None]).reshape(n, k)


def reference_activations(x: torch.Tensor, bits: int, group: int = 32) -> torch.Tensor:
    """x quantized as the kernels do: int8 (127 levels) per block of 32 against int4 weights,
    int16 per group of the weights' against int8 weights (32767 levels in blocks of 32; 32639 in
    larger groups, which the AVX-512 loops read as two int8 planes); round half to even."""
    levels = 127 if bits == 4 else 32767 if group == 32 else 32639
    groups = x.reshape(x.shape[0], -1, 32 if bits == 4 else group)
    top = groups.abs().amax(-1, keepdim=True)
    inverse = torch.where(top > 0, levels / top, 0)  # as the kernel computes it, so ties round alike
    return (torch.round(groups * inverse) * (top / levels)).reshape(x.shape)


INT8_GROUPS = ((8, 256), (8, 128), (8, 64), (8, 32))


@pytest.mark.parametrize("bits, group, shape", [
    (bits, group, shape) for bits, group in (*INT8_GROUPS, (4, 64), (4, 32))
    for shape in [(48, 32), (48, 64), (96, 576), (130, 2048)]  # 1, 2, 18 (a tail) and 64 blocks
    if shape[1] % group == 0])
def test_blocks_decode_to_the_weight_within_half_a_step(bits, group, shape):
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 0.05
    decoded = reference_blocks(weight, bits, group)
    assert torch.equal(native.dequantize(quantize_blocks(weight, bits, group), bits, shape[1], group), decoded)
    size = group
    groups = weight.reshape(shape[0], -1, size)
    step = groups.abs().amax(-1) / 127 if bits == 8 else (groups.amax(-1) - groups.amin(-1)) / 15
    error = (decoded - weight).abs().reshape(shape[0], -1, size).amax(-1)
    assert (error <= step * 0.5 * 1.01 + 1e-4).all()  # half a step (fp16 scales add a hair)


# blocks per row: 1 (or one group); 6 and 7 (a run of four, then 2 or 3 alone); 18 and 22 (sixteen,
# then a tail); 64. Rows are whole groups.
@pytest.mark.parametrize("bits, group, k", [
    (bits, group, max(k, group)) for bits, group in (*INT8_GROUPS, (4, 64), (4, 32))
    for k in (32, 192, 224, 576, 704, 2048) if max(k, group) % group == 0])
@pytest.mark.parametrize("rows", [1, 3, 16, 100])
def test_layer_computes_quantized_weight_times_quantized_activations(bits, group, rows, k, isa):
    torch.manual_seed(rows + k)
    linear = nn.Linear(k, 40, bias=True)
    layer = BlockLinear.from_linear(linear, bits, group)
    x = torch.randn(1, rows, k)
    weight = reference_blocks(linear.weight, bits, group)
    with torch.no_grad():
        got = layer(x)
        acts = reference_activations(x.reshape(-1, k), bits, group)  # the kernels quantize activations too
        want = (acts @ weight.T + linear.bias).reshape(1, rows, 40)
        exact = linear(x)
    assert got.shape == (1, rows, 40)
    # one activation rounding the other way on a tie moves an output by ~3e-4; a layout error by ~0.1
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    assert (got - exact).norm() / exact.norm() < (0.005 if bits == 8 else 0.12)


def test_int4_blocks_take_rows_of_whole_groups():
    assert BlockLinear.supports(nn.Linear(64, 8), 4) and BlockLinear.supports(nn.Linear(96, 8), 8)
    assert not BlockLinear.supports(nn.Linear(96, 8), 4)  # 3 blocks of 32: half a group of 64 left over
    assert BlockLinear.supports(nn.Linear(96, 8), 4, group=32)
    assert quantize_blocks(torch.randn(8, 128), 4).shape == (8, native.row_bytes(4, 128))
    assert native.row_bytes(4, 128) * 8 / 128 == 4.5 and native.row_bytes(4, 128, 32) * 8 / 128 == 5  # bits per weight
    assert BlockLinear(128, 8, False, 4, 32).blocks.shape == (8, 80)
    with pytest.raises(ValueError, match="groups of 48"):
        quantize_blocks(torch.randn(8, 96), 4, group=48)


def test_int8_takes_groups_of_256_or_the_largest_that_divides_a_row():
    # 2048 and 5632 (TinyLlama): 256; 576 (SmolLM2's hidden size): 64; 640 (Gemma-3-270M's): 128
    for k, group in ((2048, 256), (5632, 256), (576, 64), (640, 128), (96, 32)):
        layer = BlockLinear.from_linear(nn.Linear(k, 8), 8)
        assert layer.group == group and layer.blocks.shape == (8, k + 2 * k // group)
    assert BlockLinear.from_linear(nn.Linear(2048, 8), 8, 32).group == 32  # GGUF-grid weights keep 32
    assert native.row_bytes(8, 2048) * 8 / 2048 == 8.0625 and native.row_bytes(8, 2048, 32) * 8 / 2048 == 8.5
    assert not BlockLinear.supports(nn.Linear(80, 8), 8)  # no group of 32 or more divides 80
    with pytest.raises(ValueError, match="groups of 48"):
        quantize_blocks(torch.randn(8, 96), 8, group=48)


def test_layer_keeps_the_caller_dtype_and_a_zero_row():
    linear = nn.Linear(64, 16, bias=False)
    layer = BlockLinear.from_linear(linear, 4)
    x = torch.zeros(1, 64, dtype=torch.bfloat16)
    x[0, :32] = 1.0
    with torch.no_grad():
        y = layer(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()  # an all-zero block has scale 0
    torch.testing.assert_close(y.float(), (x.float() @ reference_blocks(linear.weight, 4).T), rtol=2e-2, atol=2e-2)


def test_state_dict_round_trip_gives_the_same_outputs():
    linear = nn.Linear(96, 24)
    layer = BlockLinear.from_linear(linear, 8)
    empty = BlockLinear(96, 24, True, 8)
    empty.load_state_dict({k: v.clone() for k, v in layer.state_dict().items()})
    x = torch.randn(1, 96)
    with torch.no_grad():
        assert torch.equal(layer(x), empty(x))


def test_embedding_rows_decode_with_the_table_scale():
    from billion.core.quant_blocks import BlockEmbedding

    table = nn.Embedding(50, 64, padding_idx=0)
    table.embed_scale = torch.tensor(8.0)  # Gemma scales its embeddings by sqrt(hidden)
    quant = BlockEmbedding.from_embedding(table)
    ids = torch.tensor([[3, 0, 49], [7, 7, 1]])
    want = reference_blocks(table.weight, 8, native.QK)[ids] * 8.0
    with torch.no_grad():
        got = quant(ids)
    assert got.shape == (2, 3, 64) and torch.equal(got, want)
    assert quant.blocks.numel() == 50 * 2 * 34  # 34 bytes per 32 values


def test_quantized_model_stores_its_tied_embedding_as_blocks(tokenizer):
    from tiny_models import tiny_llama

    from billion.core.quant import quantize_model
    from billion.core.quant_blocks import BlockEmbedding

    model = tiny_llama(len(tokenizer), seed=5)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        before = model(ids).logits
        quant = quantize_model(model, "int8", kernel="blocks")
        after = quant(ids).logits
    assert isinstance(quant.get_input_embeddings(), BlockEmbedding)
    assert isinstance(quant.lm_head, BlockLinear)
    assert ((after - before).norm() / before.norm()) < 0.05


def _table_in_a_file(tmp_path):
    from safetensors.torch import save_file

    from billion.core.quant_blocks import BlockEmbedding

    table = BlockEmbedding.from_embedding(nn.Embedding(50, 64))
    path = tmp_path / "model.safetensors"
    # A tensor before the table, so its offset in the file is not the data start.
    save_file({"a.before": torch.arange(77, dtype=torch.uint8), "embed.blocks": table.blocks}, str(path))
    return table, path


def test_embedding_rows_read_from_a_file_match_the_table(tmp_path):
    import copy

    from billion.core.quant_blocks import RowFile

    table, path = _table_in_a_file(tmp_path)
    ids = torch.tensor([[3, 0, 49], [7, 7, 1]])
    want = table(ids)
    table.read_rows_from(RowFile.in_safetensors(path, "embed.blocks"))
    table.blocks = torch.zeros_like(table.blocks)  # a lookup no longer reads the table in memory
    assert torch.equal(table(ids), want)
    assert torch.equal(copy.deepcopy(table)(ids), want)  # a copy opens its own file
    assert table(torch.tensor([], dtype=torch.long)).shape == (0, 64)
    with pytest.raises(IndexError):
        table(torch.tensor([50]))
    with pytest.raises(IndexError):
        table(torch.tensor([-1]))


def test_row_file_refuses_a_wrong_tensor_and_reports_a_truncated_file(tmp_path):
    from billion.core.quant_blocks import BlockEmbedding, RowFile

    table, path = _table_in_a_file(tmp_path)
    with pytest.raises(ValueError, match="not 2-D uint8"):
        RowFile.in_safetensors(path, "a.before")
    with pytest.raises(ValueError, match="row file holds"):
        BlockEmbedding.from_embedding(nn.Embedding(49, 64)).read_rows_from(
            RowFile.in_safetensors(path, "embed.blocks"))
    rows = RowFile.in_safetensors(path, "embed.blocks")
    path.write_bytes(path.read_bytes()[:-100])  # the last rows are gone
    table.read_rows_from(rows)
    assert table(torch.tensor([0])).shape == (1, 64)
    with pytest.raises(OSError, match="damaged"):
        table(torch.tensor([49]))


@pytest.mark.parametrize("bits, group", [*INT8_GROUPS, (4, 64), (4, 32)])
def test_avx512_and_avx2_loops_agree(bits, group):
    """The same integer products on both instruction sets: outputs differ only by the order of the
    fp32 sums (a layout slip would move them by whole percents)."""
    if not _avx512_here():
        pytest.skip("this CPU has no AVX-512 BW + VNNI")
    torch.manual_seed(bits + group)
    layer = BlockLinear.from_linear(nn.Linear(704, 96, bias=False), bits, group)
    x = torch.randn(3, 704)
    with torch.no_grad():
        native.set_isa(False)
        avx2 = layer(x)
        native.set_isa(True)
        avx512 = layer(x)
    torch.testing.assert_close(avx512, avx2, rtol=1e-5, atol=1e-5)
    assert native.isa() == "AVX-512"


@pytest.mark.parametrize("bits, group, k", [(bits, group, k) for bits, group in (*INT8_GROUPS, (4, 64), (4, 32))
                                             for k in (224, 704, 2048) if k % group == 0])
def test_a_prompts_rows_equal_the_same_rows_one_at_a_time(bits, group, k, isa):
    """Rows are taken four at a time where the loops allow (a prompt), in the one-row order: the
    same bits, so a token's projections do not depend on how many came with it."""
    gen = torch.Generator().manual_seed(k + bits)
    blocks = quantize_blocks(torch.randn(72, k, generator=gen) * 0.05, bits, group)
    x = torch.randn(9, k, generator=gen)
    together = native.block_matmul(blocks, bits, k, x, group)
    alone = torch.cat([native.block_matmul(blocks, bits, k, x[i:i + 1].contiguous(), group) for i in range(9)])
    assert torch.equal(together, alone)
