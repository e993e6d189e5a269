"""LoRA run settings: one typed config the UI, the CLI and the tests fill, and the precision choice.

Light on purpose (torch only): the UI imports it. The model side lives in billion.train.lora, the
Trainer side in billion.train.trainer, the whole run in billion.train.session.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch

from billion.core.errors import BillionError
from billion.core.registry import DEFAULT_MODEL

Precision = Literal["auto", "fp32", "bf16", "fp16"]
TARGET_PRESETS = ("attention", "all-linear")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a LoRA run; the UI, the CLI and the tests all build this."""

    #: base model: registry alias, hub id, local folder or .gguf
    model: str = DEFAULT_MODEL
    #: LoRA rank r: the size of the low-rank update (more = more capacity, more memory)
    rank: int = 16
    #: LoRA alpha: the update is scaled by alpha / rank
    alpha: int = 32
    #: dropout on the LoRA branch's input
    dropout: float = 0.05
    #: "attention" (q/k/v/o projections), "all-linear", or comma-separated module names
    target_modules: str = "attention"
    #: peak learning rate (linear warmup, then cosine decay)
    learning_rate: float = 1e-3
    #: passes over the training rows (ignored when max_steps > 0)
    epochs: float = 3.0
    #: optimizer steps to run; 0 = use epochs
    max_steps: int = 0
    #: tokens per example; longer rows are truncated (with a warning)
    cutoff: int = 256
    #: examples per forward pass
    batch_size: int = 4
    #: forward passes per optimizer step (effective batch = batch_size * grad_accum)
    grad_accum: int = 1
    #: share of rows held out for eval loss (0 = no eval)
    eval_fraction: float = 0.1
    #: seeds the LoRA init, the data split and the shuffle
    seed: int = 0
    #: recompute activations in backward: less memory, about 30% slower
    gradient_checkpointing: bool = False
    #: "auto" (bf16 autocast where it is measured faster), "fp32", "bf16", or "fp16" (CUDA only)
    precision: Precision = "auto"
    #: QLoRA: the frozen base in 4-bit NF4 through bitsandbytes
    qlora: bool = False
    #: "auto" (CUDA, then MPS, then CPU) or a torch device string
    device: str = "auto"
    #: share of steps spent warming the learning rate up
    warmup_fraction: float = 0.05
    #: evaluate every this many steps; 0 = about six times per run
    eval_every: int = 0

    def validate(self) -> "TrainConfig":
        checks = [
            (self.rank >= 1, f"LoRA rank must be at least 1 (got {self.rank})."),
            (self.alpha > 0, f"LoRA alpha must be positive (got {self.alpha})."),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1) (got {self.dropout})."),
            (self.learning_rate > 0, f"learning rate must be positive (got {self.learning_rate})."),
            (self.epochs > 0 or self.max_steps > 0, "set epochs > 0 or max_steps > 0."),
            (self.max_steps >= 0, f"max_steps must be 0 (use epochs) or more (got {self.max_steps})."),
            (self.cutoff >= 8, f"cutoff length must be at least 8 tokens (got {self.cutoff})."),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch size and gradient accumulation must be >= 1."),
            (0 <= self.eval_fraction < 0.9, f"eval fraction must be in [0, 0.9) (got {self.eval_fraction})."),
            (self.precision in ("auto", "fp32", "bf16", "fp16"),
             f"unknown precision {self.precision!r}: use auto, fp32, bf16 or fp16."),
            (bool(self.target_modules.strip()), "target modules are empty: use attention or all-linear."),
        ]
        for ok, message in checks:
            if not ok:
                raise BillionError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """A checked config from form or command-line values (a form's numbers arrive as floats).

        Keys that are not fields are ignored (a whole `vars(args)` may be passed); missing or
        empty ones keep their defaults, except alpha, which follows the rank (alpha = 2 x rank).
        """
        if not values.get("model", DEFAULT_MODEL):
            raise BillionError("Pick a base model first (the list shows the models that can load here).")
        defaults = cls()
        changes: dict[str, Any] = {}
        for f in fields(cls):
            value = values.get(f.name)
            if value is None or value == "":
                continue
            kind = type(getattr(defaults, f.name))
            try:
                changes[f.name] = value if kind is str else kind(value)
            except (TypeError, ValueError):
                raise BillionError(f"{f.name} must be a {kind.__name__} (got {value!r}).") from None
        changes.setdefault("alpha", 2 * changes.get("rank", defaults.rank))
        return cls(**changes).validate()


# ---- precision ----------------------------------------------------------------------------------

def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPU multiplies bf16 in hardware (Linux /proc/cpuinfo flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.lru_cache(maxsize=1)
def cpu_bf16_is_faster() -> bool:
    """Whether bf16 autocast beats fp32 for training on this CPU.

    Native bf16 hardware decides it (on this project's AVX-512 BF16 machine a LoRA step of
    SmolLM2-135M ran ~1.5x faster under bf16, see docs/benchmarks/lora.md). Elsewhere a matmul
    shaped like a training step is timed both ways, alternating, best of seven.
    """
    if cpu_has_native_bf16():
        return True
    x = torch.randn(256, 576, requires_grad=True)
    w = torch.randn(576, 1536)

    def once(autocast: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            (x @ w).sum().backward()
        return time.perf_counter() - start

    once(True), once(False)  # warm both paths up
    times = [(once(True), once(False)) for _ in range(7)]
    return min(t[0] for t in times) < 0.8 * min(t[1] for t in times)


def resolve_precision(precision: Precision, device: torch.device) -> Literal["fp32", "bf16", "fp16"]:
    if precision == "fp16" and device.type != "cuda":
        raise BillionError("fp16 training needs a CUDA GPU: use bf16 or fp32 on this machine.")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BillionError("This GPU has no bf16: use fp16 or fp32.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_bf16_is_faster() else "fp32"
    return "fp32"


def base_dtype(precision: str) -> str:
    """The dtype to load the frozen base in: the training precision itself.

    Under autocast every matmul rounds the weights to bf16/fp16 anyway, so storing the frozen base
    in that type gives the same products without a cast per step, with half the memory. The LoRA
    weights stay fp32 (PEFT upcasts adapters), so the optimizer still updates fp32 values.
    """
    return precision


# ---- steps ----------------------------------------------------------------------------------------

def steps_per_epoch(train_rows: int, config: TrainConfig) -> int:
    return max(1, math.ceil(math.ceil(train_rows / config.batch_size) / config.grad_accum))


def total_steps(train_rows: int, config: TrainConfig) -> int:
    if config.max_steps > 0:
        return config.max_steps
    return max(1, math.ceil(steps_per_epoch(train_rows, config) * config.epochs))
