"""LoRA on a loaded model: which linear layers it wraps, and fresh adapters on them (through PEFT)."""

from __future__ import annotations

import sys

import torch

from billion.core.errors import BillionError
from billion.train.config import TrainConfig

# Last names of attention projections across the families billion knows (Llama, Gemma, SmolLM,
# StableLM: q/k/v/o_proj; GPT-NeoX: query_key_value + dense; GPT-2 style: c_attn, c_proj).
ATTENTION_NAMES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "query_key_value", "dense",
                             "qkv_proj", "out_proj", "c_attn", "c_proj", "Wqkv", "query", "key", "value"})


def linear_names(model: torch.nn.Module) -> dict[str, str]:
    """Full module path -> last name, for every linear layer LoRA can wrap (bitsandbytes ones too)."""
    kinds: tuple[type, ...] = (torch.nn.Linear,)
    bnb = sys.modules.get("bitsandbytes")  # a model with its layers imported it; else none are here
    if bnb is not None:
        kinds += (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
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
