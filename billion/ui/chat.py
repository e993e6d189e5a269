"""Chat tab: one model, or two named models side by side answering the same prompt."""

from __future__ import annotations

import gradio as gr

from billion.core.generation import GenerationResult, GenerationUpdate, interleave, stream_chat
from billion.core.loading import load_model, pick_device
from billion.core.precision import auto_cpu_choice, available_precisions, options_for
from billion.core.sampling import SamplingSettings
from billion.ui.common import default_model, friendly_errors, gpu, model_choices

MAX_PROMPT_CHARS = 8000


def settings_from(temperature: float, top_p: float, top_k: float, repetition_penalty: float,
                  max_new_tokens: float, seed: float | None) -> SamplingSettings:
    return SamplingSettings(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
                            repetition_penalty=float(repetition_penalty),
                            max_new_tokens=int(max_new_tokens),
                            seed=None if seed in (None, "", -1) else int(seed)).validate()


def stats_line(result: GenerationResult | None) -> str:
    if result is None:
        return ""
    precision = f" ({result.precision})" if result.precision else ""
    return (f"**{result.decode_tokens_per_s:.1f} tokens/s**{precision} · first token {result.ttft_s:.2f} s · "
            f"{len(result.token_ids)} tokens · peak memory {result.peak_memory_bytes / 2**20:.0f} MiB · "
            f"stop: {result.finish_reason}")


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
                        top_p, top_k, repetition_penalty, max_new_tokens, seed, dtype) -> int:
    return int(30 + int(max_new_tokens) * (0.2 if compare else 0.1))


@gpu(duration=_generation_seconds)
@friendly_errors
def chat(prompt: str, history_a: list[dict], history_b: list[dict], compare: bool, model_a: str,
         model_b: str, system: str, temperature: float, top_p: float, top_k: float,
         repetition_penalty: float, max_new_tokens: float, seed: float | None, dtype: str):
    """Stream one or two answers. Yields (chat A, chat B, stats A, stats B, prompt box)."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise gr.Error("The prompt is empty: type a question.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise gr.Error(f"The prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}.")
    if not model_a or (compare and not model_b):
        raise gr.Error("Pick a model first (the list shows the models that can load here).")
    settings = settings_from(temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed)
    system_turn = [{"role": "system", "content": system}] if system and system.strip() else []
    histories = [history_a or [], history_b or []] if compare else [history_a or []]
    names = [model_a, model_b] if compare else [model_a]
    streams = []
    for name, history in zip(names, histories):
        loaded = load_model(name, options_for(dtype or "auto"))
        messages = system_turn + _plain(history) + [{"role": "user", "content": prompt}]
        streams.append(stream_chat(loaded, messages, settings))
    for updates in interleave(*streams):
        chats = [_turn(h, prompt, u) for h, u in zip(histories, updates)]
        stats = [stats_line(u.result) if u else "" for u in updates]
        if not compare:
            chats.append(history_b or [])
            stats.append("")
        yield chats[0], chats[1], stats[0], stats[1], ""


def _plain(history: list[dict]) -> list[dict]:
    """Chatbot messages back to plain role/content dicts (Gradio adds metadata fields)."""
    return [{"role": m["role"], "content": _text(m["content"])} for m in history]


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Gradio 6 may hand back [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def build_chat_tab() -> None:
    choices, unavailable = model_choices()
    default = default_model(choices)
    with gr.Row():
        compare = gr.Checkbox(label="Two models side by side", value=False)
        model_a = gr.Dropdown(choices, value=default, label="Model", scale=3)
        model_b = gr.Dropdown(choices, value=default, label="Second model", visible=False, scale=3)
    with gr.Accordion("Models that cannot load here, and why", open=False):
        gr.Markdown(unavailable)
    with gr.Row():
        with gr.Column():
            chat_a = gr.Chatbot(label="Answer", height=380)
            stats_a = gr.Markdown()
        with gr.Column(visible=False) as column_b:
            chat_b = gr.Chatbot(label="Second model", height=380)
            stats_b = gr.Markdown()
    with gr.Row():
        prompt = gr.Textbox(placeholder="Ask something…", show_label=False, scale=6,
                            max_length=MAX_PROMPT_CHARS)
        send = gr.Button("Send", variant="primary", scale=1)
        stop = gr.Button("Stop", scale=1)
        clear = gr.Button("Clear", scale=1)
    with gr.Accordion("Generation settings", open=False):
        system = gr.Textbox(label="System message (optional)")
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature (0 = greedy)")
            top_p = gr.Slider(0.05, 1, value=0.95, step=0.05, label="Top-p")
            top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k (0 = off)")
        with gr.Row():
            repetition_penalty = gr.Slider(1, 2, value=1.0, step=0.05, label="Repetition penalty")
            max_new_tokens = gr.Slider(1, 1024, value=256, step=1, label="Max new tokens")
            seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)")
            dtype = gr.Radio(list(available_precisions()), value="auto", label="Precision",
                             info=precision_info())

    def toggle(on: bool):
        return gr.update(visible=on), gr.update(visible=on), gr.update(label="Model A" if on else "Answer")

    compare.change(toggle, compare, [model_b, column_b, chat_a], api_name=False)
    inputs = [prompt, chat_a, chat_b, compare, model_a, model_b, system, temperature, top_p, top_k,
              repetition_penalty, max_new_tokens, seed, dtype]
    outputs = [chat_a, chat_b, stats_a, stats_b, prompt]
    sent = send.click(chat, inputs, outputs, api_name="chat")
    submitted = prompt.submit(chat, inputs, outputs, api_name=False)
    stop.click(None, None, None, cancels=[sent, submitted], api_name=False)
    clear.click(lambda: ([], [], "", ""), None, [chat_a, chat_b, stats_a, stats_b], api_name=False)
