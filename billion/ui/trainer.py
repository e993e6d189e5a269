"""LoRA trainer tab: upload data, preview what is trained, train in the background, compare, export.

Training runs outlive the page (the app context's RunManager): the page only starts, polls and
stops them, so a reload re-attaches to the active run. On ZeroGPU the run trains in time slices,
each one `spaces.GPU` call, resuming from the run folder's checkpoint.

Endpoint for scripts: `train` (data file, model, a few settings -> a summary and the adapter zip);
it waits for the run to end.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from billion.arena.contestants import register_adapter_contestant
from billion.context import AppContext
from billion.core.errors import BillionError
from billion.core.loading import pick_device
from billion.core.paths import ASSETS
from billion.train.config import TARGET_PRESETS, TrainConfig
from billion.train.data import SUFFIXES, TrainDataset, load_dataset
from billion.train.runs import RunStatus, TrainResult, read_run, slice_seconds
from billion.train.tokens import preview_dataset
from billion.ui.common import (ON_ZEROGPU, bind, default_model, discard_upload, friendly_errors,
                               model_choices, on_device, refusing_uploads)
from billion.ui.trainer_view import (answers_frame, highlighted, histogram_figure, loss_figure,
                                     preview_markdown, problems_frame, progress_markdown, report_markdown,
                                     result_markdown, run_label)

SAMPLE_DATA = ASSETS / "sample_lora" / "pirate.jsonl"
SAMPLE_PROMPTS = ASSETS / "sample_lora" / "held_out.json"
FILE_TYPES = list(SUFFIXES)  # each format, also gzipped or alone in a .zip
ACTIVE_STATES = ("created", "training", "evaluating")
#: a ZeroGPU call is capped; each slice asks for at most this much
ZEROGPU_SLICE_BUDGET_S = 240
MAX_PROMPTS = 8
TRAIN_DEFAULTS = TrainConfig()
#: the settings controls, in order: each is the TrainConfig field of the same name
SETTING_FIELDS = ("model", "rank", "alpha", "dropout", "target_modules", "learning_rate", "epochs",
                  "max_steps", "cutoff", "batch_size", "grad_accum", "eval_fraction", "seed", "precision",
                  "qlora")


# ---- data ---------------------------------------------------------------------------------------

def _dataset_view(dataset: TrainDataset):
    """(report markdown, problems table, dataset state, Start button)."""
    report = dataset.report
    return (report_markdown(report), problems_frame(report), dataset,
            gr.update(interactive=report.usable > 0))


def inspect_upload(path: str | None):
    """Read an uploaded file: its format, usable rows and row problems. A file without a usable row
    leaves Start off and says why. Returns (report, problems, dataset state, Start button)."""
    if not path:
        return "Upload a data file or use the sample dataset.", problems_frame(None), None, \
            gr.update(interactive=False)
    try:
        return _dataset_view(load_dataset(path))
    except BillionError as exc:
        discard_upload(path)  # a refused upload does not stay in the upload folder
        gr.Warning(str(exc))
        return f"❌ {exc}", problems_frame(None), None, gr.update(interactive=False)


def use_sample():
    """The bundled pirate-style dataset and its held-out prompts.
    Returns (report, problems, dataset state, Start button, held-out prompts)."""
    prompts = json.loads(SAMPLE_PROMPTS.read_text(encoding="utf-8"))[:4]
    return (*_dataset_view(load_dataset(SAMPLE_DATA)), "\n".join(prompts))


@friendly_errors
def show_preview(ctx: AppContext, dataset: TrainDataset | None, model: str, cutoff: float):
    """A few rows through the model's own chat template, trained tokens highlighted, and the
    token-length histogram. Returns (highlighted text, histogram, notes)."""
    if dataset is None:
        raise BillionError("Load a data file first (upload one or use the sample dataset).")
    loaded = ctx.models.load(model)
    fallback = getattr(loaded.spec, "chat_template", "native") == "fallback"
    preview = preview_dataset(loaded.tokenizer, dataset.examples, int(cutoff), count=3, use_fallback=fallback)
    return highlighted(preview), histogram_figure(preview.histogram), preview_markdown(preview)


def prompt_list(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()][:MAX_PROMPTS]


# ---- running ------------------------------------------------------------------------------------

def launch_run(ctx: AppContext, config: TrainConfig, dataset: TrainDataset, prompts: list[str],
               probe_steps: int) -> str:
    """A background run here; on ZeroGPU only the run folder (slices train it, see train_in_slices)."""
    if ON_ZEROGPU:
        return ctx.runs.create(config, dataset, prompts)
    return ctx.runs.start(config, dataset, prompts, probe_steps=probe_steps)


def _slice_duration(run_id: str, seconds: int) -> int:
    return seconds


def gpu_slice(ctx: AppContext, run_id: str, seconds: int) -> bool:
    """One ZeroGPU call's worth of training; True when the run is finished."""
    return ctx.runs.train_slice(run_id, max_seconds=seconds - 30) is not None


SliceFn = Callable[[str, int], bool]


def train_in_slices(ctx: AppContext, train_slice: SliceFn, run_id: str) -> None:
    """ZeroGPU: slices until done, each sized from the step time measured by the last one."""
    if not ON_ZEROGPU or not run_id:
        return
    seconds = ZEROGPU_SLICE_BUDGET_S
    while not train_slice(run_id, seconds):
        results = read_run(ctx.runs.path(run_id)).get("results") or {}
        left = results.get("max_steps", 0) - results.get("step", 0)
        seconds = slice_seconds(results.get("step_s") or 10.0, left, ZEROGPU_SLICE_BUDGET_S)


@friendly_errors
def start_training(ctx: AppContext, dataset: TrainDataset | None, prompts: str, probe_steps: float,
                   *settings):
    """Check the settings (the SETTING_FIELDS controls), then start a run (its first steps are a
    timed probe: ETA, memory). Returns the run picker pointed at the new run."""
    if dataset is None or not dataset.examples:
        raise BillionError("No usable training rows: upload a data file (or use the sample) first.")
    config = TrainConfig.from_values(dict(zip(SETTING_FIELDS, settings)))
    run_id = launch_run(ctx, config, dataset, prompt_list(prompts), int(probe_steps))
    return gr.update(choices=run_choices(ctx), value=run_id)


def run_choices(ctx: AppContext, records: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """The run picker's entries; each label carries the run's state."""
    records = ctx.runs.runs() if records is None else records
    return [(run_label(record), record["id"]) for record in records]


def list_runs(ctx: AppContext):
    """On page load: every run, the latest active one picked (so a reload re-attaches)."""
    records = ctx.runs.runs()
    # run.json may still say "training" for a run whose process is gone: ask the manager.
    active = next((r["id"] for r in records if r.get("status") in ACTIVE_STATES
                   and _still_training(ctx.runs.status(r["id"]))), None)
    return gr.update(choices=run_choices(ctx, records), value=active)


def _probe(ctx: AppContext, run_id: str) -> dict[str, Any] | None:
    try:
        return (read_run(ctx.runs.path(run_id)).get("results") or {}).get("probe")
    except BillionError:
        return None


def _still_training(status: RunStatus) -> bool:
    return status.state in ACTIVE_STATES or (ON_ZEROGPU and status.state == "paused")


def exported_zip(ctx: AppContext, result: TrainResult) -> str | None:
    """A copy of the adapter zip in the served export folder (never the run folder itself)."""
    if not result.adapter_zip or not Path(result.adapter_zip).is_file():
        return None
    folder = ctx.settings.exports_dir / f"adapter-{result.run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"adapter-{result.run_id}.zip"
    if not target.is_file():
        shutil.copyfile(result.adapter_zip, target)
    return str(target)


def attach(run_id: str | None):
    """Follow another run: forget the drawn events and let the timer poll it."""
    return [], gr.Timer(active=bool(run_id))


def poll(ctx: AppContext, run_id: str | None, seen: list):
    """One timer tick: new events since the last tick. Returns (events, loss curves, progress,
    result, answers, adapter zip, timer, run list); skips redrawing when nothing changed."""
    if not run_id:
        return [], gr.skip(), "", gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False), gr.skip()
    manager = ctx.runs
    try:
        status = manager.status(run_id)
    except BillionError as exc:
        return (seen, gr.skip(), f"❌ {exc}", gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False),
                gr.skip())
    new = manager.events(run_id, len(seen))
    events = [*seen, *new]
    running = _still_training(status)
    if running and not new and seen:
        return seen, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    progress = progress_markdown(status, events, _probe(ctx, run_id))
    # The run list's labels carry each run's state: relabel once this run has ended (same value,
    # so the picker does not re-attach).
    labels = gr.skip() if running else gr.update(choices=run_choices(ctx))
    result = status.result
    if result is None:
        return (events, loss_figure(events), progress, "", answers_frame(None), None,
                gr.Timer(active=running), labels)
    return (events, loss_figure(events), progress, result_markdown(result), answers_frame(result),
            exported_zip(ctx, result), gr.Timer(active=False), labels)


@friendly_errors
def stop_run(ctx: AppContext, run_id: str | None) -> str:
    if not run_id:
        raise BillionError("No run is selected.")
    if ON_ZEROGPU:
        raise BillionError("On ZeroGPU a run trains in short slices; it cannot be stopped mid-slice.")
    ctx.runs.stop(run_id)
    gr.Info("Stopping at the next step; the adapter keeps the steps done.")
    return f"Stopping run `{run_id}` at the next step…"


@friendly_errors
def send_to_arena(ctx: AppContext, run_id: str | None, label: str) -> str:
    if not run_id:
        raise BillionError("No run is selected.")
    status = ctx.runs.status(run_id)
    if status.result is None or not status.result.adapter_dir:
        raise BillionError(f"Run {run_id} has no adapter yet: wait for it to finish (or stop it).")
    base = read_run(ctx.runs.path(run_id))["config"]["model"]
    contestant = register_adapter_contestant(status.result.adapter_dir, base, label or f"lora-{run_id}",
                                             store=ctx.store)
    return (f"✅ `{contestant.label}` ({base} + LoRA) joined the Arena pool: it appears in new "
            "battles and can be benchmarked in the Leaderboard tab.")


@friendly_errors
def train_api(ctx: AppContext, train_slice: SliceFn, path: str | None, model: str, max_steps: float,
              rank: float, learning_rate: float, cutoff: float, prompts: str):
    """Train synchronously: waits for the run. Returns (summary, adapter zip)."""
    if not path:
        raise BillionError("Upload a training data file (.jsonl, .json, .csv, .parquet or .txt).")
    dataset = refusing_uploads(load_dataset)(path)
    # alpha follows the rank; every other setting is TrainConfig's default
    config = TrainConfig.from_values(dict(model=model, max_steps=max_steps, rank=rank,
                                          learning_rate=learning_rate, cutoff=cutoff))
    run_id = launch_run(ctx, config, dataset, prompt_list(prompts), probe_steps=0)
    train_in_slices(ctx, train_slice, run_id)
    manager = ctx.runs
    status = manager.wait(run_id) if not ON_ZEROGPU else manager.status(run_id)
    while status.state in ACTIVE_STATES:  # wait() returns at once for a run of another process
        time.sleep(1.0)
        status = manager.status(run_id)
    if status.result is None:
        raise BillionError(f"Run {run_id} ended {status.state}: {status.error or 'no adapter was saved'}.")
    return run_summary(status, manager.events(run_id)), exported_zip(ctx, status.result)


def run_summary(status: RunStatus, events) -> dict[str, Any]:
    result = status.result
    return {"run_id": status.run_id, "state": status.state, "steps": result.steps,
            "train_losses": [e.loss for e in events if e.kind == "train"],
            "eval_loss_before": result.eval_loss_before, "eval_loss_after": result.eval_loss_after,
            "tokens_per_s": result.tokens_per_s, "train_seconds": result.train_seconds,
            "answers": [{"prompt": a.prompt, "before": a.before, "after": a.after} for a in result.answers]}


# ---- the tab ------------------------------------------------------------------------------------

TRAINING_PRECISION_NOTE = ("LoRA trains a float base: fp32/bf16 on CPU (billion's int8/int4 CPU "
                           "kernels have no backward pass). Pick int8/int4 afterwards in Chat or the "
                           "Arena: the adapter is merged into the weights, then quantized.")


def training_precisions() -> tuple[str, ...]:
    """What training can use here: CPU fp32/bf16; CUDA adds fp16 (and QLoRA's 4-bit base)."""
    return ("auto", "fp32", "bf16", "fp16") if pick_device().type == "cuda" else ("auto", "fp32", "bf16")


def build_trainer_tab(ctx: AppContext) -> None:
    choices, _ = model_choices(ctx.hub)
    default = default_model(choices)
    dataset = gr.State(None)
    seen = gr.State([])
    gr.Markdown("Teach a model a style or skill with LoRA: upload examples (or use the sample: answers "
                "in pirate speak), check what gets trained, watch the loss fall, then compare answers "
                "before and after and take the adapter with you.")
    with gr.Row():
        upload = gr.File(label="Training data (.jsonl .json .csv .parquet .txt)", file_types=FILE_TYPES,
                         type="filepath", scale=3)
        with gr.Column(scale=2):
            sample = gr.Button("Use the sample dataset (100 pirate-style answers)")
            report = gr.Markdown("Upload a data file or use the sample dataset.")
    problems = gr.Dataframe(problems_frame(None), label="Row problems", interactive=False, max_height=200)

    with gr.Accordion("Settings", open=True):
        with gr.Row():
            model = gr.Dropdown(choices, value=default, label="Base model", scale=2)
            rank = gr.Slider(1, 128, value=TRAIN_DEFAULTS.rank, step=1, label="LoRA rank")
            alpha = gr.Slider(1, 256, value=TRAIN_DEFAULTS.alpha, step=1, label="LoRA alpha")
            dropout = gr.Slider(0, 0.5, value=TRAIN_DEFAULTS.dropout, step=0.01, label="LoRA dropout")
            targets = gr.Dropdown(list(TARGET_PRESETS), value=TRAIN_DEFAULTS.target_modules,
                                  allow_custom_value=True,
                                  label="Target modules (or comma-separated names)")
        with gr.Row():
            lr = gr.Number(TRAIN_DEFAULTS.learning_rate, label="Learning rate")
            epochs = gr.Number(TRAIN_DEFAULTS.epochs, label="Epochs")
            max_steps = gr.Number(TRAIN_DEFAULTS.max_steps, precision=0, label="Max steps (0 = use epochs)")
            cutoff = gr.Slider(16, 2048, value=TRAIN_DEFAULTS.cutoff, step=16,
                               label="Cutoff (tokens per example)")
            batch_size = gr.Slider(1, 32, value=TRAIN_DEFAULTS.batch_size, step=1, label="Batch size")
            grad_accum = gr.Slider(1, 32, value=TRAIN_DEFAULTS.grad_accum, step=1,
                                   label="Gradient accumulation")
        with gr.Row():
            eval_fraction = gr.Slider(0, 0.5, value=TRAIN_DEFAULTS.eval_fraction, step=0.05,
                                      label="Eval fraction")
            seed = gr.Number(TRAIN_DEFAULTS.seed, precision=0, label="Seed")
            precision = gr.Radio(list(training_precisions()), value=TRAIN_DEFAULTS.precision,
                                 label="Precision", info=TRAINING_PRECISION_NOTE)
            qlora = gr.Checkbox(TRAIN_DEFAULTS.qlora, label="QLoRA (4-bit base, CUDA)")
            probe_steps = gr.Slider(0, 10, value=2, step=1, label="Probe steps before training (ETA, memory)")
        prompts = gr.Textbox(lines=3, label="Held-out prompts for before/after (one per line)")

    with gr.Accordion("Preview: what the model is trained on", open=False):
        preview_button = gr.Button("Preview with this model's chat template")
        preview_text = gr.HighlightedText(label="First rows (highlighted = trained tokens)",
                                          color_map={"trained": "#a7e3a1", "cut": "#f4b6b6"},
                                          combine_adjacent=True)
        with gr.Row():
            histogram = gr.Plot(label="Token lengths vs cutoff")
            preview_notes = gr.Markdown()

    with gr.Row():
        start = gr.Button("Start training", variant="primary", interactive=False)
        stop = gr.Button("Stop (keeps the adapter)")
        run_pick = gr.Dropdown([], label="Run", allow_custom_value=True, scale=3)
    progress = gr.Markdown()
    curves = gr.Plot(label="Loss")
    result = gr.Markdown()
    answers = gr.Dataframe(answers_frame(None), label="Before / after", interactive=False, wrap=True)
    with gr.Row():
        download = gr.File(label="Download adapter (PEFT zip)", interactive=False)
        with gr.Column():
            arena_label = gr.Textbox(label="Arena label", placeholder="e.g. pirate-smollm2")
            to_arena = gr.Button("Send to Arena")
            arena_note = gr.Markdown()
    summary = gr.JSON(visible=False, label="Run summary")
    train_button = gr.Button(visible=False)
    timer = gr.Timer(1.0, active=False)

    upload.change(inspect_upload, upload, [report, problems, dataset, start], api_name="trainer_inspect")
    sample.click(use_sample, None, [report, problems, dataset, start, prompts], api_name="trainer_sample")
    preview_button.click(bind(show_preview, ctx), [dataset, model, cutoff],
                         [preview_text, histogram, preview_notes], api_name=False)
    # in SETTING_FIELDS order
    settings = [model, rank, alpha, dropout, targets, lr, epochs, max_steps, cutoff, batch_size, grad_accum,
                eval_fraction, seed, precision, qlora]
    train_slice = on_device(gpu_slice, ctx, _slice_duration)
    start.click(bind(start_training, ctx), [dataset, prompts, probe_steps, *settings], run_pick,
                api_name=False) \
        .then(bind(train_in_slices, ctx, train_slice), run_pick, None, api_name=False)
    run_pick.change(attach, run_pick, [seen, timer], api_name=False)
    timer.tick(bind(poll, ctx), [run_pick, seen],
               [seen, curves, progress, result, answers, download, timer, run_pick],
               api_name=False, show_progress="hidden", concurrency_limit=None)
    stop.click(bind(stop_run, ctx), run_pick, progress, api_name="trainer_stop")
    to_arena.click(bind(send_to_arena, ctx), [run_pick, arena_label], arena_note, api_name="trainer_to_arena")
    train_button.click(bind(train_api, ctx, train_slice),
                       [upload, model, max_steps, rank, lr, cutoff, prompts], [summary, download],
                       api_name="train")
    gr.on(None, bind(list_runs, ctx), None, run_pick, api_name=False)  # page load: re-attach to an active run
