"""What a training run may take, checked before anything expensive starts: steps, memory, runs at once.

The memory estimate is the peak of one training step (the frozen base, the activations kept for the
backward pass, the logits of the trained positions, the trainer's own overhead), from the model's
shape and the data's longest rows, meant to stay above the real peak (its constants are upper
bounds). It is not yet compared with measured peaks by a benchmark: a follow-up.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from billion.core.errors import BillionError
from billion.core.limits import Limits
from billion.core.registry import ModelSpec, resolve
from billion.train.config import TrainConfig, total_steps
from billion.train.data import Example

GB = 2**30
#: fixed cost of a training step beyond the weights and activations (optimizer, autograd buffers,
#: the allocator's slack)
STEP_OVERHEAD_BYTES = int(0.7 * GB)
#: tokens a row may take, from its characters: BPE vocabularies average 3-5 characters a token on
#: English text, so 2 is an upper bound there; the chat template adds a few tokens a message
CHARS_PER_TOKEN = 2
TEMPLATE_TOKENS_PER_MESSAGE = 32


@dataclass(frozen=True)
class Architecture:
    """What the activation memory of a decoder depends on."""

    params: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int
    #: attention that keeps its (batch x heads x length x length) scores for the backward pass
    eager_attention: bool = False


@dataclass(frozen=True)
class MemoryEstimate:
    """The peak memory of one training step, in bytes."""

    weights_bytes: int
    activation_bytes: int
    overhead_bytes: int
    #: rows in one forward pass x their padded length
    rows_per_pass: int
    tokens_per_row: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes + self.overhead_bytes


def _config_json(spec: ModelSpec) -> dict | None:
    """The model's config.json where it is already on this machine (nothing is downloaded)."""
    from billion.core import weights
    from billion.core.hub_cache import complete_snapshot

    source = spec.source
    folders = []
    if source.kind == "package_gguf":
        folders.append(weights.converted_dir(weights.package_gguf_path(spec)))
    elif source.kind == "local":
        path = Path(source.location)
        folders.append(weights.converted_dir(path) if path.suffix == ".gguf" else path)
    else:
        folders.append(complete_snapshot(spec.hub_id, source.revision or "main"))
    for folder in folders:
        try:
            return json.loads((Path(folder) / "config.json").read_text()) if folder else None
        except (OSError, ValueError):
            continue
    return None


def architecture(spec: ModelSpec) -> Architecture:
    """From the model's config.json when it is here; else a conservative guess from its size
    (layers x hidden ~ 1.5 sqrt(parameters) holds for SmolLM2, TinyLlama, Pythia and Llama 3.2)."""
    params = int(spec.params_m * 1e6)
    config = _config_json(spec) or {}
    config = config.get("text_config", config)
    try:
        hidden = int(config["hidden_size"])
        return Architecture(params, int(config["num_hidden_layers"]), hidden,
                            int(config.get("intermediate_size") or 4 * hidden),
                            int(config["num_attention_heads"]), int(config["vocab_size"]),
                            eager_attention=config.get("model_type", "").startswith("gemma"))
    except (KeyError, TypeError, ValueError):
        hidden = 1024
        layers = max(1, round(1.5 * math.sqrt(params) / hidden))
        return Architecture(params, layers, hidden, 4 * hidden, 16, 128_000)


def row_tokens(example: Example) -> int:
    """An upper estimate of a row's tokens, before any tokenizer is loaded."""
    chars = sum(len(str(m.get("content", ""))) for m in example.messages)
    return chars // CHARS_PER_TOKEN + TEMPLATE_TOKENS_PER_MESSAGE * len(example.messages)


def train_rows(rows: int, eval_fraction: float) -> int:
    """How many rows train (the rest are held out), as billion.train.session.split_rows splits them."""
    held = min(rows - 1, max(1, round(eval_fraction * rows))) if eval_fraction > 0 and rows > 1 else 0
    return rows - held


def estimate_memory(config: TrainConfig, examples: Sequence[Example], arch: Architecture) -> MemoryEstimate:
    """The peak of one step: rows of similar length share a batch, so the longest rows together."""
    longest = min(config.cutoff, max((row_tokens(e) for e in examples), default=config.cutoff))
    rows = max(1, min(config.batch_size, train_rows(len(examples), config.eval_fraction)))
    tokens = rows * longest
    low_precision = config.precision in ("bf16", "fp16")
    element = 2 if low_precision else 4
    # Per token and layer: the inputs the backward pass needs (norms, q/k/v, attention output,
    # LoRA inputs: ~20 x hidden) and the MLP's (gate, up, activation: 3 x intermediate).
    kept = tokens * arch.layers * (20 * arch.hidden + 3 * arch.intermediate) * element
    # The trained positions' logits in fp32, their softmax and its gradient.
    logits = tokens * arch.vocab * 4 * 3
    scores = rows * arch.heads * longest**2 * arch.layers * element * 2 if arch.eager_attention else 0
    per_param = 0.5 if config.qlora else (2 if low_precision else 4)
    return MemoryEstimate(int(arch.params * per_param), kept + logits + scores, STEP_OVERHEAD_BYTES,
                          rows, longest)


def memory_allowance(free_bytes: int, limits: Limits) -> int:
    """The bytes one run may take: its share of the memory free when it starts (and the fixed cap)."""
    share = int(free_bytes * limits.train_memory_share)
    return min(share, int(limits.train_memory_gb * GB)) if limits.train_memory_gb > 0 else share


def check_memory(estimate: MemoryEstimate, free_bytes: int, limits: Limits, config: TrainConfig) -> None:
    """Refuse a run whose estimated peak does not fit its share of the free memory."""
    allowed = memory_allowance(free_bytes, limits)
    if estimate.total_bytes <= allowed:
        return
    raise BillionError(
        f"This run would need about {estimate.total_bytes / GB:.1f} GB ({estimate.rows_per_pass} rows "
        f"of up to {estimate.tokens_per_row} tokens in each pass: batch size {config.batch_size}, cutoff "
        f"{config.cutoff}), but a run may take {allowed / GB:.1f} GB here (at most "
        f"{limits.train_memory_share:.0%} of the {free_bytes / GB:.1f} GB free): lower the batch size "
        "or the cutoff (gradient accumulation keeps the effective batch without the memory).")


def check_steps(config: TrainConfig, rows: int, limits: Limits) -> int:
    """The run's optimizer steps, refused over the limit. Returns them."""
    steps = total_steps(train_rows(rows, config.eval_fraction), config)
    if steps > limits.train_max_steps:
        asked = f"max steps {config.max_steps}" if config.max_steps else f"{config.epochs:g} epochs"
        raise BillionError(f"This run would take {steps:,} steps ({asked}); a run here takes at most "
                           f"{limits.train_max_steps:,}: lower max steps or epochs.")
    return steps


def check_run(config: TrainConfig, examples: Sequence[Example], limits: Limits,
              free_bytes: int) -> MemoryEstimate:
    """Every check a run passes before it starts; its memory estimate."""
    check_steps(config, len(examples), limits)
    estimate = estimate_memory(config, examples, architecture(resolve(config.model)))
    check_memory(estimate, free_bytes, limits, config)
    return estimate
