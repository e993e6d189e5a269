"""A model's memory measured in isolation: a child process loads only that model and runs one timed
generation, so its peak resident memory above the child's own baseline (Python, torch) is the
model's weights plus its working memory, not the server's RSS with every other model in it.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

#: the child imports torch and loads one model; past this it is given up on
CHILD_TIMEOUT_S = 300.0
KIND = "isolated_process_peak"


@dataclass(frozen=True)
class IsolatedMemory:
    """Bytes of the model's parameters, and its peak resident memory above the child's baseline."""

    weight_bytes: int
    peak_bytes: int


def _hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return psutil.Process().memory_info().rss


def _child(name: str, options: Any, random_weights: bool, prompt_tokens: int,
           new_tokens: int) -> IsolatedMemory:
    import torch

    from billion.bench.speed import fixed_length_prompt, model_device, timed_greedy_run
    from billion.core.loading import ModelCache

    torch.set_num_threads(1)  # memory, not speed: leave the cores to the server
    baseline = psutil.Process().memory_info().rss
    if random_weights:
        from billion.bench.random_weights import random_model
        loaded = random_model(name, options)
    else:
        loaded = ModelCache(1 << 62).load(name, options)
    Path("/proc/self/clear_refs").write_text("5")  # forget the loader's transient copies
    input_ids = fixed_length_prompt(loaded.tokenizer, prompt_tokens, model_device(loaded.model))
    timed_greedy_run(loaded.model, input_ids, new_tokens)
    return IsolatedMemory(loaded.weight_bytes, max(_hwm() - baseline, 0))


def isolated_memory(name: str, options: Any, *, random_weights: bool = False, prompt_tokens: int = 128,
                    new_tokens: int = 16) -> IsolatedMemory:
    """Load `name` alone in a spawned child (Linux /proc needed) and measure it there."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        job = pool.apply_async(_child, (name, options, random_weights, prompt_tokens, new_tokens))
        return job.get(CHILD_TIMEOUT_S)
