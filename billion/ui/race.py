"""Speculative race tab: plain vs speculative decoding on one prompt, replayed at their true pace.

The GPU side (`race_steps`, `sweep_steps`) takes and returns picklable objects only: it runs the
engine in a thread and yields step names for the progress bar, then the result. The page side
validates input, drives the progress bar and renders (`billion.ui.race_render`).

Endpoints for scripts: `race` (a JSON summary first among its outputs) and `race_sweep`.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import gradio as gr

from billion.context import AppContext
from billion.core.availability import HubProbe, available
from billion.core.errors import BillionError
from billion.core.loading import pick_device
from billion.core.registry import all_models, drafts_for, resolve
from billion.core.sampling import sampling_from
from billion.spec.decoding import MAX_K, KSchedule
from billion.spec.request import suggested_k
from billion.endpoints.config import RACE_LOCAL_ONLY
from billion.spec.race import (EXAMPLE_PROMPTS, RACE_DEFAULTS, RaceRequest, RaceResult, SweepPoint, k_sweep,
                               parse_draft, run_race)
from billion.ui.common import bind, default_model, friendly_errors, model_choices, named_number, on_device
from billion.ui.downloads import STOPPED_NOTE, download_notes, to_download
from billion.ui.race_render import (RaceView, badge_html, build_view, figures_markdown, plain_pane,
                                    race_summary, replay_frames, rounds_html, spec_pane, stats_markdown,
                                    sweep_figure, sweep_markdown)

SWEEP_KS = tuple(range(1, 9))
#: plain/speculative pairs per k: a median and a range rather than one noisy ratio
SWEEP_REPEATS = 3
PROMPT_LOOKUP = "prompt-lookup"
SELF = "self"
T = TypeVar("T")
DEFAULT_RACE = RaceRequest("")


QUANT_CHOICES = [("Quantized self-draft: the target itself at int8 (same weights, shares its cache)",
                  "quant:int8"),
                 ("Quantized self-draft: the target itself at int4 (same weights, shares its cache)",
                  "quant:int4")]


def draft_choices(target: str | None, hub: HubProbe | None = None) -> list[tuple[str, str]]:
    """Prompt lookup, self-speculation, the target quantized (CPU kernels), the registry's smaller
    same-tokenizer models, then other models that load here, drafting through text."""
    choices = [("Prompt lookup (copies n-grams from the prompt, no model)", PROMPT_LOOKUP),
               ("Self-speculation (the target's first N layers)", SELF)]
    if pick_device().type == "cpu":
        choices += QUANT_CHOICES
    if target:
        try:
            spec = resolve(target)
        except BillionError:
            return choices
        same = [d for d in drafts_for(spec) if available(d, hub).ok]
        choices += [(f"{d.alias} · {d.size_label} (draft model)", d.alias) for d in same]
        others = [m for m in all_models()
                  if m.tokenizer_group != spec.tokenizer_group and available(m, hub).ok]
        choices += [(f"{m.alias} · {m.size_label} (another tokenizer: drafts through text)", m.alias)
                    for m in others]
    return choices


def draft_name(draft: str, self_layers: float) -> str:
    if draft == SELF and not (isinstance(self_layers, (int, float)) and math.isfinite(self_layers)):
        raise gr.Error(f"self_layers must be a whole number of layers (got {self_layers}).")
    return f"self:{int(self_layers)}" if draft == SELF else draft


def whole_k(k: float) -> int:
    if not isinstance(k, (int, float)) or not math.isfinite(k) or k != int(k) or not 1 <= k <= MAX_K:
        raise gr.Error(f"k must be a whole number from 1 to {MAX_K} (got {k}).")
    return int(k)


def race_request(ctx: AppContext, prompt: str, target: str, draft: str, self_layers: float, k: float,
                 dynamic: bool, temperature: float, max_new_tokens: float, reference: bool = False,
                 warmup: bool = True) -> RaceRequest:
    """Check the page's input; the engine checks the rest (context length, draft size, tokenizer)."""
    name = draft_name(draft or "", self_layers)
    settings = sampling_from(dict(temperature=temperature, max_new_tokens=max_new_tokens), RACE_DEFAULTS)
    request = RaceRequest(prompt, target, name, KSchedule(whole_k(k), dynamic=bool(dynamic)), settings,
                          bool(reference), bool(warmup)).validated(ctx.limits)
    choice = parse_draft(name)
    offered = {value for _, value in draft_choices(target, ctx.hub)}
    if choice.kind in ("model", "quant") and choice.label not in offered:
        raise gr.Error(f"'{choice.label}' is not an available draft for {target}: pick prompt "
                       "lookup, self-speculation, or one of the drafts listed for this target.")
    return request


def race_models(request: RaceRequest) -> list[str]:
    """The models a race loads: the target, and the draft when it is a model of its own."""
    choice = parse_draft(request.draft)
    return [request.target] + ([choice.model] if choice.kind == "model" and choice.model else [])


def in_steps(work: Callable[[Callable[[str], None], threading.Event], T]) -> Iterator[str | T]:
    """Run work(say, cancel) in a thread; yield each step it says, then its result (or raise its error).

    Closing the iterator early (the page went away) asks the work to stop.
    """
    steps: queue.Queue = queue.Queue()
    cancel = threading.Event()
    outcome: dict[str, Any] = {}
    done = object()

    def run() -> None:
        try:
            outcome["result"] = work(steps.put, cancel)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc
        finally:
            steps.put(done)

    thread = threading.Thread(target=run, name="billion-race", daemon=True)
    thread.start()
    try:
        while (step := steps.get()) is not done:
            yield step
    finally:
        if "result" not in outcome and "error" not in outcome:
            cancel.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["result"]


def _race_seconds(request: RaceRequest) -> int:
    return int(60 + request.settings.max_new_tokens * (0.4 if request.reference else 0.3))


def race_steps(ctx: AppContext, request: RaceRequest) -> Iterator[str | RaceView]:
    """Load the target, warm up, race; yields step names, then a RaceView (all picklable)."""
    def work(say: Callable[[str], None], cancel: threading.Event) -> RaceView:
        say(f"loading {request.target}")
        with ctx.models.lease(request.target, request.load_options()) as target:  # not evicted mid-race
            result = run_race(target, request.draft, request.schedule, request.settings, request.messages,
                              reference=request.reference, warmup=request.warmup, cancel=cancel, progress=say,
                              models=ctx.models)
            return build_view(result, target.tokenizer)
    yield from in_steps(work)


def _sweep_seconds(request: RaceRequest) -> int:
    # each k: SWEEP_REPEATS pairs of plain and speculative runs
    return int(60 + request.settings.max_new_tokens * 0.3 * (2 * SWEEP_REPEATS * len(SWEEP_KS) + 1))


def sweep_steps(ctx: AppContext, request: RaceRequest) -> Iterator[str | tuple[SweepPoint, ...]]:
    def work(say: Callable[[str], None], cancel: threading.Event) -> tuple[SweepPoint, ...]:
        say(f"loading {request.target}")
        with ctx.models.lease(request.target, request.load_options()) as target:  # not evicted mid-sweep
            return k_sweep(target, request.draft, request.settings, request.messages, SWEEP_KS,
                           warmup=request.warmup, progress=say, models=ctx.models, repeats=SWEEP_REPEATS)
    yield from in_steps(work)


def drive(steps: Iterator[str | T], progress: gr.Progress, expected: int) -> T:
    """Show each step on the progress bar; return the last item (the result)."""
    done = 0
    for item in steps:
        if not isinstance(item, str):
            return item
        progress(min(done / expected, 0.99), desc=item)
        done += 1
    raise BillionError("The race ended without a result: try again.")


StepsFn = Callable[[RaceRequest], Iterator[Any]]


@friendly_errors
def race(ctx: AppContext, steps: StepsFn, prompt: str, target: str, draft: str, self_layers: float,
         k: float, dynamic: bool, temperature: float, max_new_tokens: float, reference: bool,
         warmup: bool, progress: gr.Progress = gr.Progress()):
    """Yields (JSON summary, lossless badge, figures, detail stats, rounds, race state): download
    progress in the figures pane while a hub model is fetched (first use here), then the race."""
    request = race_request(ctx, prompt, target, draft, self_layers, k, dynamic, temperature,
                           max_new_tokens, reference, warmup)
    for note in download_notes(to_download(race_models(request)), ctx.downloads):
        yield gr.skip(), gr.skip(), note, gr.skip(), gr.skip(), gr.skip()
    view = drive(steps(request), progress, expected=3 + request.warmup + request.reference)
    result: RaceResult = view.result
    yield (race_summary(result), badge_html(result), figures_markdown(result), stats_markdown(result),
           rounds_html(view), view)


@friendly_errors
def sweep(ctx: AppContext, steps: StepsFn, prompt: str, target: str, draft: str, self_layers: float,
          temperature: float, max_new_tokens: float, warmup: bool, progress: gr.Progress = gr.Progress()):
    """Yields (plot of measured vs predicted speedup, table); download progress in the table first."""
    request = race_request(ctx, prompt, target, draft, self_layers, 1, False, temperature,
                           max_new_tokens, warmup=warmup)
    for note in download_notes(to_download(race_models(request)), ctx.downloads):
        yield gr.skip(), note
    points = drive(steps(request), progress, expected=2 + request.warmup + len(SWEEP_KS))
    yield sweep_figure(points), sweep_markdown(points)


def replay(view: RaceView | None) -> Iterator[tuple[str, str]]:
    """Both outputs growing at their recorded pace (at most ~20 s), side by side."""
    if view is None:
        return
    started = time.perf_counter()
    for frame in replay_frames(view.plain_times, view.spec_times):
        wait = frame.at_s - (time.perf_counter() - started)
        if wait > 0:
            time.sleep(wait)
        yield plain_pane(view, frame.plain, frame.clock_s), spec_pane(view, frame.speculative, frame.clock_s)


def stopped() -> str:
    """Stop cancels the race or sweep (gradio's `cancels=`): a download nobody else waits for ends,
    a race stops between rounds (in_steps' cancel)."""
    return STOPPED_NOTE


def _draft_update(ctx: AppContext, target: str):
    choices = draft_choices(target, ctx.hub)
    return gr.update(choices=choices, value=PROMPT_LOOKUP)


INTRO = ("Plain decoding runs first, then speculative decoding (never both at once: they would "
         "share the cores), after a short warm-up. Then both outputs replay side by side at "
         "their recorded pace. Grounded prompts (repeat, edit, answer from a text) are where "
         "prompt lookup shines; the quantized self-draft (the target itself at int8/int4) also "
         "helps on open questions; a model with another tokenizer drafts through text.\n\n"
         + RACE_LOCAL_ONLY)


def _draft_changed(draft: str | None):
    """N shows for self drafts; k starts at the new source's own (billion.spec.request.SUGGESTED_K:
    a ceiling for prompt lookup and quant drafts, which stop earlier on their own)."""
    return gr.update(visible=draft == SELF), gr.update(value=suggested_k(draft or ""))


def build_race_tab(ctx: AppContext) -> None:
    choices, unavailable = model_choices(ctx.hub)
    default = default_model(choices)
    gr.Markdown(INTRO)
    with gr.Row():
        target = gr.Dropdown(choices, value=default, label="Target model", scale=3)
        draft = gr.Dropdown(draft_choices(default, ctx.hub), value=PROMPT_LOOKUP, label="Draft source",
                            scale=3, allow_custom_value=True)
        self_layers = gr.Slider(1, 40, value=8, step=1, label="N (layers that draft)", visible=False,
                                info="fewer than the target's layers (SmolLM2-135M has 30)", scale=2)
    with gr.Accordion("Models that cannot load here, and why", open=False):
        gr.Markdown(unavailable)
    with gr.Row():
        k = gr.Slider(1, MAX_K, value=suggested_k(PROMPT_LOOKUP), step=1, label="k (tokens drafted per round)")
        dynamic = gr.Checkbox(label="Dynamic k (grow after a fully accepted round, shrink after a rejection)")
        temperature = gr.Slider(0, 2, value=RACE_DEFAULTS.temperature, step=0.05,
                                label="Temperature (0 = greedy)")
        max_new_tokens = gr.Slider(1, ctx.limits.max_new_tokens, value=RACE_DEFAULTS.max_new_tokens,
                                   step=1, label="Max new tokens")
    for component, name in ((self_layers, "self_layers"), (k, "k"), (temperature, "temperature"),
                            (max_new_tokens, "max_new_tokens")):
        named_number(component, name)
    with gr.Row():
        reference = gr.Checkbox(label="Also run Hugging Face's assisted generation (reference)")
        warmup = gr.Checkbox(value=DEFAULT_RACE.warmup, label="Warm up first (a few tokens of each run)")
    prompt = gr.Textbox(label="Prompt", lines=5, max_lines=14, value=EXAMPLE_PROMPTS[0][1])
    gr.Examples([[text] for _, text in EXAMPLE_PROMPTS], inputs=[prompt],
                example_labels=[label for label, _ in EXAMPLE_PROMPTS], label="Examples")
    with gr.Row():
        go = gr.Button("Race", variant="primary")
        again = gr.Button("Replay")
        sweep_button = gr.Button("k sweep (k = 1..8)")
        stop = gr.Button("Stop")
    badge = gr.HTML()
    figures = gr.Markdown()
    with gr.Row(equal_height=True):
        plain_out = gr.HTML()
        spec_out = gr.HTML()
    with gr.Accordion("Details: rounds, acceptance, timing, predicted speedup", open=False):
        stats = gr.Markdown()
        rounds = gr.HTML()
    with gr.Accordion("Raw result (what the `race` API returns)", open=False):
        summary = gr.JSON()
    sweep_plot = gr.Plot(label="k sweep: measured vs predicted speedup")
    sweep_table = gr.Markdown()
    state = gr.State()

    target.change(bind(_draft_update, ctx), target, draft, api_name=False)
    draft.change(_draft_changed, draft, [self_layers, k], api_name=False)
    race_inputs = [prompt, target, draft, self_layers, k, dynamic, temperature, max_new_tokens, reference,
                   warmup]
    race_on_device = on_device(race_steps, ctx, _race_seconds)
    raced = go.click(bind(race, ctx, race_on_device), race_inputs,
                     [summary, badge, figures, stats, rounds, state], api_name="race")
    raced.success(replay, state, [plain_out, spec_out], api_name=False, show_progress="hidden")
    again.click(replay, state, [plain_out, spec_out], api_name=False, show_progress="hidden")
    swept = sweep_button.click(bind(sweep, ctx, on_device(sweep_steps, ctx, _sweep_seconds)),
                               [prompt, target, draft, self_layers, temperature, max_new_tokens, warmup],
                               [sweep_plot, sweep_table], api_name="race_sweep")
    stop.click(stopped, None, figures, api_name="race_stop", cancels=[raced, swept])
