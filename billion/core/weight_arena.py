"""Quantized weights moved into one anonymous mapping on transparent huge pages (2 MiB).

Why: a decode step streams every weight once, and on 4 KiB pages a 1 GB stream crosses 262k pages,
each a TLB miss and a page walk beside the loads. On 2 MiB pages a TinyLlama-shaped token's int8
calls ran 4-9% faster than on the same weights in 4 KiB pages (paired medians of 30-40 interleaved
rounds, faster in 97 of 110; docs/benchmarks/decode.md). Linux hands huge pages to a mapping that asks for them
(madvise) where transparent_hugepage is "madvise" or "always", most distributions' default; where it
is "never", or not Linux, nothing moves.

Each layer's tensor gets its own storage over the mapping (so safetensors still saves them one by
one), and the mapping lives while any of them does: unloading the model frees it. Weights of the
quantized cache are read from its file straight into the mapping (the cache's own tensors map the
file and are never touched, so they cost no memory): a copy through the file mapping faulted 4 KiB
pages one by one and took 1.7-2.6 s for TinyLlama's 1 GB of int8 weights.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import torch
from torch import nn

from billion.core.quant_blocks import BlockLinear, safetensors_header

log = logging.getLogger(__name__)

HUGE_PAGE = 2 << 20
_ALIGN = 64  # each tensor starts on a cache line
_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_pages_available(setting: str | None = None) -> bool:
    """Whether a madvised mapping gets huge pages here: THP "[always]" or "[madvise]"."""
    if setting is None:
        try:
            setting = _SETTING.read_text()
        except OSError:
            return False
    return hasattr(mmap, "MADV_HUGEPAGE") and ("[always]" in setting or "[madvise]" in setting)


def _tensor_spans(path: Path) -> dict[str, tuple[int, int]]:
    """Where each tensor's bytes lie in a safetensors file."""
    data, header = safetensors_header(path)
    return {name: (data + entry["data_offsets"][0], data + entry["data_offsets"][1])
            for name, entry in header.items() if name != "__metadata__"}


def _advise(arena: mmap.mmap) -> bool:
    """Ask for huge pages; a kernel built without THP (or a sandbox refusing madvise) says no."""
    try:
        arena.madvise(mmap.MADV_HUGEPAGE)
        return True
    except OSError as exc:
        log.info("no huge pages for the weights (%s): they stay where they are", exc)
        return False


def _read_into(fd: int, start: int, target: memoryview) -> None:
    done = 0
    while done < len(target):
        got = os.preadv(fd, [target[done:]], start + done)
        if not got:
            raise OSError("the quantized cache file ended early: the entry is damaged")
        done += got


def _layers(model: nn.Module) -> list[tuple[str, BlockLinear]]:
    seen: set[int] = set()
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, BlockLinear) and id(module) not in seen:
            seen.add(id(module))
            layers.append((name, module))
    return layers


def move_to_huge_pages(model: nn.Module, source: Path | None = None) -> int:
    """Put every BlockLinear's weight into one huge-page mapping; returns the bytes moved (0 where
    huge pages are not available here). source: the safetensors file the model's weights were
    loaded from, read again into the mapping instead of copying the loaded tensors."""
    layers = _layers(model)
    if not layers or not huge_pages_available():
        return 0
    sizes = [m.blocks.numel() for _, m in layers]
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // _ALIGN) * _ALIGN
    # a huge page needs a 2 MiB-aligned range: map one page extra and start at the aligned address
    try:
        arena = mmap.mmap(-1, -(-total // HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE,
                          flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError as exc:  # no address space or memory for it: the weights stay where they are
        log.info("no mapping for the weights (%s)", exc)
        return 0
    if not _advise(arena):
        arena.close()
        return 0
    view = memoryview(arena)
    skip = -ctypes.addressof(ctypes.c_char.from_buffer(arena)) % HUGE_PAGE
    spans = _tensor_spans(source) if source is not None else {}
    fd = os.open(source, os.O_RDONLY) if source is not None else -1
    reads = []
    for (name, module), offset, size in zip(layers, offsets, sizes):
        slot = view[skip + offset:skip + offset + size]
        new = torch.frombuffer(slot, dtype=torch.uint8).view(module.blocks.shape)
        span = spans.get(f"{name}.blocks")
        if span is not None and span[1] - span[0] == size:
            reads.append(partial(_read_into, fd, span[0], slot))
        else:
            new.copy_(module.blocks)  # in memory already (a model quantized here): torch copies
        module.blocks = new
    try:
        # two threads fault in the huge pages and read at once: 1 GB took 0.2-0.6 s against 0.3-1.5
        with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
            list(pool.map(lambda read: read(), reads))
    finally:
        if fd >= 0:
            os.close(fd)
    log.info("moved %d MiB of quantized weights onto huge pages", total >> 20)
    return total
