"""LoRA training speed: billion's engine vs a plain PEFT + transformers Trainer loop, same run.

Same base model, same tokenized rows (prompt tokens masked), same LoRA settings, batch size,
learning rate, epochs and compute precision; no evaluation in either timed loop. Prints one
table: training tokens/s of each and their ratio, then the engine's full run (load, eval loss
before/after, before/after answers, adapter saved) against the 3-minute goal.

    python benchmarks/lora.py                      # SmolLM2-135M-Instruct, 100 examples, 3 epochs
    python benchmarks/lora.py --epochs 0.2         # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from billion.core.paths import ASSETS  # noqa: E402
from billion.train.data import load_dataset  # noqa: E402
from billion.train.config import TrainConfig, resolve_precision, total_steps  # noqa: E402
from billion.train.lora import target_modules  # noqa: E402

DATA = ASSETS / "sample_lora" / "pirate.jsonl"
PROMPTS = ASSETS / "sample_lora" / "held_out.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--cutoff", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--prompts", type=int, default=4, help="held-out prompts answered before/after")
    parser.add_argument("--skip-full-run", action="store_true")
    parser.add_argument("--skip-speed", action="store_true", help="only the full run (before/after answers)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    return parser.parse_args()


def baseline(config: TrainConfig, precision: str, rows) -> float:
    """Seconds of Trainer.train() for the textbook loop: fp32 weights, autocast, Seq2Seq collator."""
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    from billion.core import loading
    from billion.core.registry import resolve

    location, _ = loading.weights_location(resolve(config.model))

    tokenizer = AutoTokenizer.from_pretrained(location)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=target_modules(model, config.target_modules), task_type="CAUSAL_LM")
    torch.manual_seed(config.seed)
    model = get_peft_model(model, lora)
    features = [{"input_ids": list(r.input_ids), "labels": list(r.labels),
                 "attention_mask": [1] * len(r.input_ids)} for r in rows]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=config.batch_size,
                                 learning_rate=config.learning_rate, num_train_epochs=config.epochs,
                                 lr_scheduler_type="cosine", warmup_steps=int(config.warmup_fraction * total_steps(len(rows), config)),
                                 bf16=precision == "bf16", use_cpu=True, logging_steps=1, save_strategy="no",
                                 report_to="none", disable_tqdm=True, seed=config.seed)
        trainer = Trainer(model=model, args=args, train_dataset=features,
                          data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100))
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started


def engine(config: TrainConfig, examples) -> tuple[float, object]:
    """Seconds of the engine's training loop (TrainingSession.train) on the same rows."""
    from billion.train.session import TrainingSession

    with tempfile.TemporaryDirectory() as out:
        session = TrainingSession(config, examples, Path(out))
        started = time.perf_counter()
        session.train()
        return time.perf_counter() - started, session


def full_run(config: TrainConfig, dataset, prompts: list[str]):
    """The engine end to end, as the CLI and the UI run it."""
    from billion.train.runs import create_run, train_slice

    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        run_dir = create_run(config, dataset, prompts, root=Path(root))
        result = train_slice(run_dir)
        return time.perf_counter() - started, result


def speed_table(args, config: TrainConfig, precision: str, dataset) -> None:
    """The engine's training loop against the PEFT + Trainer loop, one table."""
    ours_s, session = engine(config, dataset.examples)
    rows = session.train_rows
    tokens = sum(len(r.input_ids) for r in rows) * args.epochs
    del session
    theirs_s = baseline(config, precision, rows)
    print(f"\n{args.model}, {len(rows)} examples x {args.epochs:g} epochs = {tokens:.0f} training tokens "
          f"(cutoff {args.cutoff}), batch {args.batch_size}, LoRA r={args.rank} attention, {precision}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, {date.today()}\n")
    print("| loop | train s | tokens/s | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| PEFT + Trainer (reference) | {theirs_s:.1f} | {tokens / theirs_s:.0f} | 1.00x |")
    print(f"| billion engine | {ours_s:.1f} | {tokens / ours_s:.0f} | {theirs_s / ours_s:.2f}x |")


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("BILLION_DATA_DIR", tempfile.mkdtemp(prefix="billion-bench-"))
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    precision = resolve_precision(args.precision, torch.device("cpu"))
    config = TrainConfig(model=args.model, rank=args.rank, alpha=2 * args.rank, learning_rate=args.lr,
                         epochs=args.epochs, cutoff=args.cutoff, batch_size=args.batch_size,
                         eval_fraction=0.0, precision=precision, device="cpu")
    dataset = load_dataset(args.data)
    if not args.skip_speed:
        speed_table(args, config, precision, dataset)
    if args.skip_full_run:
        return 0
    prompts = json.loads(PROMPTS.read_text())[:args.prompts]
    full_config = TrainConfig(**{**config.to_dict(), "eval_fraction": 0.1})
    total_s, result = full_run(full_config, dataset, prompts)
    print(f"\nFull engine run (load, eval before/after, {len(prompts)} before/after answers, save): "
          f"{total_s:.0f} s (goal <= 180 s); {result.train_seconds:.0f} s training, "
          f"eval loss {result.eval_loss_before:.3f} -> {result.eval_loss_after:.3f}")
    for pair in result.answers:
        print(f"\n### {pair.prompt}\n- before: {pair.before}\n- after: {pair.after}")
    print(f"\nBefore/after {result.answer_sampling}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
