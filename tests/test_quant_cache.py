"""The quantized-weights cache: written on the first load, read on the next, rebuilt when damaged."""

from __future__ import annotations

import shutil

import pytest
import torch

from billion.core import native, quant_cache
from billion.core.loading import LoadOptions, load_fresh
from billion.core.quant import KERNEL_VERSION, model_scheme

pytestmark = pytest.mark.usefixtures("one_thread")
IDS = torch.tensor([[5, 6, 7, 8, 9]])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLION_CACHE_DIR", str(tmp_path))
    return tmp_path


def _logits(loaded) -> torch.Tensor:
    with torch.inference_mode():
        return loaded.model(IDS).logits


def _no_quantizing(*_args, **_kwargs):
    raise AssertionError("quantized again instead of reading the cache")


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_second_load_reads_the_cache(tiny_dir, cache, scheme, monkeypatch):
    first = load_fresh(str(tiny_dir), LoadOptions(quantization=scheme))
    entry = quant_cache.cache_entry(str(tiny_dir), {}, scheme)
    assert entry is not None and entry.parent == cache / "quantized"
    assert (entry / "model.safetensors").is_file() and scheme in entry.name
    monkeypatch.setattr(quant_cache, "quantize_and_store", _no_quantizing)
    second = load_fresh(str(tiny_dir), LoadOptions(quantization=scheme))
    assert model_scheme(second.model) == model_scheme(first.model)
    assert torch.equal(_logits(second), _logits(first))
    # The generation config (stop tokens) comes back too.
    assert second.model.generation_config.eos_token_id == first.model.generation_config.eos_token_id


def test_damaged_cache_is_discarded_and_rebuilt(tiny_dir, cache):
    first = _logits(load_fresh(str(tiny_dir), LoadOptions(quantization="int8")))
    # (That model maps the entry's file: it is gone before the file is damaged in place.)
    entry = quant_cache.cache_entry(str(tiny_dir), {}, "int8")
    (entry / "model.safetensors").write_bytes(b"not safetensors")
    again = load_fresh(str(tiny_dir), LoadOptions(quantization="int8"))
    assert torch.equal(_logits(again), first)
    assert (entry / "model.safetensors").stat().st_size > 1000  # rebuilt


def test_changed_source_weights_get_a_new_entry(tiny_dir, cache, tmp_path_factory):
    import shutil

    copy = tmp_path_factory.mktemp("copy") / "tiny"
    shutil.copytree(tiny_dir, copy)
    a = quant_cache.cache_entry(str(tiny_dir), {}, "int8")
    b = quant_cache.cache_entry(str(copy), {}, "int8")
    assert a != b and a.name.endswith(quant_cache.cache_key("int8"))


def test_cached_model_reads_embedding_rows_from_the_cache_file(tiny_dir, cache):
    from billion.core.quant_blocks import BlockEmbedding

    built = load_fresh(str(tiny_dir), LoadOptions(quantization="int8"))
    # The first load, which quantized and stored the model, also runs on the stored entry.
    assert built.model.get_input_embeddings().rows is not None
    cached = load_fresh(str(tiny_dir), LoadOptions(quantization="int8"))
    table = cached.model.get_input_embeddings()
    assert isinstance(table, BlockEmbedding) and table.rows is not None
    assert table.rows.path == quant_cache.cache_entry(str(tiny_dir), {}, "int8") / "model.safetensors"
    ids = torch.tensor([[0, 5, 5, table.num_embeddings - 1]])
    want = built.model.get_input_embeddings().blocks[ids[0]]
    want = native.dequantize(want, 8, table.embedding_dim, native.QK)[None]
    table.blocks = torch.zeros_like(table.blocks)  # the lookup reads the file, not the mapped table
    assert torch.equal(table(ids), want)
    assert torch.equal(_logits(cached), _logits(built))


@pytest.mark.parametrize("scheme, default, acts", [("int4", 64, "a8"), ("int8", 256, "a16")])
def test_the_group_is_part_of_the_entry_and_comes_back(tiny_dir, cache, scheme, default, acts):
    from billion.core.quant_blocks import BlockLinear

    tokenizer_free = load_fresh(str(tiny_dir), LoadOptions(quantization="none"))
    by_group = {}
    for group in (32, None):
        model = load_fresh(str(tiny_dir), LoadOptions(quantization="none")).model
        entry = quant_cache.cache_entry(str(tiny_dir), {}, scheme, group)
        quant_cache.quantize_and_store(model, tokenizer_free.tokenizer, scheme, entry, str(tiny_dir), group)
        loaded = quant_cache.try_load_cached(str(tiny_dir), {}, scheme, torch.float32, group)
        layers = [m for m in loaded.modules() if isinstance(m, BlockLinear)]
        # int8 rows the default group does not divide take the largest that does
        assert layers and {m.group for m in layers} == {native.fitting_group(m.bits, m.in_features, group) for m in layers}
        assert (group == 32) == ({m.group for m in layers} == {32})
        assert model_scheme(loaded).label == f"{scheme} (groups of {group or default}, {acts}, {native.isa()})"
        by_group[group] = entry
    assert by_group[32] != by_group[None] and "g32" in by_group[32].name and f"g{default}" in by_group[None].name


def test_a_cache_that_cannot_be_written_leaves_the_model_working(tiny_dir, cache, caplog):
    """A full disk while the first start stores its quantized weights (safetensors reports it as
    SafetensorError, not OSError): the model runs from memory, the log says why, nothing half-written stays."""
    from disk_limits import files_capped_at

    reference = _logits(load_fresh(str(tiny_dir), LoadOptions(quantization="int8")))
    entry = quant_cache.cache_entry(str(tiny_dir), {}, "int8")
    weights_file = entry / "model.safetensors"
    size = weights_file.stat().st_size
    shutil.rmtree(entry)
    with files_capped_at(size // 2):
        loaded = load_fresh(str(tiny_dir), LoadOptions(quantization="int8"))
    assert torch.equal(_logits(loaded), reference)
    assert "could not cache the quantized weights" in caplog.text and "File too large" in caplog.text
    assert not entry.exists() and [p.name for p in (cache / "quantized").iterdir()] == []


def test_entries_of_older_kernel_versions_go_when_a_new_one_is_written(tiny_dir, cache):
    """An upgrade that bumps the kernel version writes new entries; the old ones, never read again,
    are removed then (other schemes and other weights stay)."""
    entry = quant_cache.cache_entry(str(tiny_dir), {}, "int8")
    older = entry.parent / entry.name.replace(f"-k{KERNEL_VERSION}-", f"-k{KERNEL_VERSION - 1}-")
    int4 = quant_cache.cache_entry(str(tiny_dir), {}, "int4")
    other = entry.parent / ("0" * 16 + entry.name[16:]).replace(f"-k{KERNEL_VERSION}-", f"-k{KERNEL_VERSION - 1}-")
    for folder in (older, int4, other):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"x")
    load_fresh(str(tiny_dir), LoadOptions(quantization="int8"))
    assert entry.is_dir() and not older.exists()
    assert int4.is_dir() and other.is_dir()


def test_an_entry_that_would_fill_the_disk_is_not_written(tiny_dir, cache, caplog, monkeypatch):
    """The disk would keep less than CACHE_HEADROOM free after the entry (reported so; a disk that
    full is not cheap to make): the entry is skipped before a byte is written, so the store's votes
    keep their room, and the model runs from memory."""
    from billion.core import weights

    reference = _logits(load_fresh(str(tiny_dir), LoadOptions(quantization="int8")))
    entry = quant_cache.cache_entry(str(tiny_dir), {}, "int8")
    shutil.rmtree(entry)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=weights.CACHE_HEADROOM))
    loaded = load_fresh(str(tiny_dir), LoadOptions(quantization="int8"))
    assert torch.equal(_logits(loaded), reference)
    assert "could not cache the quantized weights" in caplog.text and "billion leaves 512 MiB free" in caplog.text
    assert [p.name for p in (cache / "quantized").iterdir()] == []
