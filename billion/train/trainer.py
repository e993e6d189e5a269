"""transformers' Trainer for LoRA runs: loss on answer tokens only, and progress as billion events.

The callback also stops training cleanly at the next step, when asked or when a time slice ends.
Importing this module imports the Trainer stack (and PEFT); only training needs it.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Sequence

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from billion.train.config import TrainConfig, total_steps
from billion.train.events import EventLog, TrainEvent
from billion.train.tokens import IGNORE, TokenizedExample, pad_batch


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


class ProgressCallback(TrainerCallback):
    """Streams train/eval events; stops at the next step when asked or when a deadline nears."""

    def __init__(self, events: EventLog, stop: threading.Event | None = None,
                 deadline: float | None = None, elapsed_before: float = 0.0,
                 checkpoint_s: float | None = None):
        self.events = events
        self.stop = stop
        #: time.monotonic() by which the slice must have saved its checkpoint
        self.deadline = deadline
        #: save a checkpoint at the first step end this many seconds after the last one
        self.checkpoint_s = checkpoint_s
        self._saved_at = time.monotonic()
        self.elapsed_before = elapsed_before
        self.train_seconds = 0.0
        self.steps_timed = 0
        self.tokens_at_start = 0
        self._step_started = 0.0
        self._started = 0.0
        self.stopped_early = False

    @property
    def step_seconds(self) -> float | None:
        return self.train_seconds / self.steps_timed if self.steps_timed else None

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.monotonic()
        self.tokens_at_start = state.num_input_tokens_seen

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self.train_seconds += time.monotonic() - self._step_started
        self.steps_timed += 1
        finishing = state.global_step >= state.max_steps
        late = self.deadline is not None and time.monotonic() + 2 * (self.step_seconds or 0) > self.deadline
        if not finishing and ((self.stop is not None and self.stop.is_set()) or late):
            control.should_training_stop = True
            control.should_save = True
            self.stopped_early = True
        elif (not finishing and self.checkpoint_s is not None
              and time.monotonic() - self._saved_at >= self.checkpoint_s):
            control.should_save = True
        if control.should_save:
            self._saved_at = time.monotonic()

    def tokens_per_s(self, state) -> float | None:
        tokens = state.num_input_tokens_seen - self.tokens_at_start
        return tokens / self.train_seconds if self.train_seconds > 0 and tokens else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        elapsed = self.elapsed_before + time.monotonic() - self._started
        common = dict(step=state.global_step, max_steps=state.max_steps, epoch=float(state.epoch or 0),
                      elapsed_s=elapsed)
        if "loss" in logs:
            left = state.max_steps - state.global_step
            eta = left * self.step_seconds if self.step_seconds else None
            self.events.append(TrainEvent("train", loss=float(logs["loss"]),
                                          learning_rate=float(logs.get("learning_rate", 0.0)),
                                          tokens_per_s=self.tokens_per_s(state), eta_s=eta, **common))
        if "eval_loss" in logs:
            self.events.append(TrainEvent("eval", eval_loss=float(logs["eval_loss"]), **common))
