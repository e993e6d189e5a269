"""LoRA fine-tuning on transformers' Trainer: the config, the model, the trainer and its progress events.

Transformers and PEFT do the training; this module adds what they lack for billion: one typed
config, a precision choice measured on this machine, loss computed on answer tokens only (the LM
head skips prompt positions), and progress events a UI can poll from another thread.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from billion.core.errors import BillionError
from billion.core.registry import DEFAULT_MODEL
from billion.train.tokens import IGNORE, TokenizedExample, pad_batch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
# Last names of attention projections across the families billion knows (Llama, Gemma, SmolLM,
# StableLM: q/k/v/o_proj; GPT-NeoX: query_key_value + dense; GPT-2 style: c_attn, c_proj).
ATTENTION_NAMES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "query_key_value", "dense",
                             "qkv_proj", "out_proj", "c_attn", "c_proj", "Wqkv", "query", "key", "value"})
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


# ---- LoRA ---------------------------------------------------------------------------------------

def linear_names(model: torch.nn.Module) -> dict[str, str]:
    """Full module path -> last name, for every linear layer LoRA can wrap (bitsandbytes ones too)."""
    kinds = (torch.nn.Linear,)
    try:
        import bitsandbytes as bnb
        kinds += (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    except Exception:  # bitsandbytes is optional
        pass
    return {path: path.rsplit(".", 1)[-1] for path, module in model.named_modules() if isinstance(module, kinds)}


def target_modules(model: torch.nn.Module, preset: str) -> list[str] | str:
    """Module names for LoRA: a preset resolved against this model, or the names given."""
    if preset == "all-linear":
        return "all-linear"
    names = linear_names(model)
    if preset == "attention":
        found = sorted({last for path, last in names.items() if last in ATTENTION_NAMES
                        and ("attn" in path.lower() or "attention" in path.lower())})
        if not found:
            raise BillionError("No attention projections found in this model: use target modules "
                               "'all-linear' or name the modules (comma-separated).")
        return found
    wanted = [n.strip() for n in preset.split(",") if n.strip()]
    missing = [n for n in wanted if n not in set(names.values())]
    if missing:
        raise BillionError(f"Module(s) {', '.join(missing)} are not linear layers of this model; it has: "
                           f"{', '.join(sorted(set(names.values())))}.")
    return wanted


def keep_4bit_differentiable(model: torch.nn.Module) -> None:
    """Keep bitsandbytes 4-bit layers on the path that has a backward.

    On CPUs with AVX-512 BF16, bitsandbytes (0.50) repacks a 4-bit weight for fast inference the
    first time its layer runs in eval mode, and never unpacks it when training resumes; the repacked
    kernel has no backward, so gradients through the frozen base would silently be wrong.
    """
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
            state = module.weight.quant_state
            if getattr(state, "packing_format_for_cpu", False):
                module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                    module.weight.data, state)


def attach_lora(model: torch.nn.Module, config: TrainConfig):
    """The model with fresh LoRA adapters; only their weights are trainable."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.qlora:
        keep_4bit_differentiable(model)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=target_modules(model, config.target_modules), bias="none",
                      task_type="CAUSAL_LM")
    torch.manual_seed(config.seed)
    return get_peft_model(model, lora)


# ---- trainer ------------------------------------------------------------------------------------

class AnswerOnlyTrainer(Trainer):
    """A Trainer whose loss runs the LM head only where a label is trained.

    Prompt positions never reach the loss, so computing their logits (hidden x vocabulary, the
    largest matmul of a small model) is wasted work; `logits_to_keep` takes the positions to keep.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        targets = labels[:, 1:]
        keep = targets.ne(IGNORE).any(dim=0).nonzero().squeeze(1)
        outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
        logits = outputs.logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 targets[:, keep].reshape(-1).to(logits.device),
                                                 ignore_index=IGNORE, reduction="sum")
        # Dividing by the tokens of the whole accumulated batch weighs every answer token equally.
        count = num_items_in_batch if num_items_in_batch is not None else targets.ne(IGNORE).sum()
        loss = loss / count
        return (loss, outputs) if return_outputs else loss


def as_features(examples: Sequence[TokenizedExample]) -> list[dict[str, list[int]]]:
    return [{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in examples]


def steps_per_epoch(train_rows: int, config: TrainConfig) -> int:
    return max(1, math.ceil(math.ceil(train_rows / config.batch_size) / config.grad_accum))


def total_steps(train_rows: int, config: TrainConfig) -> int:
    if config.max_steps > 0:
        return config.max_steps
    return max(1, math.ceil(steps_per_epoch(train_rows, config) * config.epochs))


def training_arguments(config: TrainConfig, output_dir: str, precision: str, device: torch.device,
                       train_rows: int, has_eval: bool) -> TrainingArguments:
    steps = total_steps(train_rows, config)
    eval_every = config.eval_every or max(1, steps // 6)
    return TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate, num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        lr_scheduler_type="cosine", warmup_steps=int(config.warmup_fraction * steps), weight_decay=0.0,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device.type == "cpu",
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        logging_strategy="steps", logging_steps=1, eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_every, prediction_loss_only=True, save_strategy="no", save_total_limit=1,
        report_to="none", disable_tqdm=True, seed=config.seed, data_seed=config.seed,
        include_num_input_tokens_seen="non_padding", remove_unused_columns=False,
        dataloader_num_workers=0, dataloader_pin_memory=False,
        # Rows of similar length share a batch, so little compute goes to padding.
        train_sampling_strategy="group_by_length" if config.batch_size > 1 else "random",
    )


def build_trainer(model, tokenizer, train: Sequence[TokenizedExample], evaluation: Sequence[TokenizedExample],
                  config: TrainConfig, output_dir: str, precision: str, device: torch.device,
                  callbacks: Sequence[TrainerCallback] = ()) -> AnswerOnlyTrainer:
    args = training_arguments(config, output_dir, precision, device, len(train), bool(evaluation))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = AnswerOnlyTrainer(model=model, args=args, train_dataset=as_features(train),
                                eval_dataset=as_features(evaluation) or None,
                                data_collator=functools.partial(pad_batch, pad_id=pad_id),
                                callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)  # progress goes to our events, not stdout
    return trainer
