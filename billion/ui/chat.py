"""Chat tab: one model, or two named models side by side answering the same prompt."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gradio as gr

from billion.context import AppContext
from billion.core.chat import CHAT_DEFAULTS, ChatRequest, plain_messages
from billion.core.errors import BillionError
from billion.core.download_jobs import follow_many, needs_download
from billion.core.generation import GenerationResult, GenerationUpdate, interleave
from billion.core.loading import pick_device
from billion.core.precision import auto_cpu_choice, available_precisions
from billion.core.recommended import recommended_sampling
from billion.core.registry import PYTHIA_CHECKPOINTS, resolve
from billion.core.sampling import sampling_from
from billion.endpoints.client import chat_streams
from billion.endpoints.config import is_endpoint_name
from billion.ui.common import bind, default_model, friendly_errors, model_choices, named_number, on_device
from billion.ui.downloads import progress_line
from billion.ui.endpoints import all_endpoints, build_endpoint_adder, endpoint_choices
from billion.ui.session import on_page_load, page_token, saving


def stats_line(result: GenerationResult | None) -> str:
    if result is None:
        return ""
    precision = getattr(result, "precision", "")  # endpoint answers carry none
    precision = f" ({precision})" if precision else ""
    host = getattr(result, "host", None)
    if host is not None:  # an endpoint's answer: timed here, memory is the server's business
        return (f"**{result.decode_tokens_per_s:.1f} tokens/s** over the network, from {host} · "
                f"first token {result.ttft_s:.2f} s · {result.completion_tokens} tokens · "
                f"stop: {result.finish_reason}")
    return (f"**{result.decode_tokens_per_s:.1f} tokens/s**{precision} · first token {result.ttft_s:.2f} s · "
            f"{len(result.token_ids)} tokens · {memory_text(result)} · stop: {result.finish_reason}")


def memory_text(result: GenerationResult) -> str:
    """This model's weights; the process peak only as what it is (on CPU it holds every loaded
    model, so two models side by side showed the same figure). Per-model peak: the speed task."""
    if result.weight_bytes:
        return (f"weights {result.weight_bytes / 2**20:.0f} MiB (server peak memory "
                f"{result.peak_memory_bytes / 2**20:.0f} MiB, all models)")
    return f"server peak memory {result.peak_memory_bytes / 2**20:.0f} MiB"


def precision_info() -> str:
    """What "auto" means here, for the Precision control (CPU: the measured fast choice)."""
    if pick_device().type != "cpu":
        return "auto: bf16 (or fp16) on a GPU"
    choice = auto_cpu_choice()
    return f"auto on this CPU = {choice.precision} ({choice.reason})"


def _turn(history: list[dict], prompt: str, update: GenerationUpdate | None) -> list[dict]:
    answer = update.text if update else ""
    return history + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _generation_seconds(prompt, history_a, history_b, compare, model_a, model_b, system, temperature,
                        top_p, top_k, repetition_penalty, max_new_tokens, seed, dtype,
                        checkpoint="main", endpoints=None) -> int:
    return int(30 + int(max_new_tokens) * (0.2 if compare else 0.1))


def with_checkpoint(name: str, checkpoint: str | None) -> str:
    """The model at the picked training checkpoint, where it has published ones (Pythia)."""
    if not checkpoint or checkpoint == "main" or not name or is_endpoint_name(name) \
            or not resolve(name).revisions:
        return name
    return f"{name}@{checkpoint}"


def chat_request(ctx: AppContext, prompt: str, histories: list[list[dict]], compare: bool,
                 model_a: str, model_b: str, system: str, temperature: float, top_p: float,
                 top_k: float, repetition_penalty: float, max_new_tokens: float,
                 seed: float | None, dtype: str, checkpoint: str) -> ChatRequest:
    settings = sampling_from(dict(temperature=temperature, top_p=top_p, top_k=top_k,
                                  repetition_penalty=repetition_penalty,
                                  max_new_tokens=max_new_tokens, seed=seed), CHAT_DEFAULTS)
    names = (model_a, model_b) if compare else (model_a,)
    return ChatRequest(prompt, models=tuple(with_checkpoint(n, checkpoint) for n in names),
                       system=system or "", histories=tuple(map(plain_messages, histories)),
                       settings=settings, precision=dtype or "auto").validated(ctx.limits)


@friendly_errors
def chat(ctx: AppContext, answer_fn, prompt: str, history_a: list[dict], history_b: list[dict],
         compare: bool, model_a: str, model_b: str, system: str, temperature: float, top_p: float,
         top_k: float, repetition_penalty: float, max_new_tokens: float, seed: float | None,
         dtype: str, checkpoint: str = "main", endpoints=None):
    """Download a hub model that is not cached yet (its progress shows under its answer; Stop
    cancels it), then stream through `answer_fn` (answer, on the device)."""
    histories = [history_a or [], history_b or []] if compare else [history_a or []]
    request = chat_request(ctx, prompt, histories, compare, model_a, model_b, system, temperature,
                           top_p, top_k, repetition_penalty, max_new_tokens, seed, dtype,
                           checkpoint)  # validated before any download starts
    specs = [resolve(name) for name in request.models if not is_endpoint_name(name)]
    waiting = [i for i, spec in enumerate(specs) if needs_download(spec)]
    for updates in follow_many([specs[i] for i in waiting], ctx.downloads):
        stats = ["", ""]
        for i, update in zip(waiting, updates):
            stats[i] = progress_line(update, specs[i].display_name)
        yield history_a or [], history_b or [], stats[0], stats[1], prompt
    yield from answer_fn(prompt, history_a, history_b, compare, model_a, model_b, system,
                         temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed, dtype,
                         checkpoint, endpoints)


@friendly_errors
def answer(ctx: AppContext, prompt: str, history_a: list[dict], history_b: list[dict],
           compare: bool, model_a: str, model_b: str, system: str, temperature: float, top_p: float,
           top_k: float, repetition_penalty: float, max_new_tokens: float, seed: float | None,
           dtype: str, checkpoint: str = "main", endpoints=None):
    """The device part: load and stream (weights are in the cache by now); endpoint models
    stream from their server. Yields (chat A, chat B, stats A, stats B, prompt box)."""
    histories = [history_a or [], history_b or []] if compare else [history_a or []]
    request = chat_request(ctx, prompt, histories, compare, model_a, model_b, system, temperature,
                           top_p, top_k, repetition_penalty, max_new_tokens, seed, dtype, checkpoint)
    prompt = request.prompt
    streams = [stream for _, stream in chat_streams(request, ctx.models, all_endpoints(ctx, endpoints))]
    for updates in interleave(*streams):
        chats = [_turn(h, prompt, u) for h, u in zip(histories, updates)]
        stats = [stats_line(u.result) if u else "" for u in updates]
        if not compare:
            chats.append(history_b or [])
            stats.append("")
        yield chats[0], chats[1], stats[0], stats[1], ""


def stopped_note(stats_a: str, stats_b: str) -> tuple[str, str]:
    """After Stop: say so, and keep whatever stats line was there."""
    return tuple(f"⏹ Stopped. {text}".strip() for text in (stats_a, stats_b))  # type: ignore[return-value]


def model_sampling(model: str | None):
    """The chosen model's recommended temperature and top-p (billion.core.recommended)."""
    found = recommended_sampling(model or "", CHAT_DEFAULTS)
    return (gr.update(value=found.settings.temperature, info=found.source),
            gr.update(value=found.settings.top_p))


# ---- what a reload brings back (billion.ui.session) -----------------------------------------------

CHAT_STORAGE_KEY = "billion-chat-session"
CUT_NOTE = "⏸ This answer was cut off (Stop, or the page was reloaded while it streamed): what had arrived is kept."


def keep_chat(ctx: AppContext, token: str, inputs: tuple, update: tuple, cut: bool) -> None:
    """Save the two conversations and the pickers; a chat over the size limit loses its oldest turns."""
    try:
        chats = [list(plain_messages(update[0] or [])), list(plain_messages(update[1] or []))]
    except BillionError:
        return
    value = dict(a=chats[0], b=chats[1], compare=bool(inputs[3]), model_a=inputs[4], model_b=inputs[5],
                 cut=cut)
    while not ctx.sessions.save(token, "chat", value) and (value["a"] or value["b"]):
        value["a"], value["b"] = value["a"][2:], value["b"][2:]


def restore_chat(ctx: AppContext, token: str | None):
    """This browser's conversations, as they were. Returns (chat A, chat B, stats A, side by side,
    model A, model B): unchanged where nothing was kept."""
    kept = ctx.sessions.load(token, "chat") if token and ctx.sessions else None
    if not isinstance(kept, dict) or not (kept.get("a") or kept.get("b")):
        return (gr.update(),) * 6
    choices = {value for _, value in model_choices(ctx.hub)[0] + endpoint_choices(ctx)}
    pick = [gr.update(value=kept[k]) if kept.get(k) in choices else gr.update() for k in ("model_a", "model_b")]
    return (kept["a"], kept["b"], CUT_NOTE if kept.get("cut") else "", gr.update(value=bool(kept.get("compare"))),
            *pick)


def _session_chat(ctx: AppContext, inputs: list, clear: gr.Button, restored: list):
    """The page's token; the chat handler saving as it streams; Clear forgetting; the load restoring.
    Returns (the chat handler, its inputs with the token)."""
    handler = bind(chat, ctx, on_device(answer, ctx, _generation_seconds))
    stored, token = page_token(ctx, CHAT_STORAGE_KEY)
    on_page_load(stored, token, bind(restore_chat, ctx), restored)
    clear.click(lambda t: ctx.sessions.forget(t, "chat") if t and ctx.sessions else None, token, None,
                api_name=False, queue=False)
    if ctx.sessions is None:
        return handler, inputs
    return saving(handler, lambda *args: keep_chat(ctx, *args)), [*inputs, token]


def build_chat_tab(ctx: AppContext) -> None:
    choices, unavailable = model_choices(ctx.hub)
    default = default_model(choices)
    choices = choices + endpoint_choices(ctx)
    session_endpoints = gr.State([])
    with gr.Row():
        compare = gr.Checkbox(label="Two models side by side", value=False)
        model_a = gr.Dropdown(choices, value=default, label="Model", scale=3)
        # a different model by default: the same one twice compares nothing
        second = next((value for _, value in choices if value != default), default)
        model_b = gr.Dropdown(choices, value=second, label="Model B", visible=False, scale=3)
        checkpoint = gr.Dropdown(["main", *PYTHIA_CHECKPOINTS], value="main", scale=2, visible=False,
                                 label="Training checkpoint (Pythia: step0 ... step143000)")
    with gr.Accordion("Models that cannot load here, and why", open=False):
        gr.Markdown(unavailable)
    added = build_endpoint_adder(ctx, session_endpoints)
    with gr.Row():
        with gr.Column():
            chat_a = gr.Chatbot(label="Answer", height=380)
            stats_a = gr.Markdown()
        with gr.Column(visible=False) as column_b:
            chat_b = gr.Chatbot(label="Model B", height=380)
            stats_b = gr.Markdown()
    with gr.Row():
        prompt = gr.Textbox(placeholder="Ask something…", show_label=False, scale=6,
                            max_length=ctx.limits.chat_prompt_chars)
        send = gr.Button("Send", variant="primary", scale=1)
        stop = gr.Button("Stop", scale=1)
        clear = gr.Button("Clear", scale=1)
    form = _settings(ctx, default)
    _wire(ctx, session_endpoints, added, form, SimpleNamespace(
        compare=compare, model_a=model_a, model_b=model_b, checkpoint=checkpoint, column_b=column_b,
        chat_a=chat_a, chat_b=chat_b, stats_a=stats_a, stats_b=stats_b, prompt=prompt, send=send,
        stop=stop, clear=clear))


def _settings(ctx: AppContext, default: str | None) -> SimpleNamespace:
    """System message, sampling and precision; the model's recommended sampling to start with."""
    with gr.Accordion("Generation settings", open=False):
        system = gr.Textbox(label="System message (optional)")
        with gr.Row():
            start = recommended_sampling(default or "", CHAT_DEFAULTS)
            temperature = gr.Slider(0, 2, value=start.settings.temperature, step=0.05,
                                    label="Temperature (0 = greedy)", info=start.source)
            top_p = gr.Slider(0.05, 1, value=start.settings.top_p, step=0.05, label="Top-p")
            top_k = gr.Slider(0, 200, value=CHAT_DEFAULTS.top_k, step=1, label="Top-k (0 = off)")
        with gr.Row():
            repetition_penalty = gr.Slider(1, 2, value=CHAT_DEFAULTS.repetition_penalty, step=0.05,
                                           label="Repetition penalty")
            max_new_tokens = gr.Slider(1, ctx.limits.max_new_tokens, value=CHAT_DEFAULTS.max_new_tokens,
                                       step=1, label="Max new tokens")
            seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)")
            dtype = gr.Radio(list(available_precisions()), value="auto", label="Precision",
                             info=precision_info())
    for component, name in ((temperature, "temperature"), (top_p, "top_p"), (top_k, "top_k"),
                            (repetition_penalty, "repetition_penalty"),
                            (max_new_tokens, "max_new_tokens"), (seed, "seed")):
        named_number(component, name)
    return SimpleNamespace(system=system, temperature=temperature, top_p=top_p, top_k=top_k,
                           repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens,
                           seed=seed, dtype=dtype)


def _wire(ctx: AppContext, session_endpoints: gr.State, added: Any, form: SimpleNamespace,
          page: SimpleNamespace) -> None:
    compare, model_a, model_b, checkpoint, column_b = (page.compare, page.model_a, page.model_b,
                                                       page.checkpoint, page.column_b)
    chat_a, chat_b, stats_a, stats_b = page.chat_a, page.chat_b, page.stats_a, page.stats_b
    prompt, send, stop, clear = page.prompt, page.send, page.stop, page.clear
    system, temperature, top_p, top_k = form.system, form.temperature, form.top_p, form.top_k
    repetition_penalty, max_new_tokens, seed, dtype = (form.repetition_penalty, form.max_new_tokens,
                                                       form.seed, form.dtype)

    def toggle(on: bool):
        return (gr.update(visible=on), gr.update(visible=on), gr.update(label="Model A" if on else "Answer"),
                gr.update(label="Model A" if on else "Model"))

    def checkpoints_for(*names: str):
        return gr.update(visible=any(name and not is_endpoint_name(name) and resolve(name).revisions
                                     for name in names))

    model_a.change(model_sampling, model_a, [temperature, top_p], api_name=False, queue=False)
    compare.change(toggle, compare, [model_b, column_b, chat_a, model_a], api_name=False)
    for picker in (model_a, model_b):
        picker.change(checkpoints_for, [model_a, model_b], checkpoint, api_name=False)
    inputs = [prompt, chat_a, chat_b, compare, model_a, model_b, system, temperature, top_p, top_k,
              repetition_penalty, max_new_tokens, seed, dtype, checkpoint, session_endpoints]
    outputs = [chat_a, chat_b, stats_a, stats_b, prompt]
    handler, inputs = _session_chat(ctx, inputs, clear, [chat_a, chat_b, stats_a, compare, model_a, model_b])
    sent = send.click(handler, inputs, outputs, api_name="chat")
    submitted = prompt.submit(handler, inputs, outputs, api_name=False)
    stop.click(stopped_note, [stats_a, stats_b], [stats_a, stats_b], cancels=[sent, submitted],
               api_name=False, queue=False)
    clear.click(lambda: ([], [], "", ""), None, [chat_a, chat_b, stats_a, stats_b], api_name=False)
    if added is not None:
        def pickers(session):
            every = model_choices(ctx.hub)[0] + endpoint_choices(ctx, session)
            return gr.update(choices=every), gr.update(choices=every)

        added.then(pickers, session_endpoints, [model_a, model_b], api_name=False)
