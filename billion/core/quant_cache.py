"""CPU int8/int4 models: quantize once, then load the quantized weights from the cache.

The first load reads the float weights, quantizes them (billion.core.quant) and writes the
quantized state to ~/.cache/billion/quantized/<source fingerprint>-<scheme>-k<kernel version>/;
later loads build an empty skeleton from config.json and read that state (about a second for a
135M model), with the layers' weights copied onto huge pages (billion.core.weight_arena). The key holds the CPU capability too (torch packs int4 differently for AVX2 and
AVX512). An entry that fails to load is removed and rebuilt from the float weights.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from billion.core import weights
from billion.core.quant import calibration_ids, quantize_model, scheme_for
from billion.core.quant_blocks import BlockEmbedding, RowFile
from billion.core.weight_arena import move_to_huge_pages

log = logging.getLogger(__name__)


def local_folder(location: str, hub_kwargs: dict[str, Any]) -> Path | None:
    """The folder holding the weights, where it is on this machine (a hub snapshot already cached)."""
    if Path(location).is_dir():
        return Path(location)
    try:
        from transformers.utils import cached_file

        config = cached_file(location, "config.json", revision=hub_kwargs.get("revision"),
                             local_files_only=True)
        return Path(config).parent if config else None
    except Exception:  # not cached yet: the first load downloads, the cache is keyed after it
        return None


def cache_key(scheme: str, group: int | None = None) -> str:
    """Scheme (int4: with its group), kernel version and CPU capability: the int4 packing differs
    between AVX2 and AVX512."""
    return f"{scheme_for(scheme, group).key}-{torch.backends.cpu.get_cpu_capability().lower()}"


def cache_entry(location: str, hub_kwargs: dict[str, Any], scheme: str, group: int | None = None) -> Path | None:
    folder = local_folder(location, hub_kwargs)
    return weights.quantized_dir(folder, cache_key(scheme, group)) if folder else None


def load_cached(entry: Path, location: str, hub_kwargs: dict[str, Any], scheme: str,
                dtype: torch.dtype, config=None, group: int | None = None):
    """The quantized model from a cache entry (raises on a damaged or mismatched entry). config:
    the model's config when it is not in `location` (random-weight models)."""
    from accelerate import init_empty_weights
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    config = config or AutoConfig.from_pretrained(location, **hub_kwargs)
    with init_empty_weights(include_buffers=False):  # parameters on meta; rotary buffers real
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    quantize_model(model, scheme, inplace=True, empty=True, group_size=group)
    result = model.load_state_dict(load_file(str(entry / "model.safetensors")), strict=True, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"state mismatch: missing {result.missing_keys[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]}")
    left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if left:
        raise ValueError(f"weights missing from the cache: {left[:3]}")
    read_embedding_rows_from(model, entry / "model.safetensors")
    move_to_huge_pages(model, entry / "model.safetensors")
    try:
        model.generation_config = GenerationConfig.from_pretrained(location, **hub_kwargs)
    except OSError:  # no generation_config.json: the one from config stays
        pass
    return model.eval()


def read_embedding_rows_from(model, path: Path) -> None:
    """Input-embedding lookups read their rows from the cache file: a prompt needs a few rows of a
    table that is the size of several layers (TinyLlama 66 MiB, Llama-3.2-1B 266 MiB at int8)."""
    if not hasattr(os, "pread"):  # Windows: the mapped table serves lookups
        return
    for name, module in model.named_modules():
        if isinstance(module, BlockEmbedding):
            module.read_rows_from(RowFile.in_safetensors(path, f"{name}.blocks"))


def quantize_and_store(model, tokenizer, scheme: str, entry: Path | None, source: str, group: int | None = None):
    """Quantize a float CPU model in place, and write the cache entry when there is one."""
    started = time.perf_counter()
    quantize_model(model, scheme, inplace=True, calibration=calibration_ids(tokenizer), group_size=group)
    seconds = time.perf_counter() - started
    if entry is not None:
        try:
            weights.save_quantized(model, entry, {"source": source, "scheme": cache_key(scheme, group),
                                                  "quantize_seconds": round(seconds, 2)})
        except OSError as exc:  # a full or read-only disk costs the next start time, nothing else
            log.warning("could not cache the quantized weights in %s: %s", entry, exc)
    return model


def read_entry(entry: Path, location: str, hub_kwargs: dict[str, Any], scheme: str, dtype: torch.dtype,
               config=None, group: int | None = None):
    """The quantized model in a cache entry, or None (no entry, or a damaged one, now removed)."""
    if not (entry / weights.QUANT_MARKER).is_file():
        return None
    try:
        return load_cached(entry, location, hub_kwargs, scheme, dtype, config=config, group=group)
    except Exception as exc:  # a damaged entry: the caller rebuilds it
        log.warning("quantized cache %s unreadable (%s: %s)", entry, type(exc).__name__, exc)
        weights.discard_quantized(entry)
        return None


def try_load_cached(location: str, hub_kwargs: dict[str, Any], scheme: str, dtype: torch.dtype,
                    group: int | None = None):
    """The cached quantized model, or None (no entry yet, or a damaged one, now removed)."""
    entry = cache_entry(location, hub_kwargs, scheme, group)
    return read_entry(entry, location, hub_kwargs, scheme, dtype, group=group) if entry else None
