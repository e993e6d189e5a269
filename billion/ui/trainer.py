"""LoRA trainer tab: upload data, preview what is trained, train in the background, compare, export.

The data side (upload, sample, preview) is here; the runs (start, follow, stop, resume, discard,
publish, each for its owner only) are in billion.ui.trainer_runs, the drawing in
billion.ui.trainer_view.

Endpoints for scripts: `train` (data file, model, a few settings -> a summary and the adapter zip;
it waits for the run to end), `trainer_stop`, `trainer_resume`, `trainer_discard`,
`trainer_to_arena` (each on a run of the same session).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gradio as gr

from billion.context import AppContext
from billion.core.errors import BillionError
from billion.core.loading import pick_device
from billion.core.paths import ASSETS
from billion.train.config import TARGET_PRESETS, TrainConfig
from billion.train.data import SUFFIXES, TrainDataset, load_dataset
from billion.train.tokens import preview_dataset
from billion.ui.common import (bind, default_model, discard_upload, friendly_errors, model_choices,
                               on_device, refusing_uploads)
from billion.ui.trainer_runs import (SETTING_FIELDS, attach, discard_run, gpu_slice, identify, list_runs,
                                     poll, resume_run, send_to_arena, slice_duration, start_training,
                                     stop_run, train_api, train_in_slices)
from billion.ui.session import at_page_level, folder_secret
from billion.ui.trainer_session import session_trainer
from billion.ui.trainer_view import (answers_frame, highlighted, histogram_figure, preview_markdown,
                                     problems_frame, report_markdown)

SAMPLE_DATA = ASSETS / "sample_lora" / "pirate.jsonl"
SAMPLE_PROMPTS = ASSETS / "sample_lora" / "held_out.json"
FILE_TYPES = list(SUFFIXES)  # each format, also gzipped or alone in a .zip
TRAIN_DEFAULTS = TrainConfig()
#: where the page keeps its owner token (billion.ui.trainer_runs.identify)
OWNER_STORAGE_KEY = "billion-trainer-owner"


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


# ---- the tab ------------------------------------------------------------------------------------

TRAINING_PRECISION_NOTE = ("LoRA trains a float base: fp32/bf16 on CPU (billion's int8/int4 CPU "
                           "kernels have no backward pass). Pick int8/int4 afterwards in Chat or the "
                           "Arena: the adapter is merged into the weights, then quantized.")


def training_precisions() -> tuple[str, ...]:
    """What training can use here: CPU fp32/bf16; CUDA adds fp16 (and QLoRA's 4-bit base)."""
    return ("auto", "fp32", "bf16", "fp16") if pick_device().type == "cuda" else ("auto", "fp32", "bf16")


def owner_secret(folder: Path) -> str:
    """The key the page's stored token is encrypted with: kept in the data folder, so a restarted
    app still reads the tokens browsers stored before (and their owners find their runs)."""
    return folder_secret(folder, ".trainer-owner-secret")


def _data_section() -> dict:
    with gr.Row():
        upload = gr.File(label="Training data (.jsonl .json .csv .parquet .txt)", file_types=FILE_TYPES,
                         type="filepath", scale=3)
        with gr.Column(scale=2):
            sample = gr.Button("Use the sample dataset (100 pirate-style answers)")
            report = gr.Markdown("Upload a data file or use the sample dataset.")
    problems = gr.Dataframe(problems_frame(None), label="Row problems", interactive=False, max_height=200)
    return dict(upload=upload, sample=sample, report=report, problems=problems)


def _settings_section(choices: list[tuple[str, str]]) -> dict:
    """The settings controls, in SETTING_FIELDS order under "settings", and the rest."""
    with gr.Accordion("Settings", open=True):
        with gr.Row():
            model = gr.Dropdown(choices, value=default_model(choices), label="Base model", scale=2)
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
    settings = [model, rank, alpha, dropout, targets, lr, epochs, max_steps, cutoff, batch_size, grad_accum,
                eval_fraction, seed, precision, qlora]
    return dict(settings=settings, model=model, rank=rank, lr=lr, cutoff=cutoff, max_steps=max_steps,
                probe_steps=probe_steps, prompts=prompts, choices=choices)


def _preview_section() -> dict:
    with gr.Accordion("Preview: what the model is trained on", open=False):
        button = gr.Button("Preview with this model's chat template")
        text = gr.HighlightedText(label="First rows (highlighted = trained tokens)",
                                  color_map={"trained": "#a7e3a1", "cut": "#f4b6b6"}, combine_adjacent=True)
        with gr.Row():
            histogram = gr.Plot(label="Token lengths vs cutoff")
            notes = gr.Markdown()
    return dict(button=button, outputs=[text, histogram, notes])


def _run_section() -> dict:
    with gr.Row():
        start = gr.Button("Start training", variant="primary", interactive=False)
        stop = gr.Button("Stop (keeps the adapter)")
        resume = gr.Button("Resume")
        discard = gr.Button("Discard")
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
    return dict(start=start, stop=stop, resume=resume, discard=discard, run_pick=run_pick,
                progress=progress, curves=curves, result=result, answers=answers, download=download,
                arena_label=arena_label, to_arena=to_arena, arena_note=arena_note,
                summary=gr.JSON(visible=False, label="Run summary"), train_button=gr.Button(visible=False),
                timer=gr.Timer(1.0, active=False))


def build_trainer_tab(ctx: AppContext) -> None:
    choices, _ = model_choices(ctx.hub)
    gr.Markdown("Teach a model a style or skill with LoRA: upload examples (or use the sample: answers "
                "in pirate speak), check what gets trained, watch the loss fall, then compare answers "
                "before and after and take the adapter with you.")
    if os.environ.get("OAUTH_CLIENT_ID"):  # a Space with `hf_oauth: true`: runs follow the login
        gr.LoginButton()
    state = dict(dataset=gr.State(None), seen=gr.State([]), owner=gr.State(None),
                 token=at_page_level(lambda: gr.BrowserState("", storage_key=OWNER_STORAGE_KEY,
                                                             secret=owner_secret(ctx.settings.data_dir))))
    data, settings, preview, run = _data_section(), _settings_section(choices), _preview_section(), _run_section()
    _wire_data(ctx, state, data, settings, preview, run)
    _wire_runs(ctx, state, data, settings, run)


def _wire_data(ctx: AppContext, state: dict, data: dict, settings: dict, preview: dict, run: dict) -> None:
    checked = [data["report"], data["problems"], state["dataset"], run["start"]]
    read = data["upload"].change(inspect_upload, data["upload"], checked, api_name="trainer_inspect")
    session_trainer(ctx, state["token"], dict(zip((*SETTING_FIELDS, "probe_steps", "prompts"), (
        *settings["settings"], settings["probe_steps"], settings["prompts"]))), settings["choices"],
        data["upload"], state["dataset"], read)
    data["sample"].click(use_sample, None, [*checked, settings["prompts"]], api_name="trainer_sample")
    preview["button"].click(bind(show_preview, ctx), [state["dataset"], settings["model"], settings["cutoff"]],
                            preview["outputs"], api_name=False)


def _wire_runs(ctx: AppContext, state: dict, data: dict, settings: dict, run: dict) -> None:
    owner, pick, note = state["owner"], run["run_pick"], run["progress"]
    train_slice = on_device(gpu_slice, ctx, slice_duration)
    started = run["start"].click(bind(start_training, ctx),
                                 [owner, state["dataset"], settings["prompts"], settings["probe_steps"],
                                  *settings["settings"]], [pick, note], api_name=False)
    started.then(bind(train_in_slices, ctx, train_slice), pick, None, api_name=False)
    pick.change(attach, pick, [state["seen"], run["timer"]], api_name=False)
    run["timer"].tick(bind(poll, ctx), [pick, state["seen"], owner],
                      [state["seen"], run["curves"], note, run["result"], run["answers"], run["download"],
                       run["timer"], pick], api_name=False, show_progress="hidden", concurrency_limit=None)
    run["stop"].click(bind(stop_run, ctx), [pick, owner], note, api_name="trainer_stop",
                      cancels=[started])  # a start still downloading its base model
    run["resume"].click(bind(resume_run, ctx), [pick, owner], [pick, note], api_name="trainer_resume")
    run["discard"].click(bind(discard_run, ctx), [pick, owner], [pick, note], api_name="trainer_discard")
    run["to_arena"].click(bind(send_to_arena, ctx), [pick, run["arena_label"], owner], run["arena_note"],
                          api_name="trainer_to_arena")
    run["train_button"].click(bind(train_api, ctx, train_slice),
                              [data["upload"], settings["model"], settings["max_steps"], settings["rank"],
                               settings["lr"], settings["cutoff"], settings["prompts"], owner],
                              [run["summary"], run["download"]], api_name="train")
    # Page load: who this browser is, then its runs (re-attaching to an active one).
    gr.on(None, identify, state["token"], [state["token"], owner], api_name=False) \
        .then(bind(list_runs, ctx), owner, pick, api_name=False)
