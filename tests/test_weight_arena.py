"""Quantized weights moved onto huge pages: same bits, one aligned mapping, freed with the model."""

from __future__ import annotations

import gc
import os

import pytest
import torch
from torch import nn

from billion.core import native, weight_arena
from billion.core.quant_blocks import BlockLinear
from billion.core.weight_arena import HUGE_PAGE, huge_pages_available, move_to_huge_pages

pytestmark = [pytest.mark.skipif(not native.available(), reason="the block kernels need AVX2/FMA/F16C and gcc"),
              pytest.mark.skipif(not hasattr(os, "preadv"), reason="Linux only")]


@pytest.fixture
def thp(monkeypatch):
    """Run the move whatever this host's THP setting (madvise is then a no-op, the move the same)."""
    monkeypatch.setattr(weight_arena, "huge_pages_available", lambda setting=None: True)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({"a": BlockLinear.from_linear(nn.Linear(512, 96), 8),  # int8, groups of 256
                          "b": BlockLinear.from_linear(nn.Linear(192, 40), 8),  # groups of 64
                          "c": BlockLinear.from_linear(nn.Linear(128, 64), 4)})


def _outputs(model: nn.Module) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return {name: layer(torch.randn(3, layer.in_features, generator=gen)) for name, layer in model.items()}


def _mapping_of(address: int) -> dict[str, str] | None:
    """The /proc/self/smaps entry (start, end and its fields) holding an address."""
    entry = None
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and ":" not in head:
            start, end = (int(x, 16) for x in head.split("-"))
            entry = {"start": start, "end": end} if start <= address < end else None
        elif entry is not None and ":" in head:
            entry[head.rstrip(":")] = line.split(":", 1)[1].strip()
        if entry is not None and "VmFlags" in entry:
            return entry
    return entry


@pytest.mark.parametrize("setting, available", [("always [madvise] never", True), ("[always] madvise never", True),
                                                ("always madvise [never]", False)])
def test_huge_pages_follow_the_kernel_setting(setting, available):
    assert huge_pages_available(setting) is available


def test_moved_weights_give_the_same_bits_from_one_aligned_mapping(thp):
    model = _model()
    want, before = _outputs(model), {n: m.blocks.clone() for n, m in model.items()}
    moved = move_to_huge_pages(model)
    assert moved >= sum(m.blocks.numel() for m in model.values())
    ptrs = [m.blocks.data_ptr() for m in model.values()]
    assert ptrs[0] % HUGE_PAGE == 0 and all(p % 64 == 0 for p in ptrs)  # huge-page start, cache-line starts
    mapping = _mapping_of(ptrs[0])
    assert mapping is not None and all(mapping["start"] <= p < mapping["end"] for p in ptrs)
    assert "hg" in mapping["VmFlags"].split()  # madvised MADV_HUGEPAGE
    gc.collect()
    assert all(torch.equal(model[n].blocks, before[n]) for n in model)
    got = _outputs(model)
    assert all(torch.equal(got[n], want[n]) for n in model)


@pytest.mark.skipif(not huge_pages_available(), reason="transparent huge pages are off here")
def test_the_mapping_is_eligible_for_huge_pages_here():
    model = _model()
    move_to_huge_pages(model)
    assert _mapping_of(model["a"].blocks.data_ptr()).get("THPeligible") == "1"


def test_without_huge_pages_nothing_moves(monkeypatch):
    monkeypatch.setattr(weight_arena, "huge_pages_available", lambda setting=None: False)
    model = _model()
    ptr = model["a"].blocks.data_ptr()
    assert move_to_huge_pages(model) == 0 and model["a"].blocks.data_ptr() == ptr


def test_a_refused_madvise_leaves_the_model_alone(thp, monkeypatch):
    monkeypatch.setattr(weight_arena, "_advise", lambda arena: False)
    model = _model()
    ptr = model["a"].blocks.data_ptr()
    assert move_to_huge_pages(model) == 0 and model["a"].blocks.data_ptr() == ptr


def test_the_mapping_goes_with_the_model(thp):
    model = _model()
    move_to_huge_pages(model)
    address = model["a"].blocks.data_ptr()
    assert _mapping_of(address) is not None
    del model
    gc.collect()
    assert _mapping_of(address) is None


def test_weights_read_from_the_saved_file_and_the_model_saves_again(thp, tmp_path):
    from safetensors.torch import load_file, save_file

    model = _model()
    want = _outputs(model)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    loaded = _model()
    for layer in loaded.values():
        layer.blocks = torch.zeros_like(layer.blocks)  # only the file holds the weights now
    move_to_huge_pages(loaded, tmp_path / "m.safetensors")
    got = _outputs(loaded)
    assert all(torch.equal(got[n], want[n]) for n in want)
    save_file(dict(loaded.state_dict()), str(tmp_path / "again.safetensors"))  # one storage per tensor
    again = load_file(str(tmp_path / "again.safetensors"))
    assert all(torch.equal(again[f"{n}.blocks"], model[n].blocks) for n in model)


def test_a_truncated_file_raises_rather_than_leaving_zeros(thp, tmp_path):
    from safetensors.torch import save_file

    model = _model()
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    os.truncate(path, path.stat().st_size - 100)
    with pytest.raises(OSError, match="ended early"):
        move_to_huge_pages(_model(), path)
