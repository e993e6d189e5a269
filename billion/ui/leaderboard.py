"""Leaderboard tab: measured scores beside published ones, filters, plots, and "Run benchmark".

Endpoints for scripts: `leaderboard` (filters -> table and plots), `bench` (models, tasks and
settings -> status, this run's table and a JSON summary; the results are stored) and
`bench_cancel` (stops this session's run after the current item; one gradio_client.Client is one
session). Figures use
matplotlib's object API (no pyplot state); gr.Plot closes them once drawn.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import gradio as gr
import pandas as pd

from billion.bench.runner import (HUMANEVAL, SPEED, BenchRequest, RunProgress, TaskOutcome,
                                  estimate_seconds, iter_run)
from billion.arena.contestants import registered_contestants
from billion.bench.matrix import SORT_CHOICES
from billion.bench.tasks import TASKS
from billion.core.download import DownloadCancelled
from billion.core.download_jobs import DownloadRegistry
from billion.core.errors import BillionError
from billion.bench.leaderboard import (COLUMNS, DEFAULT_COLUMNS, KINDS, SIZE_BANDS,
                                 families,
                                 run_results_frame, run_summary)
from billion.context import AppContext
from billion.core.precision import QUALITY_COLUMNS, auto_cpu_choice, quality_rows
from billion.core.registry import all_models
from billion.store.store import Store
from billion.ui.leaderboard_views import (initial_matrix, initial_quick_runs, initial_score_plot,
                                          initial_speed_plot, initial_table, leaderboard_view, matrix_view)
from billion.ui.common import (ON_ZEROGPU, bind, default_model, friendly_errors, model_choices,
                               named_number, on_device)
from billion.endpoints.config import configured_endpoints
from billion.ui.downloads import download_notes, to_download
from billion.ui.endpoints import endpoint_choices
from billion.ui.leaderboard_export import build_detail_export

TASK_LABELS = [(f"{t.name} · {t.display_name}" + ("" if t.offline else " (needs the hub)"), t.name)
               for t in TASKS] + [("humaneval · HumanEval pass@1 (greedy)", HUMANEVAL),
                                  ("speed · time to first token, tokens/s, memory", SPEED)]
BENCH_DEFAULTS = BenchRequest()
#: items per task of a run started from the page: a click should take minutes, not hours
PAGE_LIMIT = 20


# -- running benchmarks --------------------------------------------------------------------------

def parse_lengths(text: str) -> tuple[int, ...]:
    try:
        lengths = tuple(int(part) for part in str(text).replace(" ", "").split(",") if part)
    except ValueError:
        raise BillionError("Prompt lengths must be whole numbers separated by commas "
                           f"(got {text!r}).") from None
    if not lengths:
        raise BillionError("Give at least one prompt length, e.g. 128,512.")
    return lengths


def request_from(models: list[str] | str | None, tasks: list[str] | None, limit: float | None,
                 dtype: str, quantization: str, seed: float | None, prompt_lengths: str,
                 new_tokens: float, repeats: float) -> BenchRequest:
    chosen = [models] if isinstance(models, str) else list(models or [])
    return BenchRequest(
        models=tuple(chosen), tasks=tuple(tasks or ()),
        limit=None if limit in (None, "") or int(limit) <= 0 else int(limit),
        dtype=dtype or "auto", quantization=quantization or "none",
        seed=BENCH_DEFAULTS.seed if seed in (None, "") else int(seed),
        prompt_lengths=parse_lengths(prompt_lengths), new_tokens=int(new_tokens),
        repeats=int(repeats)).validated()


def _device_seconds(request: BenchRequest, cancel: threading.Event | None = None) -> int:
    return estimate_seconds(request)


def bench_on_device(ctx: AppContext, request: BenchRequest,
                    cancel: threading.Event | None = None) -> Iterator[RunProgress]:
    """The GPU part: load, score and store (a picklable request in, progress records out)."""
    yield from iter_run(request, cancel, store=ctx.store, models=ctx.models,
                        endpoints=configured_endpoints(ctx.settings.models_file))


BenchFn = Callable[..., Iterator[RunProgress]]


#: seconds between status updates while a task runs
STATUS_EVERY_S = 0.5


def now_text(step: RunProgress) -> str:
    """"smollm2-135m · billion-mc: 3/20 items" (or "loading smollm2-135m")."""
    return f"{step.model} · {step.message}" if step.task else step.message


def status_markdown(outcomes: list[TaskOutcome], request: BenchRequest, running: str = "") -> str:
    stored = sum(len(o.scores) for o in outcomes)
    failed = [o for o in outcomes if o.error]
    lines = [f"**{len(outcomes)} of {len(request.models) * len(request.tasks)} tasks done**, "
             f"{stored} scores stored." + (f" Now: {running}" if running else "")]
    lines += [f"- ⚠️ {o.error}" for o in failed]
    lines += [f"- ⏱️ {o.model} · {o.task}: {note}" for o in outcomes for note in o.notes]
    lines += [f"- {o.model} · {o.task}: cancelled, nothing stored" for o in outcomes
              if o.cancelled and not o.scores]
    if request.limit and any(task != SPEED for task in request.tasks):  # speed has no items
        lines.append(f"Limited to {request.limit} items per task: not comparable to full runs.")
    return "\n".join(lines)


def download_first(request: BenchRequest, downloads: DownloadRegistry,
                   cancel: threading.Event) -> Iterator[str]:
    """Progress lines while each model of the run that is not cached yet downloads, one after the
    other, before the run (whose device part then only loads). A model that cannot download is left
    to the run, which reports it for that model and goes on; `cancel` raises DownloadCancelled."""
    for name in request.models:
        try:
            yield from download_notes(to_download([name]), downloads, cancel)
        except DownloadCancelled:
            raise
        except BillionError:
            continue


@friendly_errors
def run_benchmark(bench: BenchFn, downloads: DownloadRegistry, models, tasks, limit, dtype,
                  quantization, seed, prompt_lengths, new_tokens, repeats, progress=gr.Progress()):
    """Download, run and store. Yields (status, this run's table, JSON summary, cancel-event state)."""
    request = request_from(models, tasks, limit, dtype, quantization, seed, prompt_lengths,
                           new_tokens, repeats)
    cancel = threading.Event()
    outcomes: list[TaskOutcome] = []
    yield status_markdown(outcomes, request, "starting"), run_results_frame(outcomes), None, cancel
    try:
        for note in download_first(request, downloads, cancel):
            yield f"{status_markdown(outcomes, request, 'downloading')}\n\n{note}", gr.skip(), gr.skip(), cancel
    except DownloadCancelled as exc:
        yield str(exc), run_results_frame(outcomes), run_summary(outcomes), None
        return
    shown = time.monotonic()
    # On ZeroGPU the run happens in another process the event cannot reach; `cancels=` stops it.
    for step in bench(request, None if ON_ZEROGPU else cancel):
        if step.total:
            progress((step.done, step.total), desc=f"{step.model} · {step.task}", unit="items")
        if step.result is not None:
            outcomes.append(step.result)
            yield (status_markdown(outcomes, request), run_results_frame(outcomes),
                   run_summary(outcomes), cancel)
        elif time.monotonic() - shown > STATUS_EVERY_S:  # what runs now, not "starting" throughout
            shown = time.monotonic()
            yield (status_markdown(outcomes, request, now_text(step)), gr.skip(), gr.skip(), cancel)
    final = status_markdown(outcomes, request) + ("\n\nCancelled." if cancel.is_set() else "")
    yield final, run_results_frame(outcomes), run_summary(outcomes), None


def precision_summary() -> str:
    choice = auto_cpu_choice()
    return (f"**auto on CPU = {choice.precision}**: {choice.reason}. Full offline suite (`billion-mc`, "
            f"all items, acc_norm, 95% interval) at each precision, and how often each precision's next "
            f"token is fp32's on the suite's text (top-1 = fp32, with the KL divergence); source: "
            f"`assets/precision_quality.json` (`benchmarks/precision_quality.py`).")


def precision_table() -> pd.DataFrame:
    return pd.DataFrame(quality_rows(), columns=QUALITY_COLUMNS)


def adapter_choices(store: Store) -> list[tuple[str, str]]:
    """Adapters sent from the trainer ("Send to Arena"), benchmarked on top of their base model."""
    return [(f"{c.name} · LoRA adapter on {c.alias}", c.name) for c in registered_contestants(store)
            if c.adapter and Path(c.adapter).is_dir()]


def refresh_models(ctx: AppContext, chosen: list[str] | None):
    """The model list now: loadable models, the trainer's adapters, endpoint models."""
    choices = model_choices(ctx.hub)[0] + adapter_choices(ctx.store) + endpoint_choices(ctx)
    values = {value for _, value in choices}
    return gr.Dropdown(choices=choices, value=[c for c in (chosen or []) if c in values])


def cancel_run(cancel: threading.Event | None) -> str:
    if cancel is None:
        return "Nothing is running."
    cancel.set()
    return "Cancelling after the current item; finished tasks stay stored."


# -- the tab -------------------------------------------------------------------------------------

def build_leaderboard_tab(ctx: AppContext) -> None:
    choices, unavailable = model_choices(ctx.hub)
    default = default_model(choices)
    # the trainer's adapters and models.yaml's endpoints: results are stored for everyone
    choices = choices + adapter_choices(ctx.store) + endpoint_choices(ctx)
    board = _board(ctx)
    form = _bench_form(choices, default, unavailable)
    cancel = gr.State(None)
    _wire(ctx, board, form, cancel)


def _board(ctx: AppContext) -> SimpleNamespace:
    """The views of stored results: filters, the model x benchmark matrix, all results, plots."""
    gr.Markdown("Scores measured here (latest run per model, task, metric, dtype and quantization; "
                "every run stays stored) beside **published** figures from model cards and papers, "
                "labelled with their source, setting and checkpoint. Published figures were measured "
                "elsewhere with other settings: compare them with care. `billion-mc` is this "
                "project's own offline suite, not MMLU.")
    with gr.Row():
        family = gr.Dropdown(families(all_models()), multiselect=True, label="Family (empty: all)")
        size = gr.Dropdown(list(SIZE_BANDS), value="any size", label="Size")
        kinds = gr.CheckboxGroup(list(KINDS), value=list(KINDS), label="Show")
        search = gr.Textbox(label="Search", placeholder="e.g. smollm2 humaneval")
    sort_by = gr.Dropdown(SORT_CHOICES, value=SORT_CHOICES[0], label="Sort by", allow_custom_value=True)
    matrix = gr.Dataframe(bind(initial_matrix, ctx.store), interactive=False, label="Leaderboard",
                          elem_id="leaderboard-matrix")
    gr.Markdown("One row per model and precision (adapters are rows of their own), one column per "
                "benchmark: the headline metric in %, with its 95% interval when measured here, "
                "or \"(published)\". The average covers only the benchmarks a row has (see "
                "\"benchmarks\"): compare rows with the same count.")
    with gr.Accordion("Quick runs (limited to a few items: not ranked with full runs)", open=False):
        quick = gr.Dataframe(bind(initial_quick_runs, ctx.store), interactive=False, label="Quick runs")
    with gr.Accordion("All results (one row per model, benchmark and metric)", open=False):
        with gr.Accordion("Columns", open=False):
            columns = gr.CheckboxGroup(COLUMNS, value=DEFAULT_COLUMNS, label="Columns shown")
        table = gr.Dataframe(bind(initial_table, ctx.store), interactive=False, wrap=True, label="All results")
        build_detail_export(ctx, [family, size, kinds, search])
    with gr.Row():
        score_plot = gr.Plot(bind(initial_score_plot, ctx.store), label="Accuracy vs size", show_label=False)
        speed_plot = gr.Plot(bind(initial_speed_plot, ctx.store), label="Speed vs memory", show_label=False)
    refresh = gr.Button("Refresh")
    with gr.Accordion("Precision on CPU: quality cost and speed (what \"auto\" picks)", open=False):
        gr.Markdown(precision_summary)
        gr.Dataframe(precision_table, interactive=False, wrap=True, label="Offline suite by precision")
    return SimpleNamespace(family=family, size=size, kinds=kinds, search=search, sort_by=sort_by,
                           matrix=matrix, quick=quick, columns=columns, table=table,
                           score_plot=score_plot, speed_plot=speed_plot, refresh=refresh)


def _bench_form(choices: list, default: str | None, unavailable: str) -> SimpleNamespace:
    """The form that runs a benchmark from the page, and its results."""
    with gr.Accordion("Run benchmark", open=False):
        with gr.Row():
            models = gr.Dropdown(choices, value=[default] if default else [], multiselect=True,
                                 label="Models (those that can load here)", scale=2)
            tasks = gr.CheckboxGroup(TASK_LABELS, value=list(BENCH_DEFAULTS.tasks), label="Tasks", scale=3)
        with gr.Accordion("Models that cannot load here, and why", open=False):
            gr.Markdown(unavailable)
        with gr.Row():
            limit = gr.Number(value=PAGE_LIMIT, precision=0, label="Limit per task (0: full task)")
            dtype = gr.Radio(["auto", "fp32", "bf16"], value=BENCH_DEFAULTS.dtype,
                             label="Precision (float dtype)")
            quantization = gr.Radio(["none", "int8", "int4"], value=BENCH_DEFAULTS.quantization,
                                    label="int8 / int4 (CPU: billion's kernels; GPU: bitsandbytes)")
            seed = gr.Number(value=BENCH_DEFAULTS.seed, precision=0, label="Seed (item sample, few-shot)")
        with gr.Row():
            prompt_lengths = gr.Textbox(",".join(map(str, BENCH_DEFAULTS.prompt_lengths)),
                                        label="Speed: prompt lengths (tokens)")
            new_tokens = gr.Slider(2, 256, value=BENCH_DEFAULTS.new_tokens, step=1,
                                   label="Speed: new tokens per run")
            repeats = gr.Slider(1, 10, value=BENCH_DEFAULTS.repeats, step=1, label="Speed: timed runs")
        for component, name in ((limit, "limit"), (seed, "seed"), (new_tokens, "new_tokens"),
                                (repeats, "repeats")):
            named_number(component, name)
        with gr.Row():
            run = gr.Button("Run benchmark", variant="primary")
            stop = gr.Button("Cancel")
        status = gr.Markdown(label="Status")
        run_table = gr.Dataframe(run_results_frame([]), label="This run", interactive=False, wrap=True)
        summary = gr.JSON(label="Summary", visible=False)
    return SimpleNamespace(models=models, tasks=tasks, limit=limit, dtype=dtype, quantization=quantization,
                           seed=seed, prompt_lengths=prompt_lengths, new_tokens=new_tokens,
                           repeats=repeats, run=run, stop=stop, status=status, run_table=run_table,
                           summary=summary)


def _wire(ctx: AppContext, board: SimpleNamespace, form: SimpleNamespace, cancel: gr.State) -> None:
    family, size, kinds, search, sort_by = board.family, board.size, board.kinds, board.search, board.sort_by
    columns, table, score_plot, speed_plot = board.columns, board.table, board.score_plot, board.speed_plot
    matrix, quick, refresh = board.matrix, board.quick, board.refresh
    models, tasks, limit, dtype, quantization = form.models, form.tasks, form.limit, form.dtype, form.quantization
    seed, prompt_lengths, new_tokens, repeats = form.seed, form.prompt_lengths, form.new_tokens, form.repeats
    run, stop, status, run_table, summary = form.run, form.stop, form.status, form.run_table, form.summary
    filters = [family, size, kinds, search, columns]
    view = [table, score_plot, speed_plot]
    show = bind(leaderboard_view, ctx.store)
    show_matrix = bind(matrix_view, ctx.store)
    matrix_in, matrix_out = [family, size, kinds, search, sort_by], [matrix, quick]
    for control in (family, size, kinds, columns):
        control.change(show, filters, view, api_name=False)
    for control in (family, size, kinds, sort_by):
        control.change(show_matrix, matrix_in, matrix_out, api_name=False)
    search.submit(show, filters, view, api_name=False)
    search.submit(show_matrix, matrix_in, matrix_out, api_name=False)
    refresh.click(show, filters, view, api_name="leaderboard")
    refresh.click(show_matrix, matrix_in, matrix_out, api_name="leaderboard_matrix")
    # page load and Refresh: adapters sent from the trainer since the page was built show up
    gr.on([refresh.click], bind(refresh_models, ctx), models, models, api_name="bench_models")
    gr.on(None, bind(refresh_models, ctx), models, models, api_name=False)
    bench_inputs = [models, tasks, limit, dtype, quantization, seed, prompt_lengths, new_tokens,
                    repeats]
    bench = on_device(bench_on_device, ctx, _device_seconds)
    running = run.click(bind(run_benchmark, bench, ctx.downloads), bench_inputs, [status, run_table, summary, cancel],
                        api_name="bench")
    running.then(show, filters, view, api_name=False).then(show_matrix, matrix_in, matrix_out,
                                                           api_name=False)
    stop.click(cancel_run, cancel, status, api_name="bench_cancel",
               cancels=[running] if ON_ZEROGPU else None)
