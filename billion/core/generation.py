"""Streaming generation from chat messages: prefill, then one token at a time with a KV cache."""

from __future__ import annotations

import functools
import inspect
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import psutil
import torch
from transformers import DynamicCache

from billion.core import lean_forward
from billion.core.errors import BillionError
from billion.core.kv_cache import new_cache
from billion.core.loading import LoadedModel
from billion.core.registry import FALLBACK_TEMPLATE
from billion.core.scaffold import SCAFFOLD_STOPS, scaffold_messages
from billion.core.sampling import SamplingSettings, make_generator, next_token

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}

# End-of-turn markers of chat templates; the GGUF configs often list only the plain EOS.
_END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "</s>")


@dataclass(frozen=True)
class GenerationResult:
    model: str
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    #: seconds from the call to the first new token (tokenize + prefill + first sample)
    ttft_s: float
    #: tokens per second after the first token
    decode_tokens_per_s: float
    total_s: float
    #: process RSS high-water mark on CPU, CUDA max allocated on GPU
    peak_memory_bytes: int
    #: "eos", "stop" (a stop string), "length" or "cancelled"
    finish_reason: str
    #: seconds since the call at which each token was produced (for replay at true pace)
    token_times: tuple[float, ...] = ()
    #: what ran, e.g. "fp32" or "int8 (w8a8 per-token, fbgemm)" (shown wherever speed is)
    precision: str = ""
    #: this model's own parameters and buffers (peak_memory_bytes is the whole process's on CPU)
    weight_bytes: int = 0


@dataclass(frozen=True)
class GenerationUpdate:
    #: all text so far (stop strings removed)
    text: str
    new_text: str
    n_tokens: int
    #: set on the last update only
    result: GenerationResult | None = None


def validate_messages(messages: Sequence[Message]) -> None:
    if not messages:
        raise BillionError("The prompt is empty: type a question.")
    for message in messages:
        if message.get("role") not in ("system", "user", "assistant"):
            raise BillionError(f"Unknown message role {message.get('role')!r}: use system, user, assistant.")
    if messages[-1]["role"] != "user" or not str(messages[-1].get("content", "")).strip():
        raise BillionError("The prompt is empty: type a question.")


def uses_fallback(loaded: LoadedModel) -> bool:
    """Base models (and tokenizers without a template) get the registry's plain transcript format."""
    return loaded.spec.chat_template == "fallback" or not getattr(loaded.tokenizer, "chat_template", None)


def render_chat(loaded: LoadedModel, messages: Sequence[Message]) -> str:
    """The prompt text: the model's chat template, or the registry's fallback for base models."""
    template = FALLBACK_TEMPLATE if uses_fallback(loaded) else None
    if template is not None:  # a base model: example turns first, so it answers instead of rambling
        messages = scaffold_messages(messages)
    try:
        return loaded.tokenizer.apply_chat_template(list(messages), chat_template=template,
                                                    tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # a template may refuse e.g. a system turn; the message says which
        raise BillionError(f"{loaded.spec.alias}'s chat template refused these messages: {exc}") from exc


def chat_input_ids(loaded: LoadedModel, messages: Sequence[Message]) -> torch.Tensor:
    validate_messages(messages)
    text = render_chat(loaded, messages)
    tokenizer = loaded.tokenizer
    # Templates that write BOS themselves must not get a second one; the fallback writes none,
    # and models like Gemma produce garbage without it.
    add_special = not (tokenizer.bos_token and text.startswith(tokenizer.bos_token))
    ids = tokenizer(text, add_special_tokens=add_special, return_tensors="pt")["input_ids"]
    return ids.to(loaded.device)


def stop_token_ids(loaded: LoadedModel) -> frozenset[int]:
    ids: set[int] = set()
    for source in (loaded.model.generation_config.eos_token_id, loaded.tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(source)
    vocab = loaded.tokenizer.get_vocab()
    ids.update(vocab[t] for t in _END_OF_TURN if t in vocab)
    return frozenset(ids)


def check_length(loaded: LoadedModel, prompt_tokens: int, settings: SamplingSettings) -> None:
    context = loaded.context_length
    if settings.max_new_tokens > context:
        raise BillionError(f"max_new_tokens={settings.max_new_tokens} is above {loaded.spec.alias}'s "
                           f"context of {context} tokens: lower it.")
    if prompt_tokens + settings.max_new_tokens > context:
        raise BillionError(f"The prompt ({prompt_tokens} tokens) plus max_new_tokens "
                           f"({settings.max_new_tokens}) exceeds {loaded.spec.alias}'s context of "
                           f"{context} tokens: shorten the prompt or lower max_new_tokens.")


@functools.lru_cache(maxsize=None)
def _forward_params(model_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(model_class.forward).parameters)


@torch.inference_mode()
def forward(model, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 0) -> torch.Tensor:
    """Logits (batch, positions, vocab) with the KV cache extended in place.

    keep > 0 computes logits for the last `keep` positions only: skipping the LM head on the
    prompt saves real time with big vocabularies. Transformers 5 renamed `past_key_values` to
    `cache`; both spellings are handled here so callers need not care.
    """
    plan = lean_forward.plan_for(model) if lean_forward.ENABLED and input_ids.shape[0] == 1 else None
    logits = plan.forward(input_ids, cache, keep) if plan is not None else None
    if logits is not None:  # Llama, Gemma-3, GPT-NeoX, StableLM on CPU: the same logits in far fewer ops
        return logits
    # PEFT wrappers forward **kwargs: ask the wrapped model which spelling it takes.
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = _forward_params(type(inner))
    kwargs = {"cache" if "cache" in params else "past_key_values": cache, "use_cache": True}
    if keep and "logits_to_keep" in params:
        kwargs["logits_to_keep"] = keep
    return model(input_ids=input_ids, **kwargs).logits


def forward_last(model, input_ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    return forward(model, input_ids, cache, keep=1)[0, -1]


def prefill(model, input_ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    return forward_last(model, input_ids, cache)


def decode_one_token(model, token: int, cache: DynamicCache, device: torch.device) -> torch.Tensor:
    return forward_last(model, torch.tensor([[token]], device=device), cache)


class MemoryTracker:
    """Peak memory during one generation: CUDA max allocated, or sampled process RSS on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.process = psutil.Process()
        self.peak = 0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.sample()

    def sample(self) -> None:
        if not self.cuda:
            self.peak = max(self.peak, self.process.memory_info().rss)

    def result(self) -> int:
        return int(torch.cuda.max_memory_allocated()) if self.cuda else self.peak


class Detokenizer:
    """Incremental decoding that never emits half a UTF-8 character (as TGI does)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self.tokenizer.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        after = self.tokenizer.decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters might be the start of a stop string (not shown yet)."""
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:size]):
                hold = size
                break
    return hold


def stream_ids(loaded: LoadedModel, input_ids: torch.Tensor, settings: SamplingSettings,
               cancel: threading.Event | None = None, stops: Sequence[str] = (),
               strip_leading: bool = False) -> Iterator[GenerationUpdate]:
    """Generate after input_ids (shape (1, n)); yields text as it grows, the last update holds the result.

    strip_leading drops whitespace before the first visible character (chat answers); code
    completion keeps it.
    """
    settings.validate()
    started = time.perf_counter()
    check_length(loaded, input_ids.shape[1], settings)
    model, device = loaded.model, loaded.device
    eos = stop_token_ids(loaded)
    stops = tuple(s for s in (*settings.stop, *stops) if s)
    generator = make_generator(settings.seed)
    detok = Detokenizer(loaded.tokenizer)
    memory = MemoryTracker(device)
    penalise = settings.repetition_penalty != 1.0
    seen = input_ids[0].cpu().unique() if penalise else None
    tokens: list[int] = []
    times: list[float] = []
    text, shown, finish = "", 0, "length"
    # No lock: Gradio may resume this generator on another thread, and inference is stateless.
    # No inference_mode around the loop either: grad mode is per thread, and a suspended generator
    # would leave it switched off in the caller's thread; forward() enters it per call instead.
    cache = new_cache()
    logits = prefill(model, input_ids, cache)
    while True:
        token = next_token(logits.cpu(), settings, generator, seen)
        times.append(time.perf_counter() - started)
        if token in eos and not settings.ignore_eos:
            finish = "eos"
            break
        tokens.append(token)
        piece = detok.add(token)
        text += piece.lstrip() if strip_leading and not text else piece
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
            break
        memory.sample()
        visible = len(text) - _held_back(text, stops)
        if visible > shown:
            yield GenerationUpdate(text[:visible], text[shown:visible], len(tokens))
            shown = visible
        if len(tokens) >= settings.max_new_tokens:
            break
        if cancel is not None and cancel.is_set():
            finish = "cancelled"
            break
        if penalise:
            seen = torch.cat([seen, torch.tensor([token])]).unique()
        logits = decode_one_token(model, token, cache, device)
    result = _finished(loaded, input_ids.shape[1], text, tokens, times, started, memory.result(), finish)
    yield GenerationUpdate(text, text[shown:], len(tokens), result)


def _finished(loaded: LoadedModel, prompt_tokens: int, text: str, tokens: list[int], times: list[float],
              started: float, peak_memory_bytes: int, finish: str) -> GenerationResult:
    """The answer with its timings: time to first token, and decode speed from the first token on."""
    total = time.perf_counter() - started
    decode_span = times[-1] - times[0] if len(times) > 1 else 0.0
    return GenerationResult(
        model=loaded.spec.alias, text=text, token_ids=tuple(tokens), prompt_tokens=prompt_tokens,
        ttft_s=times[0] if times else total,
        decode_tokens_per_s=(len(times) - 1) / decode_span if decode_span > 0 else 0.0,
        total_s=total, peak_memory_bytes=peak_memory_bytes, finish_reason=finish,
        weight_bytes=loaded.weight_bytes,
        token_times=tuple(times), precision=loaded.precision_label)


def stream_chat(loaded: LoadedModel, messages: Sequence[Message], settings: SamplingSettings,
                cancel: threading.Event | None = None) -> Iterator[GenerationUpdate]:
    input_ids = chat_input_ids(loaded, messages)
    stops = SCAFFOLD_STOPS if uses_fallback(loaded) else ()
    return stream_ids(loaded, input_ids, settings, cancel, stops, strip_leading=True)


def generate_chat(loaded: LoadedModel, messages: Sequence[Message], settings: SamplingSettings,
                  cancel: threading.Event | None = None) -> GenerationResult:
    update = None
    for update in stream_chat(loaded, messages, settings, cancel):
        pass
    assert update is not None and update.result is not None
    return update.result


def interleave(*streams: Iterator[GenerationUpdate]) -> Iterator[tuple[GenerationUpdate | None, ...]]:
    """Advance several generations in turn, so side-by-side answers stream together on few cores.

    Yields a tuple with each stream's latest update (None until its first); finished streams keep
    their final update.
    """
    latest: list[GenerationUpdate | None] = [None] * len(streams)
    live = list(range(len(streams)))
    while live:
        for index in list(live):
            try:
                latest[index] = next(streams[index])
            except StopIteration:
                live.remove(index)
                continue
            yield tuple(latest)
