"""A chat turn: one model, or two named models side by side, answering the same prompt.

The Chat tab and `python -m billion chat` both fill a ChatRequest (its defaults are the only ones);
`chat_streams` loads the models and starts their answers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from billion.core.errors import BillionError
from billion.core.generation import GenerationUpdate, Message, stream_chat
from billion.core.limits import (DEFAULT_LIMITS, Limits, check_history, check_max_new_tokens,
                                 check_prompt, check_system)
from billion.core.loading import LoadedModel, LoadOptions
from billion.core.model_cache import HeldStream, ModelCache
from billion.core.precision import options_for
from billion.core.registry import DEFAULT_MODEL
from billion.core.sampling import SamplingSettings

#: how chat samples unless asked otherwise
CHAT_DEFAULTS = SamplingSettings()


@dataclass(frozen=True)
class ChatRequest:
    """What to ask whom, and how."""

    prompt: str
    #: one model, or two answering side by side: alias, hub id, local folder or .gguf
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    #: system message ("" = none)
    system: str = ""
    #: each model's earlier turns (role/content dicts), in the order of `models`; () = a new chat
    histories: tuple[tuple[Message, ...], ...] = ()
    settings: SamplingSettings = CHAT_DEFAULTS
    #: "auto" (on CPU: the measured fast choice, billion.core.precision), fp32, bf16, fp16, int8, int4
    precision: str = "auto"

    def validated(self, limits: Limits = DEFAULT_LIMITS) -> ChatRequest:
        """The request with its prompt trimmed; a BillionError names what is wrong.

        Every size is counted in characters here, before anything is tokenised or loaded.
        """
        prompt = check_prompt(self.prompt, limits.chat_prompt_chars, "chat")
        system = check_system(self.system, limits)
        if not 1 <= len(self.models) <= 2 or not all(isinstance(m, str) and m for m in self.models):
            raise BillionError("Pick a model first (the list shows the models that can load here).")
        if self.histories and len(self.histories) != len(self.models):
            raise BillionError("Give one earlier conversation per model, or none.")
        for history in self.histories:
            check_history(history, limits)
        settings = self.settings.validate()
        check_max_new_tokens(settings.max_new_tokens, limits)
        return replace(self, prompt=prompt, system=system, settings=settings)

    def messages(self, index: int = 0) -> list[Message]:
        """The conversation model `index` answers: system message, its earlier turns, the prompt."""
        system = [{"role": "system", "content": self.system}] if self.system.strip() else []
        history = list(self.histories[index]) if self.histories else []
        return system + history + [{"role": "user", "content": self.prompt}]

    def load_options(self) -> LoadOptions:
        return options_for(self.precision)


def chat_streams(request: ChatRequest, models: ModelCache
                 ) -> list[tuple[LoadedModel, Iterator[GenerationUpdate]]]:
    """Each model of a validated request loaded, with its answer ready to stream (nothing is
    generated until it is read). Read two with billion.core.generation.interleave: they grow together.
    """
    return [local_stream(request, models, index) for index in range(len(request.models))]


def local_stream(request: ChatRequest, models: ModelCache,
                 index: int) -> tuple[LoadedModel, Iterator[GenerationUpdate]]:
    """The request's index-th model loaded here, with its answer ready to stream."""
    # Leased until the answer ends: a load elsewhere cannot evict a model mid-answer.
    loaded, lease = models.acquire(request.models[index], request.load_options())
    return loaded, HeldStream(stream_chat(loaded, request.messages(index), request.settings), lease)


def plain_messages(history: Sequence[dict]) -> tuple[Message, ...]:
    """Chat messages as role/content dicts only (a chat widget may add fields or content parts)."""
    if not all(isinstance(m, Mapping) and "role" in m and "content" in m for m in history):
        raise BillionError("Each earlier message needs a role and content: press Clear to start over.")
    return tuple({"role": m["role"], "content": _text(m["content"])} for m in history)


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # e.g. Gradio 6's [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)
