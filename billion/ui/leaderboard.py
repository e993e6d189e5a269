"""Leaderboard tab: measured scores beside published ones, filters, plots, and "Run benchmark".

Endpoints for scripts: `leaderboard` (filters -> table and plots), `bench` (models, tasks and
settings -> status, this run's table and a JSON summary; the results are stored) and
`bench_cancel` (stops this session's run after the current item; one gradio_client.Client is one
session). Figures use
matplotlib's object API (no pyplot state); gr.Plot closes them once drawn.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterator

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from billion.bench.runner import (HUMANEVAL, SPEED, BenchRequest, RunProgress, TaskOutcome,
                                  estimate_seconds, iter_run)
from billion.bench.tasks import TASKS
from billion.core.errors import BillionError
from billion.bench.leaderboard import (COLUMNS, DEFAULT_COLUMNS, KINDS, MEASURED, SIZE_BANDS,
                                 build_leaderboard, families, filter_leaderboard,
                                 run_results_frame, run_summary, score_points, select_columns,
                                 speed_points)
from billion.context import AppContext
from billion.core.precision import QUALITY_COLUMNS, auto_cpu_choice, quality_rows
from billion.core.registry import all_models
from billion.store.store import Store
from billion.ui.arena_ratings import current_ratings
from billion.ui.common import (ON_ZEROGPU, bind, default_model, friendly_errors, model_choices,
                               named_number, on_device)
from billion.endpoints.config import configured_endpoints
from billion.ui.endpoints import endpoint_choices

TASK_LABELS = [(f"{t.name} · {t.display_name}" + ("" if t.offline else " (needs the hub)"), t.name)
               for t in TASKS] + [("humaneval · HumanEval pass@1 (greedy)", HUMANEVAL),
                                  ("speed · time to first token, tokens/s, memory", SPEED)]
PLOT_MARKERS = {"billion-mc": ("o", "tab:blue"), "billion-mc-cloze": ("D", "tab:green"),
                "mmlu": ("^", "tab:purple")}
PUBLISHED_MARKERS = ["s", "v", "X", "P"]
SIZE_TICKS = [100, 200, 500, 1000, 2000, 5000, 10000]
QUANT_OFFSET = {"none": 1.0, "int8": 1.07, "int4": 1.14}  # spread variants of one size apart
BENCH_DEFAULTS = BenchRequest()
#: items per task of a run started from the page: a click should take minutes, not hours
PAGE_LIMIT = 20


# -- the table and plots -------------------------------------------------------------------------

def current_board(store: Store) -> pd.DataFrame:
    ratings = current_ratings(store)
    return build_leaderboard(store.bench_results_frame(), all_models(), ratings if ratings.ratings else None)


def filtered_board(store: Store, family: list[str] | None, size: str, kinds: list[str] | None,
                   search: str) -> pd.DataFrame:
    if size not in SIZE_BANDS:
        raise BillionError(f"Unknown size band {size!r}: use one of {', '.join(SIZE_BANDS)}.")
    return filter_leaderboard(current_board(store), family or None, SIZE_BANDS[size],
                              kinds if kinds is not None else KINDS, search or "")


def _empty_figure(title: str, text: str) -> Figure:
    fig = Figure(figsize=(6, 2.5), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def score_figure(points: pd.DataFrame) -> Figure:
    """Accuracy vs parameters: measured with 95% bars (filled), published MMLU-like (hollow)."""
    title = "Multiple-choice accuracy vs size"
    if points.empty:
        return _empty_figure(title, "No measured or published multiple-choice scores in this view")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    measured = points[points["kind"] == MEASURED]
    for task, group in measured.groupby("benchmark"):
        marker, color = PLOT_MARKERS.get(task, ("o", "tab:gray"))
        x = group["params"] * group["quantization"].map(QUANT_OFFSET).fillna(1.0)
        bars = [(group["score"] - group["low"]).clip(lower=0).fillna(0),
                (group["high"] - group["score"]).clip(lower=0).fillna(0)]
        ax.errorbar(x, group["score"], yerr=bars, fmt=marker, color=color, capsize=4,
                    label=f"measured: {task} (95% CI)")
        for xi, yi, label in zip(x, group["score"], group["label"]):
            ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=7)
    published = points[points["kind"] != MEASURED]
    for (benchmark, group), marker in zip(published.groupby("benchmark"), PUBLISHED_MARKERS * 3):
        ax.scatter(group["params"], group["score"], marker=marker, facecolors="none",
                   edgecolors="tab:orange", label=f"published: {benchmark} (settings vary)")
        for xi, yi, label in zip(group["params"], group["score"], group["label"]):
            ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(5, -9), fontsize=7,
                        color="tab:orange")
    ax.axhline(25.0, linestyle=":", color="grey", label="chance (4 choices)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(SIZE_TICKS))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("parameters (millions, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    return fig


def speed_figure(points: pd.DataFrame) -> Figure:
    title = "Decode speed vs peak memory"
    if points.empty:
        return _empty_figure(title, "No speed results in this view: run the 'speed' task")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.scatter(points["memory_mib"], points["tokens_per_s"], color="tab:blue")
    for _, p in points.iterrows():
        ax.annotate(f"{p['label']} @{p['prompt_tokens']}", (p["memory_mib"], p["tokens_per_s"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlabel("peak memory (MiB; process RSS on CPU, max allocated on GPU)")
    ax.set_ylabel("decode tokens/s (shortest prompt measured)")
    ax.set_title(title)
    return fig


@friendly_errors
def leaderboard_view(store: Store, family: list[str] | None, size: str, kinds: list[str] | None,
                     search: str, columns: list[str] | None) -> tuple[pd.DataFrame, Figure, Figure]:
    """The table with the chosen columns, and both plots of the filtered rows."""
    board = filtered_board(store, family, size, kinds, search)
    return (select_columns(board, columns), score_figure(score_points(board)),
            speed_figure(speed_points(board)))


def initial_table(store: Store) -> pd.DataFrame:
    return select_columns(current_board(store), DEFAULT_COLUMNS)


def initial_score_plot(store: Store) -> Figure:
    return score_figure(score_points(current_board(store)))


def initial_speed_plot(store: Store) -> Figure:
    return speed_figure(speed_points(current_board(store)))


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


def status_markdown(outcomes: list[TaskOutcome], request: BenchRequest, running: str = "") -> str:
    stored = sum(len(o.scores) for o in outcomes)
    failed = [o for o in outcomes if o.error]
    lines = [f"**{len(outcomes)} of {len(request.models) * len(request.tasks)} tasks done**, "
             f"{stored} scores stored." + (f" Now: {running}" if running else "")]
    lines += [f"- ⚠️ {o.error}" for o in failed]
    lines += [f"- ⏱️ {o.model} · {o.task}: {note}" for o in outcomes for note in o.notes]
    lines += [f"- {o.model} · {o.task}: cancelled, nothing stored" for o in outcomes if o.cancelled]
    if request.limit:
        lines.append(f"Limited to {request.limit} items per task: not comparable to full runs.")
    return "\n".join(lines)


@friendly_errors
def run_benchmark(bench: BenchFn, models, tasks, limit, dtype, quantization, seed, prompt_lengths,
                  new_tokens, repeats, progress=gr.Progress()):
    """Run and store. Yields (status, this run's table, JSON summary, cancel-event state)."""
    request = request_from(models, tasks, limit, dtype, quantization, seed, prompt_lengths,
                           new_tokens, repeats)
    cancel = threading.Event()
    outcomes: list[TaskOutcome] = []
    yield status_markdown(outcomes, request, "starting"), run_results_frame(outcomes), None, cancel
    # On ZeroGPU the run happens in another process the event cannot reach; `cancels=` stops it.
    for step in bench(request, None if ON_ZEROGPU else cancel):
        if step.total:
            progress((step.done, step.total), desc=f"{step.model} · {step.task}", unit="items")
        if step.result is not None:
            outcomes.append(step.result)
            yield (status_markdown(outcomes, request, step.message), run_results_frame(outcomes),
                   run_summary(outcomes), cancel)
    final = status_markdown(outcomes, request) + ("\n\nCancelled." if cancel.is_set() else "")
    yield final, run_results_frame(outcomes), run_summary(outcomes), None


def precision_summary() -> str:
    choice = auto_cpu_choice()
    return (f"**auto on CPU = {choice.precision}**: {choice.reason}. Full offline suite (`billion-mc`, "
            f"all items, acc_norm, 95% interval) at each precision; source: "
            f"`assets/precision_quality.json` (`benchmarks/precision_quality.py`).")


def precision_table() -> pd.DataFrame:
    return pd.DataFrame(quality_rows(), columns=QUALITY_COLUMNS)


def cancel_run(cancel: threading.Event | None) -> str:
    if cancel is None:
        return "Nothing is running."
    cancel.set()
    return "Cancelling after the current item; finished tasks stay stored."


# -- the tab -------------------------------------------------------------------------------------

def build_leaderboard_tab(ctx: AppContext) -> None:
    choices, unavailable = model_choices(ctx.hub)
    default = default_model(choices)
    choices = choices + endpoint_choices(ctx)  # models.yaml's: results are stored for everyone
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
    with gr.Accordion("Columns", open=False):
        columns = gr.CheckboxGroup(COLUMNS, value=DEFAULT_COLUMNS, label="Columns shown")
    table = gr.Dataframe(bind(initial_table, ctx.store), interactive=False, wrap=True, label="Leaderboard")
    with gr.Row():
        score_plot = gr.Plot(bind(initial_score_plot, ctx.store), label="Accuracy vs size", show_label=False)
        speed_plot = gr.Plot(bind(initial_speed_plot, ctx.store), label="Speed vs memory", show_label=False)
    refresh = gr.Button("Refresh")
    with gr.Accordion("Precision on CPU: quality cost and speed (what \"auto\" picks)", open=False):
        gr.Markdown(precision_summary)
        gr.Dataframe(precision_table, interactive=False, wrap=True, label="Offline suite by precision")

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
        run_table = gr.Dataframe(label="This run", interactive=False, wrap=True)
        summary = gr.JSON(label="Summary", visible=False)
    cancel = gr.State(None)

    filters = [family, size, kinds, search, columns]
    view = [table, score_plot, speed_plot]
    show = bind(leaderboard_view, ctx.store)
    for control in (family, size, kinds, columns):
        control.change(show, filters, view, api_name=False)
    search.submit(show, filters, view, api_name=False)
    refresh.click(show, filters, view, api_name="leaderboard")
    bench_inputs = [models, tasks, limit, dtype, quantization, seed, prompt_lengths, new_tokens,
                    repeats]
    bench = on_device(bench_on_device, ctx, _device_seconds)
    running = run.click(bind(run_benchmark, bench), bench_inputs, [status, run_table, summary, cancel],
                        api_name="bench")
    running.then(show, filters, view, api_name=False)
    stop.click(cancel_run, cancel, status, api_name="bench_cancel",
               cancels=[running] if ON_ZEROGPU else None)
