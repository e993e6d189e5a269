"""One training run's model in one process: load, attach LoRA, probe, train (resumably), compare, save.

A run lives in a folder (see billion.train.folder); a TrainingSession is that folder loaded into
memory. The base model is a private copy, never the shared model cache: LoRA layers are written
into the model they wrap.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import psutil
import torch
from transformers import TrainerCallback

from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings
from billion.train.data import Example, describe_problems
from billion.train.tokens import TokenizedExample, tokenize_dataset
from billion.train.events import AnswerPair, EventLog, TrainEvent
from billion.train.config import TrainConfig, base_dtype, resolve_precision, steps_per_epoch, total_steps
from billion.train.lora import attach_lora
from billion.train.trainer import ProgressCallback, build_trainer


@dataclass(frozen=True)
class ProbeResult:
    """A few real training steps, timed, before the run: the basis for the ETA and warnings."""

    steps: int
    #: seconds per optimizer step after the first (warm-up) step
    step_s: float
    tokens_per_s: float
    #: process RSS high-water mark on CPU, CUDA max allocated on GPU
    peak_memory_bytes: int
    available_memory_bytes: int
    total_steps: int
    #: estimated seconds for the whole run, evaluation included
    eta_s: float
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class SliceResult:
    finished: bool
    #: optimizer steps done so far, over all slices
    step: int
    max_steps: int
    seconds: float
    step_s: float | None
    #: the checkpoint the next slice resumes from (None once finished)
    checkpoint: str | None
    stopped: bool = False


def split_rows(items: Sequence, fraction: float, seed: int) -> tuple[list, list]:
    """(train, eval): a seeded shuffle, with at least one eval row when fraction > 0 and rows allow."""
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = min(len(items) - 1, max(1, round(fraction * len(items)))) if fraction > 0 and len(items) > 1 else 0
    held = set(order[:n_eval])
    return ([x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held])


def load_private(config: TrainConfig, precision_dtype: str):
    """A LoadedModel of the base that nothing else shares (LoRA modifies it in place)."""
    from billion.core import loading
    from billion.core.registry import resolve

    options = loading.LoadOptions(device=config.device, dtype=precision_dtype,
                                  quantization="nf4" if config.qlora else "none")
    return loading.load_fresh(resolve(config.model), options)


def current_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return psutil.Process().memory_info().rss


def free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


class TrainingSession:
    """A base model with LoRA attached, the tokenized rows, and the trainer state of one run."""

    def __init__(self, config: TrainConfig, examples: Sequence[Example], output_dir: Path,
                 events: EventLog | None = None, loaded=None):
        self.config = config.validate()
        self.output_dir = Path(output_dir)
        self.events = events if events is not None else EventLog()
        if loaded is None:
            from billion.core.loading import pick_device

            loaded = load_private(config, base_dtype(resolve_precision(config.precision,
                                                                       pick_device(config.device))))
        self.loaded = loaded
        self.device = loaded.device
        self.precision = resolve_precision(config.precision, self.device)
        self.tokenizer = loaded.tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        fallback = getattr(getattr(loaded, "spec", None), "chat_template", "native") == "fallback"
        self.data = tokenize_dataset(self.tokenizer, examples, config.cutoff, use_fallback=fallback)
        if not self.data.examples:
            raise BillionError(f"No row is usable after tokenizing: {describe_problems(self.data.problems)}")
        for note in [*self.data.warnings, *map(str, self.data.problems)]:
            self.events.append(TrainEvent("status", message=note))
        self.train_rows, self.eval_rows = split_rows(self.data.examples, config.eval_fraction, config.seed)
        self.model = attach_lora(loaded.model, config)
        self.loaded.model = self.model
        self.elapsed_s = 0.0

    @property
    def max_steps(self) -> int:
        return total_steps(len(self.train_rows), self.config)

    @property
    def checkpoints_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    def trainer(self, callback: ProgressCallback, config: TrainConfig | None = None,
                output_dir: Path | None = None, evaluation: Sequence[TokenizedExample] | None = None):
        return build_trainer(self.model, self.tokenizer, self.train_rows,
                             self.eval_rows if evaluation is None else evaluation, config or self.config,
                             str(output_dir or self.checkpoints_dir), self.precision, self.device, [callback])

    # ---- before training ------------------------------------------------------------------------

    def probe(self, steps: int = 3, time_budget_s: float | None = None) -> ProbeResult:
        """Train `steps` real steps on the longest batches, then restore the fresh adapter."""
        fresh = {k: v.detach().clone() for k, v in self.model.state_dict().items() if "lora_" in k}
        timer = _StepClock()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        before, available = current_memory(self.device), free_memory(self.device)
        peak = [before]
        hook = self.model.register_forward_hook(lambda *_: peak.append(current_memory(self.device)))
        with tempfile.TemporaryDirectory() as scratch:
            trainer = self.trainer(ProgressCallback(EventLog()), dataclasses.replace(self.config, max_steps=steps),
                                   Path(scratch), evaluation=[])
            trainer.add_callback(timer)
            try:
                trainer.train()
            except (torch.OutOfMemoryError, MemoryError) as exc:
                raise BillionError("Training does not fit in memory: lower the batch size or cutoff, turn "
                                   "on gradient checkpointing, or use QLoRA on a GPU.") from exc
            finally:
                hook.remove()
        self.model.load_state_dict(fresh, strict=False)
        step_s = statistics.median(timer.times[1:] or timer.times)
        # The first step pays one-off costs (kernel selection, allocations): time the others.
        first = 1 if len(timer.times) > 1 else 0
        tokens_per_s = (timer.tokens[-1] - timer.tokens[first]) / max(sum(timer.times[first:]), 1e-9)
        result = self._estimate(steps, step_s, tokens_per_s, max(peak), before, available, time_budget_s)
        self.events.append(TrainEvent("probe", max_steps=self.max_steps, tokens_per_s=tokens_per_s,
                                      eta_s=result.eta_s, message="; ".join(result.warnings)))
        return result

    def _estimate(self, steps: int, step_s: float, tokens_per_s: float, peak: int, before: int,
                  available: int, time_budget_s: float | None) -> ProbeResult:
        train_tokens = sum(len(e.input_ids) for e in self.train_rows)
        epochs = self.max_steps / steps_per_epoch(len(self.train_rows), self.config)
        eval_tokens = sum(len(e.input_ids) for e in self.eval_rows) * 8  # ~6 evals + before/after
        # Forward-only evaluation runs about three times faster than a training step.
        eta = (train_tokens * epochs + eval_tokens / 3) / max(tokens_per_s, 1e-9)
        warnings = []
        growth = max(0, peak - before)
        needed = peak if self.device.type == "cuda" else growth
        if needed > 0.9 * available:
            warnings.append(f"training may not fit in memory (needs ~{growth / 2**30:.1f} GB more, "
                            f"{available / 2**30:.1f} GB free): lower batch size or cutoff, or turn on "
                            "gradient checkpointing")
        if time_budget_s is not None and eta > time_budget_s:
            warnings.append(f"the run needs about {eta / 60:.0f} min, over the {time_budget_s / 60:.0f} min "
                            "budget: lower epochs, max steps or cutoff")
        return ProbeResult(steps=steps, step_s=step_s, tokens_per_s=tokens_per_s, peak_memory_bytes=peak,
                           available_memory_bytes=available, total_steps=self.max_steps, eta_s=eta,
                           warnings=tuple(warnings))

    # ---- training -------------------------------------------------------------------------------

    def evaluate(self) -> float | None:
        """Mean loss on the held-out rows with the adapter as it is now (None without eval rows)."""
        if not self.eval_rows:
            return None
        trainer = self.trainer(ProgressCallback(EventLog()))
        return float(trainer.evaluate()["eval_loss"])

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.checkpoints_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        return found[-1] if found else None

    def train(self, stop=None, deadline: float | None = None, checkpoint_s: float | None = None) -> SliceResult:
        """Train until done, `stop` is set, or `deadline` (time.monotonic()) nears; resumes if it can.
        checkpoint_s: also save a checkpoint this often (a killed process resumes from it)."""
        started = time.monotonic()
        callback = ProgressCallback(self.events, stop=stop, deadline=deadline, elapsed_before=self.elapsed_s,
                                    checkpoint_s=checkpoint_s)
        trainer = self.trainer(callback)
        resume = self.latest_checkpoint()
        self.model.train()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        self.model.eval()
        self.elapsed_s += time.monotonic() - started
        step, finished = trainer.state.global_step, trainer.state.global_step >= trainer.state.max_steps
        checkpoint = None if finished else self.latest_checkpoint()
        return SliceResult(finished=finished, step=step, max_steps=trainer.state.max_steps,
                           seconds=time.monotonic() - started, step_s=callback.step_seconds,
                           checkpoint=str(checkpoint) if checkpoint else None,
                           stopped=bool(stop is not None and stop.is_set()))

    # ---- after training -------------------------------------------------------------------------

    def answers(self, prompts: Sequence[str], max_new_tokens: int = 80) -> tuple[AnswerPair, ...]:
        """Each prompt answered by the base (adapter off) and the tuned model, one model in memory, at
        the model's recommended sampling (same seed both sides); a degenerate loop is cut and marked."""
        from billion.core.loop_guard import generate_guarded

        settings = comparison_settings(self.config.model, max_new_tokens)
        self.model.eval()
        pairs = []
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt}]
            with self.model.disable_adapter():
                before = generate_guarded(self.loaded, messages, settings)
            after = generate_guarded(self.loaded, messages, settings)
            pairs.append(AnswerPair(prompt, before.shown.strip(), after.shown.strip()))
            self.events.append(TrainEvent("answer", message=json.dumps(dataclasses.asdict(pairs[-1]))))
        return tuple(pairs)

    def save_adapter(self, directory: Path | None = None) -> Path:
        """The adapter in PEFT format (adapter_config.json + adapter_model.safetensors)."""
        directory = Path(directory or self.output_dir / "adapter")
        # The base embeddings are never resized here, so the adapter needs no copy of them.
        self.model.save_pretrained(directory, safe_serialization=True, save_embedding_layers=False)
        self.tokenizer.save_pretrained(directory)
        return directory

    def export_merged(self, directory: Path | None = None) -> Path:
        """A standalone model with the adapter folded into the weights (not for QLoRA bases)."""
        if self.config.qlora:
            raise BillionError("A 4-bit QLoRA base cannot be merged losslessly: load the adapter on "
                               "the full-precision base instead.")
        directory = Path(directory or self.output_dir / "merged")
        merged = copy.deepcopy(self.model).merge_and_unload()
        merged.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        return directory


def comparison_settings(model: str, max_new_tokens: int = 80) -> SamplingSettings:
    """The before/after answers' sampling: the model's recommended one (card or generation_config),
    seeded so both sides draw alike; greedy where the model recommends nothing."""
    from billion.core.recommended import recommended_sampling

    greedy = SamplingSettings(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    found = recommended_sampling(model, greedy)
    return found.settings if found.source != "app default" else greedy


def zip_adapter(adapter_dir: Path, target: Path | None = None) -> Path:
    """adapter.zip next to the folder, holding its files at the top level (as PEFT loads them)."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise BillionError(f"{adapter_dir} has no adapter_config.json: train or resume the run first.")
    target = Path(target or adapter_dir.with_suffix(".zip"))
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(adapter_dir.iterdir()):
            if path.is_file():
                archive.write(path, arcname=path.name)
    return target


def remove_checkpoints(session: TrainingSession) -> None:
    shutil.rmtree(session.checkpoints_dir, ignore_errors=True)


class _StepClock(TrainerCallback):
    """Seconds and cumulative tokens at each step, for the probe."""

    def __init__(self):
        self.times: list[float] = []
        self.tokens: list[int] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.tokens:
            self.tokens.append(state.num_input_tokens_seen)
        self._start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.monotonic() - self._start)
        self.tokens.append(state.num_input_tokens_seen)
